"""Why a boot is failing, read from the serial console. Pure: text in, findings out.

A health check alone says only "SSH refused the key"; the console says why — cloud-init found
no datasource it trusts and fell back to none, the kernel found no root, the guest panicked.
Each finding is one of three kinds:

- ``fatal``: the guest cannot recover (a panic, no root device, emergency mode): the boot fails
  at once;
- ``settled``: cloud-init has finished without the cloud's data (fallback datasource): no key or
  user-data will come any more, so the checks get ``SETTLE_GRACE`` seconds, not the whole
  deadline;
- otherwise a sign worth reporting (no SSH keys installed, metadata not reachable).

A boot whose checks pass but whose console shows a finding reports it as a warning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SETTLE_GRACE = 30.0  # seconds after a settled finding: sshd may still be restarting
# A bootloader or kernel speaks within seconds of the firmware's hand-over; silence this long
# after "Booting from Hard Disk..." means the disk's boot code never ran.
STALL_AFTER = 90.0
_HANDOVER = re.compile(r"^Booting from (Hard Disk|DVD/CD|Floppy)\b")
# systemd's words (252, Debian 12; older ones print the mount point alone) for a boot that
# stopped in emergency mode, and for the mounts and devices that sent it there.
_EMERGENCY = re.compile(
    r"You are in emergency mode|Reached target emergency\.target|Starting emergency\.service"
    r"|Cannot open access to console, the root account is locked"
)
_MOUNT_FAILED = re.compile(r"Dependency failed for (?:\S+\.mount - )?(/\S*?)\.?\s*$", re.MULTILINE)
_DEVICE_TIMEOUT = re.compile(
    r"Timed out waiting for device (?:\S+\.device - )?(/dev/\S+?)\.?\s*$", re.MULTILINE
)


@dataclass(frozen=True)
class Finding:
    code: str
    message: str
    line: str  # the console line it was read from
    fatal: bool = False
    settled: bool = False

    def __str__(self) -> str:
        return f"{self.message} (console: {self.line!r})"


# (code, pattern, message, fatal, settled). Patterns are the guest software's own words:
# cloud-init 22.4's cc_final_message and sources/__init__.py, Linux's panic and mount messages,
# initramfs-tools' and dracut's "no root" messages.
_RULES: tuple[tuple[str, re.Pattern[str], str, bool, bool], ...] = (
    (
        "kernel-panic",
        re.compile(r"Kernel panic - not syncing"),
        "the guest kernel panicked",
        True,
        False,
    ),
    (
        "root-not-found",
        re.compile(
            r"VFS: Unable to mount root fs|Gave up waiting for root (file system )?device"
            r"|ALERT! .* does not exist\.\s+Dropping to a shell|Could not boot\."
        ),
        "the guest found no root filesystem (its initramfs lacks the disk driver, or fstab/"
        "root= names a device this cloud does not have)",
        True,
        False,
    ),
    (
        "no-boot-device",
        re.compile(
            # Not OVMF's "BdsDxe: failed to load Boot0001": it goes on to the next boot
            # option (a provisioning CD first, then the disk); only its shell or its last
            # words mean none was left.
            r"No bootable device|Boot failed: not a bootable disk|UEFI Interactive Shell"
            r"|No bootable option or device was found"
        ),
        "the firmware found nothing to boot on the disk (a UEFI-only image booted through BIOS,"
        " or a BIOS-only one through UEFI)",
        True,
        False,
    ),
    (
        "fallback-datasource",
        re.compile(r"Used fallback datasource|Datasource DataSourceNone\."),
        "cloud-init found none of its configured datasources and fell back to none: no SSH key,"
        " no user-data (the image's datasource_list does not include this cloud)",
        False,
        True,
    ),
    (
        "no-datasource",
        re.compile(r"No instance datasource found"),
        "cloud-init found none of its configured datasources: no SSH key, no user-data (the "
        "image's datasource_list does not include this cloud)",
        False,
        True,
    ),
    (
        "no-ssh-keys",
        re.compile(r"no authorized SSH keys fingerprints found for user (\S+)"),
        "cloud-init installed no SSH key",
        False,
        False,
    ),
    (
        "metadata-unreachable",
        re.compile(r"Giving up on md from|Failed to connect to .*metadata|not resolvable"),
        "the guest could not reach the metadata service it looks for",
        False,
        False,
    ),
)
# CSI sequences (colours, cursor moves) and the two-byte ones systemd's status lines start
# with (ESC M, reverse index, to redraw its "Job … running" spinner).
_ESCAPES = re.compile(r"\x1b(?:\[[0-9;?]*[A-Za-z]|[@-Z\\\]^_])")
# cloud-init's table of NICs ("Net device info", printed once the network is up) and the
# guest's own words that it has none: ifupdown's unit failing (systemd shortens long status
# lines with "…"), the kernel refusing a connection for want of a route.
_NET_TABLE = re.compile(r"ci-info: \+{3,}Net device info\+{3,}")
# Device, Up, Address, Mask, Scope: a link-local address (scope "link") reaches nothing.
_NET_ROW = re.compile(r"ci-info: \|\s*(\S+)\s*\|\s*(True|False)\s*\|" + r"\s*(\S+)\s*\|" * 3)
_NET_FAILED = re.compile(r"Failed to start networking(\.service|…)|Network is unreachable")
# cloud-init's final message names the datasource it used: a real one means signs seen on the
# way (GCE's local stage cannot resolve the metadata name before DHCP has set DNS) were passing.
_FOUND = re.compile(r"Datasource DataSource(?!None\b)\w+")
_PASSING = frozenset({"metadata-unreachable"})


def diagnose(console: str | None, idle: float = 0.0, passed: bool = False) -> list[Finding]:
    """Findings on the console, first occurrence of each code, in rule order; ``idle`` is how
    long (seconds) the console has not grown, for the one finding that is a silence. ``passed``:
    the checks passed, which refutes the signs of a guest still on its way (an SSH login with
    the run's key passes only once the metadata was read, maybe before cloud-init's last word)."""
    if not console:
        return []
    text = _ESCAPES.sub("", console)
    found = []
    last = next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), "")
    if idle >= STALL_AFTER and _HANDOVER.match(last):
        found.append(
            Finding(
                "boot-stalled",
                f"the firmware handed over to the disk and nothing followed for {idle:.0f} s: "
                "the disk has no boot code for this firmware (a UEFI-only image booted through "
                "BIOS?)",
                last,
                fatal=True,
            )
        )
    emergency = _emergency(text)
    if emergency is not None:
        found.append(emergency)
    succeeded = passed or _FOUND.search(text) is not None
    unreachable = None if succeeded else _no_address(text)
    if unreachable is not None:
        found.append(unreachable)
    for code, pattern, message, fatal, settled in _RULES:
        if succeeded and code in _PASSING:
            continue
        match = pattern.search(text)
        if match is None:
            continue
        found.append(Finding(code, message, _line_at(text, match), fatal, settled))
    return found


def _line_at(text: str, match: re.Match[str]) -> str:
    start = text.rfind("\n", 0, match.start()) + 1
    end = text.find("\n", match.end())
    return text[start : end if end >= 0 else len(text)].strip()[:200]


def _emergency(text: str) -> Finding | None:
    """Emergency mode, naming what sent the guest there: a mount whose device never appeared
    (fstab by an AWS device name, without nofail) is the common case off AWS."""
    entered = _EMERGENCY.search(text)
    if entered is None:
        return None
    failed = list(_MOUNT_FAILED.finditer(text))
    timed_out = list(_DEVICE_TIMEOUT.finditer(text))
    if not failed and not timed_out:
        return Finding(
            "emergency-mode",
            "the guest stopped in emergency mode (a unit the boot needs failed; the console "
            "before this line names it): nothing will start, SSH included",
            _line_at(text, entered),
            fatal=True,
        )
    what = ", ".join(dict.fromkeys(m.group(1) for m in failed)) or "a mount"
    devices = ", ".join(dict.fromkeys(m.group(1) for m in timed_out))
    waited = f" (timed out waiting for {devices})" if devices else ""
    return Finding(
        "emergency-mode",
        f"the guest stopped in emergency mode: {what} could not be mounted{waited}. A mount in "
        "/etc/fstab names a device this cloud does not have: mount by UUID or add nofail — "
        "`imagekit boot` adapts this unless --no-adapt",
        _line_at(text, (failed or timed_out)[0]),  # the mount point, when systemd named it
        fatal=True,
    )


def _no_address(text: str) -> Finding | None:
    """A guest whose NICs all came up without an address, and that says it has no network:
    nothing can reach it, nor it the metadata. Settled, and ranked before the fallback
    datasource it leads to (that one is only the consequence)."""
    table = _NET_TABLE.search(text)
    failed = _NET_FAILED.search(text)
    if table is None or failed is None:
        return None
    nics: dict[str, bool] = {}
    for line in text[table.end() :].splitlines()[1:]:
        if "ci-info: +" in line and "Net device info" not in line and nics:
            break  # the table's closing border
        row = _NET_ROW.search(line)
        if row is None or row.group(1) in ("lo", "Device"):
            continue
        routable = row.group(3) != "." and row.group(5) not in ("link", "host")
        nics[row.group(1)] = nics.get(row.group(1), False) or routable
    if not nics or any(nics.values()):
        return None
    down = ", ".join(nics)
    return Finding(
        "no-address",
        f"the guest has no network address (none on {down}): its network "
        "configuration names another machine's NIC (a MAC-pinned udev rule, netplan or ifcfg "
        "entry, or an interface name this cloud does not give) — `imagekit boot` adapts this "
        "unless --no-adapt",
        _line_at(text, failed),
        settled=True,
    )


def cause(findings: list[Finding]) -> str | None:
    """The finding that best explains a failed boot, as one line; None when there is none."""
    ranked = sorted(findings, key=lambda f: (not f.fatal, not f.settled))
    return str(ranked[0]) if ranked else None


__all__ = ["SETTLE_GRACE", "Finding", "cause", "diagnose"]
