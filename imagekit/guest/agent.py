"""The libguestfs side of the guest stage: a small program the system Python runs.

libguestfs's Python binding is a Debian package (``python3-guestfs``) built for the system
interpreter, not a PyPI wheel, so imagekit (in its own venv) cannot import it. This file is run
as ``/usr/bin/python3 agent.py`` instead and speaks JSON lines on stdin/stdout: one request, one
answer. It imports only the standard library and ``guestfs`` and holds no rules: it reads what
the rules need (files, partitions, initramfs listings) and applies the edits it is sent. The
meaning of what it reads lives in ``imagekit.guest.facts`` (pure, tested without images).

Requests: ``{"op": "open", "disks": [{"path", "format"}], "writable": bool}``,
``{"op": "inspect"}``, ``{"op": "apply", "edits": [...]}``, ``{"op": "close"}``. Answers:
``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. One appliance launch serves a whole
inspect-decide-apply round, since a launch costs 8-14 s under TCG.
"""

from __future__ import annotations

import fnmatch
import json
import posixpath
import sys
import time
from collections.abc import Callable
from typing import Any

import guestfs  # type: ignore[import-not-found]

#: Files the rules read (globs allowed); 256 KiB each is far above any of them.
FILES = (
    "/etc/os-release",
    "/etc/fstab",
    "/etc/cloud/cloud.cfg",
    "/etc/cloud/cloud.cfg.d/*.cfg",
    "/etc/cloud/cloud-init.disabled",
    "/etc/cloud/ds-identify.cfg",
    "/etc/netplan/*.yaml",
    "/etc/udev/rules.d/*.rules",
    "/etc/network/interfaces",
    "/etc/network/interfaces.d/*",
    "/etc/sysconfig/network-scripts/ifcfg-*",
    "/etc/NetworkManager/system-connections/*",
    "/etc/default/grub",
    "/etc/default/grub.d/*.cfg",
    "/boot/grub/grub.cfg",
    "/boot/grub2/grub.cfg",
    "/etc/kernel/cmdline",
    "/etc/chrony/chrony.conf",
    "/etc/chrony/sources.d/*",
    "/etc/chrony/conf.d/*",
    "/etc/chrony.conf",
    "/etc/ntp.conf",
    "/etc/systemd/timesyncd.conf",
    "/etc/systemd/timesyncd.conf.d/*.conf",
    "/etc/initramfs-tools/initramfs.conf",
    "/etc/initramfs-tools/modules",
    "/etc/initramfs-tools/conf.d/*",
    "/etc/dracut.conf",
    "/etc/dracut.conf.d/*.conf",
    "/etc/waagent.conf",
)
MAX_FILE = 256 * 1024
ORIGINALS = "/var/lib/imagekit/orig"  # as imagekit.guest.edits.ORIGINALS
#: systemd units whose state the rules read (agents, cloud-init, time sync).
UNITS = (
    "cloud-init-local.service",
    "cloud-init.service",
    "cloud-config.service",
    "cloud-final.service",
    "walinuxagent.service",
    "waagent.service",
    "google-guest-agent.service",
    "qemu-guest-agent.service",
    "amazon-ssm-agent.service",
    "snap.amazon-ssm-agent.amazon-ssm-agent.service",
    "chrony.service",
    "chronyd.service",
    "systemd-timesyncd.service",
    "ntp.service",
)
UNIT_DIRS = ("/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system")
PACKAGES = (
    "cloud-init",
    "waagent",
    "walinuxagent",
    "WALinuxAgent",
    "google-guest-agent",
    "qemu-guest-agent",
    "amazon-ssm-agent",
    "chrony",
    "ntp",
    "netplan.io",
    "dracut",
    "initramfs-tools",
    "grub-pc",
    "grub-efi-amd64",
    "grub2-pc",
)
BIOS_BOOT_GUID = "21686148-6449-6E6F-744E-656564454649"
ESP_GUID = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"


Json = dict[str, Any]


def _safe(call: Callable[..., Any], *args: Any, default: Any = None) -> Any:
    try:
        return call(*args)
    except RuntimeError:
        return default


class Session:
    def __init__(self) -> None:
        self.g = guestfs.GuestFS(python_return_dict=True)
        self.writable = False
        self.mounted = False
        self.root: str | None = None

    # -- open ------------------------------------------------------------------------------

    def open(self, disks: list[Json], writable: bool, memsize: int, smp: int) -> Json:
        started = time.monotonic()
        self.writable = writable
        for disk in disks:
            self.g.add_drive_opts(disk["path"], format=disk["format"], readonly=not writable)
        self.g.set_memsize(memsize)
        self.g.set_smp(smp)
        self.g.launch()
        return {"seconds": round(time.monotonic() - started, 3)}

    # -- inspect ---------------------------------------------------------------------------

    def _disks(self) -> list[Json]:
        g = self.g
        out = []
        for device in g.list_devices():
            disk = {"device": device, "size": g.blockdev_getsize64(device), "partitions": []}
            disk["table"] = _safe(g.part_get_parttype, device)
            # Boot code in the MBR's first 440 bytes: a BIOS boot loader (GRUB, syslinux).
            disk["mbr_code"] = any(g.pread_device(device, 440, 0))
            for part in _safe(g.part_list, device, default=[]) or []:
                number = part["part_num"]
                entry = {"number": number, "start": part["part_start"], "size": part["part_size"]}
                if disk["table"] == "gpt":
                    entry["gpt_type"] = _safe(g.part_get_gpt_type, device, number)
                elif disk["table"] == "msdos":
                    entry["mbr_id"] = _safe(g.part_get_mbr_id, device, number)
                    entry["bootable"] = _safe(g.part_get_bootable, device, number)
                disk["partitions"].append(entry)
            out.append(disk)
        return out

    def _filesystems(self) -> Json:
        # vfs_type per device rather than list_filesystems, which probes LVM, MD and every
        # device again (about 5 s under TCG). A whole disk can hold a filesystem: EBS data
        # volumes are often formatted without a partition table.
        g = self.g
        out = {}
        partitioned = {g.part_to_dev(p) for p in g.list_partitions()}
        devices = [d for d in g.list_devices() if d not in partitioned] + g.list_partitions()
        for device in devices:
            fstype = _safe(g.vfs_type, device, default="")
            if not fstype:
                continue
            out[device] = {
                "type": fstype,
                "uuid": _safe(g.vfs_uuid, device, default=""),
                "label": _safe(g.vfs_label, device, default=""),
            }
        return out

    def _mount(self) -> None:
        g = self.g
        points = g.inspect_get_mountpoints(self.root)
        for point, device in sorted(points.items(), key=lambda item: len(item[0])):
            try:
                (g.mount if self.writable else g.mount_ro)(device, point)
            except RuntimeError as exc:  # a missing /boot or /var shows as missing files
                sys.stderr.write(f"agent: mount {device} on {point}: {exc}\n")
        self.mounted = True

    def _read(self, path: str) -> str | None:
        g = self.g
        if not g.is_file(path, followsymlinks=True):
            return None
        if g.filesize(path) > MAX_FILE:
            return str(g.pread(path, MAX_FILE, 0).decode(errors="replace"))
        return str(g.read_file(path).decode(errors="replace"))

    def _files(self) -> Json:
        g = self.g
        out = {}
        for pattern in FILES:
            folder, name = posixpath.split(pattern)
            if "*" not in name:
                text = self._read(pattern)
                if text is not None:
                    out[pattern] = text
                continue
            if not g.is_dir(folder, followsymlinks=True):
                continue
            for entry in sorted(g.ls(folder)):
                if fnmatch.fnmatch(entry, name):
                    text = self._read(f"{folder}/{entry}")
                    if text is not None:
                        out[f"{folder}/{entry}"] = text
        return out

    def _initramfs_modules(self, path: str) -> list[str] | None:
        """The kernel modules an initramfs carries, by the guest's own listing tool."""
        g = self.g
        for tool in ("lsinitramfs", "lsinitrd"):
            if not any(g.exists(f"{d}/{tool}") for d in ("/usr/bin", "/usr/sbin", "/bin")):
                continue
            try:
                lines = g.command_lines([tool, path])
            except RuntimeError as exc:
                sys.stderr.write(f"agent: {tool} {path}: {exc}\n")
                continue
            return sorted({posixpath.basename(line.strip()) for line in lines if ".ko" in line})
        listed = _safe(g.initrd_list, path)  # gzip'd initramfs only
        if listed is None:
            return None
        return sorted({posixpath.basename(f) for f in listed if ".ko" in f})

    def _kernels(self) -> list[Json]:
        g = self.g
        if not g.is_dir("/boot"):
            return []
        out = []
        for entry in sorted(g.ls("/boot")):
            if not entry.startswith("vmlinuz-"):
                continue
            version = entry[len("vmlinuz-") :]
            kernel = {"version": version, "vmlinuz": f"/boot/{entry}"}
            for candidate in (f"/boot/initrd.img-{version}", f"/boot/initramfs-{version}.img"):
                if g.is_file(candidate, followsymlinks=True):
                    kernel["initrd"] = candidate
                    kernel["initrd_modules"] = self._initramfs_modules(candidate)
                    break
            moddir = next(
                (
                    d
                    for d in (f"/lib/modules/{version}", f"/usr/lib/modules/{version}")
                    if g.is_dir(d, followsymlinks=True)
                ),
                None,
            )
            if moddir:
                kernel["builtin"] = [
                    posixpath.basename(line)
                    for line in (self._read(f"{moddir}/modules.builtin") or "").splitlines()
                ]
                kernel["installed"] = [
                    posixpath.basename(line.split(":", 1)[0])
                    for line in (self._read(f"{moddir}/modules.dep") or "").splitlines()
                    if ":" in line
                ]
            out.append(kernel)
        return out

    def _units(self) -> Json:
        g = self.g
        out = {}
        for unit in UNITS:
            state = None
            for folder in UNIT_DIRS:
                path = f"{folder}/{unit}"
                if g.is_symlink(path) and g.readlink(path) == "/dev/null":
                    state = "masked"
                    break
                if g.exists(path):
                    state = "installed"
            if state == "installed" and g.is_dir("/etc/systemd/system"):
                wanted = [
                    d
                    for d in g.ls("/etc/systemd/system")
                    if d.endswith(".wants") and g.exists(f"/etc/systemd/system/{d}/{unit}")
                ]
                state = "enabled" if wanted else "disabled"
            if state:
                out[unit] = state
        return out

    def _packages(self) -> Json:
        apps = _safe(self.g.inspect_list_applications2, self.root, default=[]) or []
        wanted = set(PACKAGES)
        return {a["app2_name"]: a["app2_version"] for a in apps if a.get("app2_name") in wanted}

    def inspect(self) -> Json:
        g = self.g
        started = time.monotonic()
        disks = self._disks()
        out: Json = {"disks": disks, "filesystems": self._filesystems(), "os": None}
        out["esp_loaders"] = self._esp_loaders(disks)
        roots = g.inspect_os()
        if roots:
            self.root = roots[0]
            r = self.root
            out["os"] = {
                "type": g.inspect_get_type(r),
                "distro": g.inspect_get_distro(r),
                "major": g.inspect_get_major_version(r),
                "minor": g.inspect_get_minor_version(r),
                "product": g.inspect_get_product_name(r),
                "arch": g.inspect_get_arch(r),
                "package_format": g.inspect_get_package_format(r),
                "root": r,
                "mountpoints": g.inspect_get_mountpoints(r),
            }
            if out["os"]["type"] == "linux":
                self._mount()
                out["files"] = self._files()
                out["kernels"] = self._kernels()
                out["units"] = self._units()
                out["packages"] = self._packages()
                instances = "/var/lib/cloud/instances"
                out["cloud_instances"] = sorted(g.ls(instances)) if g.is_dir(instances) else []
        out["seconds"] = round(time.monotonic() - started, 3)
        return out

    def _esp_loaders(self, disks: list[Json]) -> list[str]:
        """EFI executables on the EFI system partition(s): each mounted alone on the
        appliance's root, before the guest's root is (so nothing of the guest is touched)."""
        g = self.g
        loaders: list[str] = []
        for disk in disks:
            for part in disk["partitions"]:
                if (part.get("gpt_type") or "").upper() != ESP_GUID and part.get("mbr_id") != 0xEF:
                    continue
                device = f"{disk['device']}{part['number']}"
                try:
                    g.mount_ro(device, "/")
                except RuntimeError:
                    continue
                try:
                    loaders += [p for p in g.find("/") if p.lower().endswith(".efi")]
                finally:
                    g.umount("/")
        return loaders

    # -- apply -----------------------------------------------------------------------------

    def apply(self, edits: list[Json]) -> Json:
        if not self.writable:
            raise RuntimeError("the disks were opened read-only")
        if self.root is None:
            raise RuntimeError("inspect first: no operating system was found")
        if not self.mounted:
            self._mount()
        g = self.g
        done = []
        for edit in edits:
            started = time.monotonic()
            op = edit["op"]
            output = ""
            if op == "write":
                path = edit["path"]
                g.mkdir_p(posixpath.dirname(path))
                # The original is kept once, outside every configuration glob (ifcfg-*,
                # *.rules, *.yaml would read a copy kept beside it): see edits.ORIGINALS.
                backup = ORIGINALS + path
                if edit.get("backup") and g.is_file(path) and not g.exists(backup):
                    g.mkdir_p(posixpath.dirname(backup))
                    g.cp_a(path, backup)
                g.write(path, edit["content"].encode())
                g.chmod(int(edit.get("mode", 0o644)), path)
            elif op == "rename":
                if g.exists(edit["src"]):
                    g.mv(edit["src"], edit["dst"])
            elif op == "remove":
                g.rm_rf(edit["path"])
            elif op == "command":
                output = g.command(edit["argv"])
            else:
                raise RuntimeError(f"unknown edit {op!r}")
            done.append(
                {"op": op, "seconds": round(time.monotonic() - started, 3), "output": output}
            )
        g.sync()
        return {"applied": done}

    def close(self) -> Json:
        if self.mounted:
            self.g.umount_all()
        self.g.shutdown()  # flushes the writes to the disk files
        self.g.close()
        return {}


def _die_with_parent() -> None:
    """Ask Linux to end this agent when imagekit dies, even by SIGKILL: libguestfs's own
    recovery process then stops the appliance, so a killed boot leaves no QEMU behind."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the session still ends when its stdin closes


def main() -> int:
    _die_with_parent()
    session = Session()
    for line in sys.stdin:
        request = json.loads(line)
        op = request.get("op")
        try:
            if op == "open":
                answer = session.open(
                    request["disks"],
                    bool(request.get("writable")),
                    int(request.get("memsize", 768)),
                    int(request.get("smp", 1)),
                )
            elif op == "inspect":
                answer = {"facts": session.inspect()}
            elif op == "apply":
                answer = session.apply(request["edits"])
            elif op == "close":
                answer = session.close()
            else:
                raise RuntimeError(f"unknown request {op!r}")
        except (RuntimeError, KeyError, ValueError) as exc:
            answer = {"ok": False, "error": str(exc).strip().splitlines()[-1] if str(exc) else op}
        else:
            answer = {"ok": True, **answer}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
        if op == "close":
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
