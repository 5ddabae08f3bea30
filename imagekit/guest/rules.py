"""Facts and a target in, findings and edits out: the guest stage's decisions, pure.

``assess(facts, target)`` says what stops the guest coming up on the target (``blocker``),
what adaptation will fix (``adapted``, each with its edits) and what the user should know
(``warning``), and the ``GuestProfile`` the providers choose settings from. The edits are the
smallest change that makes the guest come up there; applied to an adapted guest, the rules find
nothing left to do (idempotence is a test, not a hope).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from imagekit.guest.edits import Edit, RemovePath, RunCommand, WriteFile
from imagekit.guest.facts import AWS_TIME_SERVERS, FstabEntry, GuestFacts, Kernel
from imagekit.guest.profile import GuestProfile
from imagekit.guest.targets import GuestTarget

SEVERITIES = ("blocker", "adapted", "warning")
#: Sorted after every other drop-in (``-`` and ``_`` sort before ``z``), so the target's
#: datasources win cloud-init's merge, which the last ``datasource_list`` does.
DATASOURCE_DROP_IN = "/etc/cloud/cloud.cfg.d/99zz-imagekit-datasource.cfg"
GRUB_DROP_IN = "/etc/default/grub.d/99-imagekit-console.cfg"
CHRONY_SOURCES = "/etc/chrony/sources.d/imagekit.sources"
DRACUT_DROP_IN = "/etc/dracut.conf.d/90-imagekit.conf"
#: What a disk driver needs beside it that it does not list as a dependency: a virtio device
#: is found through its transport (virtio_pci), and a SCSI host adapter's disks need the SCSI
#: disk driver (sd_mod) — without either the initramfs sees no disk.
COMPANIONS = {
    "virtio_blk": ("virtio_pci",),
    "virtio_scsi": ("virtio_pci", "sd_mod"),
    "hv_storvsc": ("sd_mod",),
}
#: Names EC2 gives a volume's device; none of them exists on another cloud.
AWS_DEVICE = re.compile(r"^/dev/(?:nvme(\d+)n\d+(?:p(\d+))?|(?:xvd|sd)([a-z])(\d*))$")
#: cloud-init's per-instance state, as ``cloud-init clean`` removes it.
CLOUD_STATE = ("/var/lib/cloud/instance", "/var/lib/cloud/instances", "/var/lib/cloud/data")
_NETWORK_FS = frozenset({"nfs", "nfs4", "cifs", "smbfs", "glusterfs", "ceph", "fuse.sshfs"})


@dataclass(frozen=True)
class Finding:
    target: str
    severity: str  # blocker | adapted | warning
    code: str
    message: str
    fix: str
    edits: tuple[Edit, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "target": self.target,
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "fix": self.fix,
        }
        if self.edits:
            doc["edits"] = [e.describe() for e in self.edits]
        return doc


@dataclass(frozen=True)
class Assessment:
    target: str
    findings: tuple[Finding, ...]
    profile: GuestProfile
    notes: tuple[str, ...] = field(default=())

    @property
    def blockers(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "blocker")

    @property
    def bootable(self) -> bool:
        """Whether the guest comes up on the target once adapted."""
        return not self.blockers

    @property
    def edits(self) -> tuple[Edit, ...]:
        # Files before the commands that read them (initramfs and GRUB regenerated last).
        edits = [e for f in self.findings if f.severity == "adapted" for e in f.edits]
        return tuple(
            sorted(edits, key=lambda e: isinstance(e, RunCommand))  # stable: order kept
        )


class _Rules:
    """One assessment being built: findings appended by each check in turn."""

    def __init__(self, facts: GuestFacts, target: GuestTarget):
        self.facts = facts
        self.target = target
        self.findings: list[Finding] = []
        self.added_drivers: set[str] = set()

    def add(self, severity: str, code: str, message: str, fix: str, *edits: Edit) -> None:
        self.findings.append(Finding(self.target.name, severity, code, message, fix, edits))


def assess(facts: GuestFacts, target: GuestTarget) -> Assessment:
    """What the guest needs to come up on ``target``, and the profile it will have there."""
    rules = _Rules(facts, target)
    if not _operating_system(rules):
        return Assessment(target.name, tuple(rules.findings), _profile(rules, azure_ready=None))
    _platform(rules)
    azure_ready = _cloud_init(rules)
    _network(rules)
    _fstab(rules)
    _initramfs(rules)
    _console(rules)
    _time(rules)
    _agents(rules)
    return Assessment(target.name, tuple(rules.findings), _profile(rules, azure_ready))


def _profile(rules: _Rules, azure_ready: bool | None) -> GuestProfile:
    facts = rules.facts
    kernel = facts.kernel
    drivers: set[str] = set(rules.added_drivers)
    if kernel is not None:
        drivers |= kernel.boot_drivers()
        # NIC drivers load after the root is mounted: installed is enough.
        drivers |= {m for m in kernel.installed if m in ("virtio_net", "gve", "ena", "hv_netvsc")}
    mode = facts.boot_mode or "bios"
    os_type = facts.os_type if facts.os_type in ("linux", "windows") else "unknown"
    return GuestProfile(
        os=os_type,
        boot_mode=mode,
        architecture=facts.architecture or "x86_64",
        drivers=frozenset(drivers),
        azure_ready=azure_ready,
    )


# --- the checks -----------------------------------------------------------------------------------


def _operating_system(rules: _Rules) -> bool:
    facts = rules.facts
    if facts.os_type == "":
        # Not a blocker: an appliance libguestfs does not recognise may still boot; it is
        # booted as it is, and said so.
        rules.add(
            "warning",
            "not-inspected",
            "no operating system libguestfs recognises on the disk: not adapted, booted as it is",
            "check that the image is the boot volume and not a data volume",
        )
        return False
    if facts.os_type == "windows":
        rules.add(
            "blocker",
            "windows-guest",
            f"a Windows guest ({facts.product or 'unknown version'}): imagekit adapts Linux "
            "guests only",
            "prepare Windows images for the target with the cloud's own tools (sysprep, "
            "drivers) before exporting; boot with --no-adapt to try as it is",
        )
        return False
    if facts.os_type != "linux":
        rules.add(
            "blocker",
            "unsupported-guest",
            f"a {facts.os_type} guest: imagekit adapts Linux guests only",
            "boot with --no-adapt to try as it is",
        )
        return False
    return True


def _platform(rules: _Rules) -> None:
    facts, target = rules.facts, rules.target
    if facts.architecture and facts.architecture not in target.architectures:
        rules.add(
            "blocker",
            "architecture",
            f"an {facts.architecture} guest; {target.name} boots "
            f"{', '.join(sorted(target.architectures))} only",
            "choose a target that runs this architecture (gcp, azure, openstack run arm64)",
        )
    if facts.boot_mode == "":
        rules.add(
            "blocker",
            "no-boot-loader",
            "no boot loader found: no MBR boot code and no EFI system partition with a loader",
            "install GRUB on the image (BIOS) or an EFI loader on its ESP",
        )
    elif facts.boot_mode != "both" and facts.boot_mode not in target.boot_modes:
        rules.add(
            "blocker",
            "boot-mode",
            f"the disk boots through {facts.boot_mode.upper()} only; {target.name} starts "
            f"guests through {', '.join(m.upper() for m in sorted(target.boot_modes))}",
            "install a boot loader for the target's firmware, or choose another target",
        )


def _cloud_init(rules: _Rules) -> bool | None:
    """cloud-init's datasources and state; returns whether the guest reports Ready to Azure."""
    facts, target = rules.facts, rules.target
    ci = facts.cloud_init
    usable = ci is not None and not ci.disabled
    if ci is not None and usable and not any(ci.allows(d) for d in target.datasources):
        listed = ", ".join(ci.datasources or ())
        wanted = [*target.datasources, "None"]
        content = (
            f"# Written by imagekit for {target.name}: the image allowed only [{listed}]"
            f" ({ci.datasource_file or 'cloud.cfg'}), which {target.cloud} does not serve.\n"
            f"# The original configuration is untouched; this drop-in sorts last and wins.\n"
            f"datasource_list: [ {', '.join(wanted)} ]\n"
        )
        rules.add(
            "adapted",
            "datasource",
            f"cloud-init trusts only [{listed}]: on {target.cloud} it finds no datasource, "
            "installs no SSH key and runs no user-data",
            f"allow {', '.join(target.datasources)} in a cloud-init drop-in",
            WriteFile(DATASOURCE_DROP_IN, content, f"cloud-init datasources for {target.name}"),
        )
    if ci is not None and usable and ci.instances:
        rules.add(
            "adapted",
            "cloud-init-state",
            f"cloud-init ran before (instances {', '.join(ci.instances[:3])}): per-instance "
            "modules (SSH keys, user-data) would not run again on the new cloud",
            "reset cloud-init's instance state, as `cloud-init clean` does",
            *(RemovePath(p, "cloud-init instance state") for p in CLOUD_STATE),
        )
    agent_on = target.agent is not None and facts.agents.get(target.agent) == "enabled"
    if target.cloud == "azure":
        ready = usable or (agent_on and facts.waagent_provisions)
        if not ready:
            why = (
                f"cloud-init will not run ({ci.disabled})"
                if ci and ci.disabled
                else "no cloud-init"
            )
            rules.add(
                "warning",
                "azure-specialized",
                f"{why} and waagent does not provision: nothing reports Ready to Azure, so the "
                "image is registered Specialized (no SSH key or custom data reaches the VM)",
                "install cloud-init (Azure datasource) or enable waagent provisioning to get "
                "the run's SSH key into the guest",
            )
        return ready
    if not usable and not agent_on:
        why = f"cloud-init will not run ({ci.disabled})" if ci and ci.disabled else "no cloud-init"
        agent = f" and no {target.agent}" if target.agent else ""
        rules.add(
            "blocker",
            "no-provisioning",
            f"{why}{agent}: nothing in the guest reads {target.cloud}'s metadata, so the run's "
            "SSH key and user-data never arrive",
            "install and enable cloud-init in the image (or boot with --no-adapt and a check "
            "that needs no login, such as tcp:22)",
        )
    return None


def _network(rules: _Rules) -> None:
    facts = rules.facts
    if not facts.net_pins:
        return
    edits: list[Edit] = []
    for path in dict.fromkeys(p.path for p in facts.net_pins):
        text = facts.files.get(path)
        if text is None:
            continue
        kind = next(p.kind for p in facts.net_pins if p.path == path)
        rewritten = _unpin(kind, text)
        if rewritten is not None and rewritten != text:
            edits.append(
                WriteFile(path, rewritten, "match the first NIC, not EC2's MAC", backup=True)
            )
    pins = ", ".join(f"{p.interface or '?'} = {p.mac} ({p.path})" for p in facts.net_pins)
    rules.add(
        "adapted",
        "mac-pinned-network",
        f"network configuration pinned to EC2 MAC addresses: {pins}; the target's NIC has "
        "another MAC, so the interface gets no address",
        "match the first NIC by name instead, keeping the guest's own network stack",
        *edits,
    )


def _unpin(kind: str, text: str) -> str | None:
    """``text`` with its MAC matches replaced by the first NIC (None: cannot rewrite it)."""
    if kind == "udev":
        index = iter(range(100))

        def first_nic(match: re.Match[str]) -> str:
            return f'KERNEL=="eth{next(index)}"'

        return "".join(
            line
            if line.lstrip().startswith("#")
            else re.sub(r'ATTRS?\{address\}=="[0-9A-Fa-f:]{17}"', first_nic, line)
            for line in text.splitlines(keepends=True)
        )
    if kind == "ifcfg":
        return "".join(
            line
            for line in text.splitlines(keepends=True)
            if not re.match(r"\s*(HWADDR|MACADDR)\s*=", line)
        )
    if kind == "networkmanager":
        return "".join(
            line
            for line in text.splitlines(keepends=True)
            if not re.match(r"\s*mac-address\s*=", line)
        )
    if kind == "netplan":
        try:
            doc = yaml.safe_load(text)
            ethernets = doc["network"]["ethernets"]
        except (yaml.YAMLError, KeyError, TypeError):
            return None
        first = True
        for conf in ethernets.values():
            match = conf.get("match") if isinstance(conf, dict) else None
            if isinstance(match, dict) and match.pop("macaddress", None) is not None:
                # The first pinned interface takes whatever Ethernet NIC the target gives.
                if first:
                    match["name"] = "e*"
                    first = False
                if not match:
                    conf.pop("match")
        return "# Rewritten by imagekit: MAC matches removed (original kept).\n" + yaml.safe_dump(
            doc, default_flow_style=False, sort_keys=False
        )
    return None


def _resolve(facts: GuestFacts, entry: FstabEntry) -> str:
    """The image's device an EC2 device name refers to ("" when no volume of the image is it).

    EC2 attaches the root as nvme0n1 (or xvda/sda) and further volumes in mapping order as
    nvme1n1…; the image's volumes arrive here in the same order as /dev/sda, /dev/sdb…
    """
    found = AWS_DEVICE.match(entry.spec)
    if not found or not facts.disks:
        return ""
    if found.group(1) is not None:
        index, partition = int(found.group(1)), found.group(2) or ""
    else:
        index, partition = ord(found.group(3)) - ord("a"), found.group(4)
    if index >= len(facts.disks):
        return ""
    return f"{facts.disks[index]}{partition}"


def _fstab(rules: _Rules) -> None:
    facts = rules.facts
    text = facts.files.get("/etc/fstab")
    if text is None:
        return
    lines = text.splitlines(keepends=True)
    changes: list[str] = []
    for entry in facts.fstab:
        if entry.fstype in _NETWORK_FS or "_netdev" in entry.options:
            continue
        if not entry.spec.startswith(("/dev/", "UUID=", "LABEL=", "PARTUUID=")):
            continue  # proc, tmpfs, bind mounts
        new_spec, options = entry.spec, list(entry.options)
        if AWS_DEVICE.match(entry.spec):
            fs = facts.filesystem(device=_resolve(facts, entry))
            if fs is not None and fs.uuid and fs.type in (entry.fstype, "swap"):
                new_spec = f"UUID={fs.uuid}"
                changes.append(f"{entry.mountpoint}: {entry.spec} → {new_spec}")
            elif entry.mountpoint != "/" and not entry.nofail:
                options.append("nofail")
                changes.append(f"{entry.mountpoint}: {entry.spec} not in the image → nofail")
            elif entry.mountpoint == "/":
                continue  # the root by a name we cannot resolve: the kernel line decides
        elif entry.spec.startswith(("UUID=", "LABEL=")) and entry.mountpoint != "/":
            key, _, value = entry.spec.partition("=")
            fs = facts.filesystem(uuid=value) if key == "UUID" else facts.filesystem(label=value)
            if fs is None and not entry.nofail:
                options.append("nofail")
                changes.append(f"{entry.mountpoint}: {entry.spec} not in the image → nofail")
        if new_spec == entry.spec and options == list(entry.options):
            continue
        fields = lines[entry.line - 1].split()
        fields[0] = new_spec
        while len(fields) < 4:
            fields.append("defaults" if len(fields) == 3 else "0")
        fields[3] = ",".join(o for o in options if o != "defaults" or len(options) == 1)
        lines[entry.line - 1] = "\t".join(fields) + "\n"
    if changes:
        rules.add(
            "adapted",
            "fstab-device-name",
            "fstab mounts by EC2 device names or volumes not in the image: "
            + "; ".join(changes)
            + " (without this systemd waits 90 s for each and stops in emergency mode)",
            "mount by UUID where the filesystem is in the image, else nofail",
            WriteFile("/etc/fstab", "".join(lines), "; ".join(changes), backup=True),
        )


def _needed(kernel: Kernel, target: GuestTarget) -> tuple[list[str], list[str]]:
    """The storage drivers (with companions) to add, and those the kernel does not have."""
    have = kernel.boot_drivers()
    for driver in target.storage:
        group = (driver, *COMPANIONS.get(driver, ()))
        if all(d in have for d in group):
            return [], []
    for driver in target.storage:
        group = (driver, *COMPANIONS.get(driver, ()))
        if all(kernel.has_module(d) for d in group):
            return [d for d in group if d not in have], []
    return [], list(target.storage)


def _initramfs(rules: _Rules) -> None:
    facts, target = rules.facts, rules.target
    kernel = facts.kernel
    if kernel is None:
        rules.add(
            "blocker",
            "no-kernel",
            "no kernel found in /boot",
            "check that /boot is on the image's volumes",
        )
        return
    if kernel.initrd_modules is None and kernel.initrd is not None:
        rules.add(
            "warning",
            "initramfs-unread",
            f"could not list the modules of {kernel.initrd}: its drivers are not checked",
            "check that it carries the target's storage drivers",
        )
        return
    add, missing = _needed(kernel, target)
    if missing:
        rules.add(
            "blocker",
            "storage-driver-missing",
            f"kernel {kernel.version} has none of {', '.join(missing)}: it cannot find its "
            f"root disk on {target.name}",
            "install a kernel with the target's storage drivers (e.g. the distribution's "
            "cloud kernel) before exporting",
        )
    elif add:
        edits = _initramfs_edits(facts, kernel, add)
        if edits:
            rules.added_drivers |= set(add)
            rules.add(
                "adapted",
                "initramfs-drivers",
                f"the initramfs of {kernel.version} lacks {', '.join(add)}: the kernel cannot "
                f"see its root disk on {target.name} (host-only build)",
                f"add {', '.join(add)} with the guest's {facts.initramfs_tool}",
                *edits,
            )
        else:
            rules.add(
                "blocker",
                "initramfs-drivers",
                f"the initramfs of {kernel.version} lacks {', '.join(add)} and the guest has "
                "no initramfs-tools or dracut to rebuild it",
                "rebuild the initramfs with the drivers in the image before exporting",
            )
    if not any(kernel.has_module(n) for n in target.nics):
        rules.add(
            "blocker",
            "nic-driver-missing",
            f"kernel {kernel.version} has none of {', '.join(target.nics)}: no network on "
            f"{target.name}",
            "install a kernel with the target's network drivers before exporting",
        )


def _initramfs_edits(facts: GuestFacts, kernel: Kernel, add: Sequence[str]) -> list[Edit]:
    why = f"drivers for the target's disk: {', '.join(add)}"
    if facts.initramfs_tool == "initramfs-tools" and kernel.initrd:
        current = facts.files.get("/etc/initramfs-tools/modules", "")
        text = current if current.endswith("\n") or not current else current + "\n"
        text += "# Added by imagekit: the target's disk drivers.\n"
        text += "".join(f"{m}\n" for m in add)
        return [
            WriteFile("/etc/initramfs-tools/modules", text, why, backup=True),
            RunCommand(("update-initramfs", "-u", "-k", kernel.version), "rebuild the initramfs"),
        ]
    if facts.initramfs_tool == "dracut" and kernel.initrd:
        text = (
            f'# Added by imagekit: the target\'s disk drivers.\nadd_drivers+=" {" ".join(add)} "\n'
        )
        return [
            WriteFile(DRACUT_DROP_IN, text, why),
            RunCommand(("dracut", "-f", kernel.initrd, kernel.version), "rebuild the initramfs"),
        ]
    return []


def _console(rules: _Rules) -> None:
    facts, target = rules.facts, rules.target
    if any(a.startswith(f"console={target.console}") for a in facts.cmdline):
        return
    if facts.grub == "grub" and "/etc/default/grub" in facts.files:
        content = (
            f"# Added by imagekit: {target.name} reads the console on {target.console}.\n"
            f'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX {target.console_arg}"\n'
        )
        rules.add(
            "adapted",
            "serial-console",
            f"the kernel does not log to {target.console}: {target.name}'s console log stays "
            "empty, so a failed boot cannot be diagnosed",
            f"add {target.console_arg} to the kernel command line",
            WriteFile(GRUB_DROP_IN, content, f"kernel console on {target.console}"),
            RunCommand(("update-grub",), "regenerate grub.cfg"),
        )
    else:
        rules.add(
            "warning",
            "serial-console",
            f"the kernel does not log to {target.console} and no Debian-style GRUB "
            "configuration was found to add it",
            f"add {target.console_arg} to the kernel command line in the image",
        )


def _time(rules: _Rules) -> None:
    facts, target = rules.facts, rules.target
    aws = [s for s in facts.time_sources if s in AWS_TIME_SERVERS]
    if not aws:
        return
    others = [s for s in facts.time_sources if s not in AWS_TIME_SERVERS]
    if others or target.time_server is None:
        rules.add(
            "warning",
            "aws-time-source",
            f"time source {', '.join(aws)} answers only on AWS; "
            + (f"the guest falls back to {', '.join(others)}" if others else "no other is set"),
            "nothing to do" if others else "add a time server the target's network reaches",
        )
        return
    if facts.chrony_sourcedir:
        rules.add(
            "adapted",
            "aws-time-source",
            f"the only time source, {', '.join(aws)}, answers only on AWS: the clock drifts",
            f"add {target.time_server} (the target's own time service) as a chrony source",
            WriteFile(
                CHRONY_SOURCES,
                f"# Added by imagekit for {target.name}.\nserver {target.time_server} iburst\n",
                f"time source {target.time_server}",
            ),
        )
    else:
        rules.add(
            "warning",
            "aws-time-source",
            f"the only time source, {', '.join(aws)}, answers only on AWS: the clock drifts",
            f"configure {target.time_server} as the guest's time server",
        )


def _agents(rules: _Rules) -> None:
    facts, target = rules.facts, rules.target
    if facts.agents.get("amazon-ssm-agent") == "enabled":
        rules.add(
            "warning",
            "aws-agent",
            "the SSM agent is enabled: off AWS it retries its endpoint forever (harmless)",
            "disable amazon-ssm-agent on the target if its log noise matters",
        )
    foreign = {"waagent": "azure", "google-guest-agent": "gcp"}
    for agent, cloud in foreign.items():
        if facts.agents.get(agent) == "enabled" and target.cloud != cloud:
            rules.add(
                "warning",
                "foreign-agent",
                f"{agent} is enabled but the target is {target.cloud}: it waits for {cloud}'s "
                "endpoints and does nothing",
                f"disable {agent} on the target",
            )


def assess_all(facts: GuestFacts, targets: Iterable[GuestTarget]) -> list[Assessment]:
    return [assess(facts, t) for t in targets]


__all__ = ["SEVERITIES", "Assessment", "Finding", "assess", "assess_all"]
