"""What a disk's guest is, read from the agent's raw dump: pure parsing, no I/O.

The agent (``agent.py``) hands over files, partitions and module lists as they are on the disk;
this module turns them into ``GuestFacts``, the values the rules decide on. Everything here is
tested with dumps written by hand, so a rule can be proven without building an image.

What is read, and where from:

- boot mode: the MBR's boot code and partition types (BIOS boot partition, EFI system
  partition with an ``.efi`` loader on it);
- kernels: ``/boot/vmlinuz-*``, each with its initramfs's modules (the guest's ``lsinitramfs``
  or ``lsinitrd``), ``modules.builtin`` and ``modules.dep`` (installed modules);
- cloud-init: ``cloud.cfg`` then ``cloud.cfg.d/*.cfg`` in name order, the last
  ``datasource_list`` winning (as cloud-init and ds-identify merge them), disabled by
  ``/etc/cloud/cloud-init.disabled``, masked units or ``cloud-init=disabled`` on the kernel line;
- network pinned to a MAC: netplan ``match: macaddress``, udev rules with ``ATTR{address}``
  naming an interface, ifcfg ``HWADDR``/``MACADDR``, NetworkManager ``mac-address``;
- fstab entries; the kernel command line (``grub.cfg``'s first ``linux`` line, else
  ``/etc/default/grub``); time sources (chrony, ntpd, timesyncd); agents' units.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

BIOS_BOOT_GUID = "21686148-6449-6E6F-744E-656564454649"
ESP_GUID = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
ESP_MBR_ID = 0xEF
#: Time servers only AWS answers: the Amazon Time Sync Service's link-local addresses.
AWS_TIME_SERVERS = frozenset({"169.254.169.123", "fd00:ec2::123"})


@dataclass(frozen=True)
class Filesystem:
    device: str
    type: str
    uuid: str = ""
    label: str = ""


@dataclass(frozen=True)
class FstabEntry:
    line: int  # 1-based line number in /etc/fstab
    spec: str
    mountpoint: str
    fstype: str
    options: tuple[str, ...]

    @property
    def nofail(self) -> bool:
        return "nofail" in self.options


@dataclass(frozen=True)
class Kernel:
    version: str
    initrd: str | None
    #: Modules the initramfs carries; None when it could not be listed.
    initrd_modules: frozenset[str] | None
    builtin: frozenset[str]
    installed: frozenset[str]

    def boot_drivers(self) -> frozenset[str]:
        """Drivers usable before the root is mounted: built in, or in the initramfs."""
        return self.builtin | (self.initrd_modules or frozenset())

    def has_module(self, name: str) -> bool:
        return name in self.builtin or name in self.installed


@dataclass(frozen=True)
class NetPin:
    """A network configuration bound to one MAC address (it will not match another NIC)."""

    path: str
    kind: str  # netplan | udev | ifcfg | networkmanager
    mac: str
    interface: str  # the name it configures or gives ("" if unsaid)


@dataclass(frozen=True)
class CloudInit:
    version: str
    #: The merged ``datasource_list``; None: not set (cloud-init then tries every datasource).
    datasources: tuple[str, ...] | None
    disabled: str  # why it will not run ("" when it will)
    network_disabled: bool  # ``network: {config: disabled}``: the guest's own files decide
    instances: tuple[str, ...]  # instance ids of earlier boots (/var/lib/cloud/instances)
    #: The config file holding the effective ``datasource_list`` ("" if none).
    datasource_file: str = ""

    def allows(self, datasource: str) -> bool:
        return self.datasources is None or datasource in self.datasources


@dataclass(frozen=True)
class GuestFacts:
    os_type: str  # linux | windows | unknown ("" when no operating system was found)
    distro: str = ""
    version: str = ""
    product: str = ""
    architecture: str = ""
    partition_table: str = ""  # msdos | gpt | "" (none)
    boot_mode: str = ""  # bios | uefi | both | "" (no boot loader found)
    root_device: str = ""
    filesystems: tuple[Filesystem, ...] = ()
    disks: tuple[str, ...] = ()  # /dev/sda, /dev/sdb… in the order the image's volumes are
    fstab: tuple[FstabEntry, ...] = ()
    kernels: tuple[Kernel, ...] = ()  # newest first: the one GRUB boots by default
    initramfs_tool: str = ""  # initramfs-tools | dracut | ""
    cloud_init: CloudInit | None = None
    net_pins: tuple[NetPin, ...] = ()
    cmdline: tuple[str, ...] = ()  # the kernel arguments the boot loader passes
    grub: str = ""  # grub | grub2 | "" (no GRUB configuration found)
    time_sources: tuple[str, ...] = ()
    chrony_sourcedir: bool = False  # chrony reads /etc/chrony/sources.d (Debian, Ubuntu)
    agents: Mapping[str, str] = field(default_factory=dict)  # agent → enabled|disabled|masked
    waagent_provisions: bool = False  # waagent will provision (Provisioning.Agent / .Enabled)
    packages: Mapping[str, str] = field(default_factory=dict)
    #: The configuration files as read, for rules that rewrite one (fstab, udev rules…).
    files: Mapping[str, str] = field(default_factory=dict)

    @property
    def kernel(self) -> Kernel | None:
        return self.kernels[0] if self.kernels else None

    def filesystem(self, *, uuid: str = "", label: str = "", device: str = "") -> Filesystem | None:
        for fs in self.filesystems:
            if (uuid and fs.uuid == uuid) or (label and fs.label == label):
                return fs
            if device and fs.device == device:
                return fs
        return None

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.pop("files")
        for kernel in doc["kernels"]:
            for key in ("initrd_modules", "builtin", "installed"):
                if kernel[key] is not None:
                    kernel[key] = sorted(kernel[key])
            # The full module lists run to thousands of names: the report keeps the drivers.
            kernel["installed"] = [m for m in kernel["installed"] if m in _REPORTED]
            kernel["builtin"] = [m for m in kernel["builtin"] if m in _REPORTED]
            if kernel["initrd_modules"] is not None:
                kernel["initrd_modules"] = [m for m in kernel["initrd_modules"] if m in _REPORTED]
        doc["agents"] = dict(self.agents)
        doc["packages"] = dict(self.packages)
        return doc


#: The drivers the issue's facts name; the rest of a kernel's modules stay out of reports.
_REPORTED = frozenset(
    {
        "virtio_blk",
        "virtio_scsi",
        "virtio_net",
        "virtio_pci",
        "sd_mod",
        "nvme",
        "ena",
        "gve",
        "hv_vmbus",
        "hv_storvsc",
        "hv_netvsc",
        "xen_blkfront",
        "xen_netfront",
        "ata_piix",
        "ahci",
        "e1000",
    }
)


# --- parsing --------------------------------------------------------------------------------------


def _module_names(names: Iterable[str] | None) -> frozenset[str] | None:
    """``virtio_blk.ko.xz`` → ``virtio_blk``; dashes as underscores, as modprobe treats them."""
    if names is None:
        return None
    out = set()
    for name in names:
        base = name.rsplit("/", 1)[-1]
        base = base.split(".ko", 1)[0]
        if base:
            out.add(base.replace("-", "_"))
    return frozenset(out)


def _version_key(version: str) -> tuple[Any, ...]:
    # 6.1.0-28-cloud-amd64 before 6.1.0-9: numbers compare as numbers.
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[.\-+~_]", version))


def parse_kernels(raw: Iterable[Mapping[str, Any]]) -> tuple[Kernel, ...]:
    kernels = [
        Kernel(
            version=str(k["version"]),
            initrd=k.get("initrd"),
            initrd_modules=_module_names(k.get("initrd_modules")),
            builtin=_module_names(k.get("builtin")) or frozenset(),
            installed=_module_names(k.get("installed")) or frozenset(),
        )
        for k in raw
    ]
    return tuple(sorted(kernels, key=lambda k: _version_key(k.version), reverse=True))


def parse_fstab(text: str) -> tuple[FstabEntry, ...]:
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if len(fields) < 3:
            continue
        options = tuple(fields[3].split(",")) if len(fields) > 3 else ("defaults",)
        entries.append(FstabEntry(number, fields[0], fields[1], fields[2], options))
    return tuple(entries)


def _yaml(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None  # cloud-init skips a file it cannot parse; so do the rules


def cloud_config_files(files: Mapping[str, str]) -> list[str]:
    """cloud.cfg, then cloud.cfg.d/*.cfg in name order: cloud-init's merge order."""
    drop_ins = sorted(p for p in files if p.startswith("/etc/cloud/cloud.cfg.d/"))
    return [p for p in ("/etc/cloud/cloud.cfg", *drop_ins) if p in files]


def parse_cloud_init(
    files: Mapping[str, str],
    packages: Mapping[str, str],
    units: Mapping[str, str],
    cmdline: Iterable[str],
    instances: Iterable[str],
) -> CloudInit | None:
    if "cloud-init" not in packages and "/etc/cloud/cloud.cfg" not in files:
        return None
    datasources: tuple[str, ...] | None = None
    datasource_file = ""
    network_disabled = False
    for path in cloud_config_files(files):
        doc = _yaml(files[path])
        if not isinstance(doc, dict):
            continue
        if "datasource_list" in doc:
            listed = doc["datasource_list"]
            if isinstance(listed, list):
                datasources = tuple(str(d) for d in listed)
            elif isinstance(listed, str):  # ``datasource_list: Ec2`` is read as one name
                datasources = (listed,)
            datasource_file = path
        network = doc.get("network")
        if isinstance(network, dict) and "config" in network:
            network_disabled = network["config"] == "disabled"
    disabled = ""
    if "/etc/cloud/cloud-init.disabled" in files:
        disabled = "/etc/cloud/cloud-init.disabled exists"
    elif "cloud-init=disabled" in cmdline:
        disabled = "the kernel command line says cloud-init=disabled"
    elif units.get("cloud-init-local.service") == "masked" or units.get("cloud-init.service") == (
        "masked"
    ):
        disabled = "its systemd units are masked"
    elif units and units.get("cloud-init.service") == "disabled":
        disabled = "its systemd units are not enabled"
    return CloudInit(
        version=packages.get("cloud-init", ""),
        datasources=datasources,
        disabled=disabled,
        network_disabled=network_disabled,
        instances=tuple(instances),
        datasource_file=datasource_file,
    )


_MAC = r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}"
_UDEV_ADDRESS = re.compile(r'ATTRS?\{address\}=="(' + _MAC + ')"')
_UDEV_NAME = re.compile(r'NAME="([^"]+)"')


def parse_net_pins(files: Mapping[str, str]) -> tuple[NetPin, ...]:
    pins: list[NetPin] = []
    for path, text in sorted(files.items()):
        if path.startswith("/etc/netplan/"):
            doc = _yaml(text)
            network = doc.get("network") if isinstance(doc, dict) else None
            ethernets = network.get("ethernets") if isinstance(network, dict) else None
            for name, conf in (ethernets or {}).items():
                match = conf.get("match") if isinstance(conf, dict) else None
                if isinstance(match, dict) and match.get("macaddress"):
                    given = conf.get("set-name") or name
                    pins.append(NetPin(path, "netplan", str(match["macaddress"]), str(given)))
        elif path.startswith("/etc/udev/rules.d/"):
            for line in text.splitlines():
                if line.lstrip().startswith("#"):
                    continue
                address, name = _UDEV_ADDRESS.search(line), _UDEV_NAME.search(line)
                if address and name:
                    pins.append(NetPin(path, "udev", address.group(1), name.group(1)))
        elif path.startswith("/etc/sysconfig/network-scripts/ifcfg-"):
            values = _shell_vars(text)
            mac = values.get("HWADDR") or values.get("MACADDR")
            if mac:
                pins.append(NetPin(path, "ifcfg", mac, values.get("DEVICE", "")))
        elif path.startswith("/etc/NetworkManager/system-connections/"):
            found = re.search(r"^mac-address=(" + _MAC + ")", text, re.M)
            if found:
                name = re.search(r"^interface-name=(\S+)", text, re.M)
                pins.append(
                    NetPin(path, "networkmanager", found.group(1), name.group(1) if name else "")
                )
    return tuple(pins)


def _shell_vars(text: str) -> dict[str, str]:
    """``KEY=value`` lines of a shell-style file (ifcfg, /etc/default/grub, os-release)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        try:
            parts = shlex.split(value, comments=True)
        except ValueError:
            parts = [value.strip("\"'")]
        values[key.strip()] = " ".join(parts)
    return values


def parse_cmdline(files: Mapping[str, str]) -> tuple[tuple[str, ...], str]:
    """The kernel arguments the boot loader passes, and which GRUB (if any) holds them."""
    for path, grub in (("/boot/grub/grub.cfg", "grub"), ("/boot/grub2/grub.cfg", "grub2")):
        text = files.get(path)
        if text is None:
            continue
        for line in text.splitlines():
            words = line.split()
            if words and words[0] in ("linux", "linux16", "linuxefi"):
                return tuple(words[2:]), grub
        return (), grub
    if "/etc/kernel/cmdline" in files:
        return tuple(files["/etc/kernel/cmdline"].split()), ""
    defaults = _shell_vars(files.get("/etc/default/grub", ""))
    args = (
        f"{defaults.get('GRUB_CMDLINE_LINUX', '')} {defaults.get('GRUB_CMDLINE_LINUX_DEFAULT', '')}"
    )
    return tuple(args.split()), ("grub" if "/etc/default/grub" in files else "")


def parse_time_sources(files: Mapping[str, str]) -> tuple[tuple[str, ...], bool]:
    sources: list[str] = []
    sourcedir = False
    for path, text in sorted(files.items()):
        if path.startswith(("/etc/chrony", "/etc/ntp.conf")):
            for line in text.splitlines():
                words = line.split("#", 1)[0].split()
                if len(words) >= 2 and words[0] in ("server", "pool", "peer"):
                    sources.append(words[1])
                if words[:2] == ["sourcedir", "/etc/chrony/sources.d"]:
                    sourcedir = True
        elif path.startswith("/etc/systemd/timesyncd.conf"):
            for line in text.splitlines():
                key, _, value = line.partition("=")
                if key.strip() in ("NTP", "FallbackNTP"):
                    sources += value.split()
    return tuple(dict.fromkeys(sources)), sourcedir


def boot_mode(disks: Iterable[Mapping[str, Any]], esp_loaders: Iterable[str]) -> str:
    """``bios``, ``uefi``, ``both`` or "": which firmware can start the first disk's loader."""
    first = next(iter(disks), None)
    if first is None:
        return ""
    parts = first.get("partitions") or []
    table = first.get("table")
    bios = bool(first.get("mbr_code")) and (
        table == "msdos" or any((p.get("gpt_type") or "").upper() == BIOS_BOOT_GUID for p in parts)
    )
    esp = any(
        (p.get("gpt_type") or "").upper() == ESP_GUID or p.get("mbr_id") == ESP_MBR_ID
        for p in parts
    )
    uefi = esp and any(True for _ in esp_loaders)
    return "both" if bios and uefi else "bios" if bios else "uefi" if uefi else ""


AGENT_UNITS = {
    "waagent": ("walinuxagent.service", "waagent.service"),
    "google-guest-agent": ("google-guest-agent.service",),
    "qemu-guest-agent": ("qemu-guest-agent.service",),
    "amazon-ssm-agent": (
        "amazon-ssm-agent.service",
        "snap.amazon-ssm-agent.amazon-ssm-agent.service",
    ),
}


def _agents(units: Mapping[str, str]) -> dict[str, str]:
    out = {}
    for agent, names in AGENT_UNITS.items():
        states = [units[n] for n in names if n in units]
        if states:
            out[agent] = "enabled" if "enabled" in states else states[0]
    return out


def _waagent_provisions(files: Mapping[str, str], agents: Mapping[str, str]) -> bool:
    """Whether waagent itself provisions (and so reports Ready) on Azure's first boot."""
    if agents.get("waagent") != "enabled":
        return False
    conf = files.get("/etc/waagent.conf", "")
    values = dict(
        (k.strip(), v.strip())
        for k, _, v in (line.partition("=") for line in conf.splitlines())
        if not k.strip().startswith("#")
    )
    agent = values.get("Provisioning.Agent", "").lower()
    if agent:  # waagent 2.2.x and newer: "auto" hands over to cloud-init when it is there
        return agent in ("waagent", "auto")
    return values.get("Provisioning.Enabled", "y").lower() == "y"


def parse_facts(raw: Mapping[str, Any]) -> GuestFacts:
    """The facts of one agent dump (``agent.py`` → ``inspect``)."""
    disks = raw.get("disks") or []
    filesystems = tuple(
        Filesystem(dev, str(fs.get("type", "")), str(fs.get("uuid", "")), str(fs.get("label", "")))
        for dev, fs in sorted((raw.get("filesystems") or {}).items())
    )
    os_info = raw.get("os") or {}
    common: dict[str, Any] = {
        "partition_table": str((disks[0].get("table") or "") if disks else ""),
        "boot_mode": boot_mode(disks, raw.get("esp_loaders") or ()),
        "filesystems": filesystems,
        "disks": tuple(str(d["device"]) for d in disks),
    }
    if not os_info:
        return GuestFacts(os_type="", **common)
    files: Mapping[str, str] = raw.get("files") or {}
    packages: Mapping[str, str] = raw.get("packages") or {}
    units: Mapping[str, str] = raw.get("units") or {}
    cmdline, grub = parse_cmdline(files)
    time_sources, sourcedir = parse_time_sources(files)
    agents = _agents(units)
    kernels = parse_kernels(raw.get("kernels") or ())
    if "dracut" in packages or any(p.startswith("/etc/dracut.conf") for p in files):
        tool = "dracut"
    elif "initramfs-tools" in packages or "/etc/initramfs-tools/initramfs.conf" in files:
        tool = "initramfs-tools"
    else:
        tool = ""
    version = str(os_info.get("major", ""))
    if os_info.get("minor") not in (None, ""):
        version += f".{os_info['minor']}"
    return GuestFacts(
        os_type=str(os_info.get("type") or "unknown"),
        distro=str(os_info.get("distro", "")),
        version=version,
        product=str(os_info.get("product", "")),
        architecture="arm64" if os_info.get("arch") == "aarch64" else str(os_info.get("arch", "")),
        root_device=str(os_info.get("root", "")),
        fstab=parse_fstab(files.get("/etc/fstab", "")),
        kernels=kernels,
        initramfs_tool=tool,
        cloud_init=parse_cloud_init(
            files, packages, units, cmdline, raw.get("cloud_instances") or ()
        ),
        net_pins=parse_net_pins(files),
        cmdline=cmdline,
        grub=grub,
        time_sources=time_sources,
        chrony_sourcedir=sourcedir,
        agents=agents,
        waagent_provisions=_waagent_provisions(files, agents),
        packages=dict(packages),
        files=dict(files),
        **common,
    )


__all__ = [
    "AWS_TIME_SERVERS",
    "CloudInit",
    "Filesystem",
    "FstabEntry",
    "GuestFacts",
    "Kernel",
    "NetPin",
    "parse_facts",
]
