"""Build real Debian 12 guests, configured per cloud as Debian's own cloud images are.

``python testbed/debian/build.py --out build/debian [VARIANT...]`` writes ``<variant>.raw``
(2 GiB sparse, MBR, one ext4 root, GRUB for BIOS) for each variant:

    ec2        cloud-init trusts only the EC2 datasource (Debian's official EC2 image)
    gce        cloud-init with the GCE datasource (Debian's GCE image)
    gce-uefi   the same on a GPT disk that boots only through UEFI (an EFI system partition)
    azure      cloud-init with the Azure datasource only (Debian's Azure image)
    azure-waagent  no cloud-init: the Linux agent (waagent) provisions, as on images without it
    openstack  cloud-init with ConfigDrive and OpenStack (Debian's OpenStack image)

and the "customer AMIs": ``ec2`` with one defect each that real AMIs carry off AWS:

    ec2-macpin    the network pinned to the EC2 NIC's MAC: cloud-init's network configuration
                  disabled, a persistent-net udev rule naming that MAC ``ens5`` and an ifupdown
                  stanza for ``ens5``; elsewhere the NIC has another MAC, stays ``eth0`` and gets
                  no address (Debian 12 has no netplan unless installed: ifupdown is its stack)
    ec2-netplan   the same pin in netplan, as cloud-init writes it on EC2 (``match: macaddress``,
                  ``set-name: ens5``) and the image was baked with cloud-init's network
                  configuration then disabled; this variant alone has ``netplan.io`` (its
                  generator hands the network to systemd-networkd) and ``systemd-resolved``
                  (without it networkd writes no resolv.conf, and GCE's datasource cannot
                  resolve metadata.google.internal). Its own root tree: installing them in the
                  shared one would change every variant's network stack
    ec2-nvme      a second EBS volume, ``ec2-nvme.data.raw`` (64 MiB, one ext4 filesystem with
                  ``imagekit-data.txt``, no label, a fixed UUID), in fstab as ``/dev/nvme1n1
                  /data`` without ``nofail``: elsewhere that name does not exist, systemd waits
                  90 s for it and drops to emergency mode
    ec2-hostonly  an initramfs built host-only for Nitro (initramfs-tools ``MODULES=list`` with
                  ``nvme`` and ``ena``) by the guest's own ``update-initramfs``: no virtio_blk,
                  virtio_scsi or hv_storvsc, so the root is found only on NVMe disks. Debian's
                  cloud kernel builds those three as modules and nvme and ext4 in (its
                  ``/boot/config-*``), so the cloud kernel shows the defect as it is
    ec2-uefi      ``ec2`` on a GPT disk that boots only through UEFI, as ``gce-uefi``

Each writes ``<variant>.json`` beside its disk: the disk files, filesystem UUIDs and the AMI's
boot mode and architecture (``testbed.debian.guests`` reads it for tests).

The root filesystem comes from the Debian mirror through ``mmdebstrap`` once (about a minute),
cached as ``rootfs.tar`` with a stamp of its inputs; each variant is that tree plus the
variant's cloud-init settings, written by ``mkfs.ext4 -d`` straight into the disk file at the
partition's offset (no loop device, no mount), and GRUB's boot sector and core image written at
the disk's start. The host-only initramfs is made in a chroot whose /proc, /sys and /dev are
mounted in a private mount namespace (``unshare``), so they vanish with it, even on a crash.
Needs root (the tree keeps its owners) and the Debian packages in ``APT_PACKAGES``. Outputs
are written under temporary names and renamed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SUITE = "bookworm"
MIB = 1024 * 1024
DISK_SIZE = 2048 * MIB  # ~900 MiB used; a whole number of GiB, as GCE requires of raw disks
PART_OFFSET = 1 * MIB  # sector 2048; sectors 1..2047 hold GRUB's core image
SECTOR = 512
GRUB_DIR = Path("/usr/lib/grub/i386-pc")
GRUB_EFI_DIR = Path("/usr/lib/grub/x86_64-efi")
ESP_SIZE = 63 * MIB  # FAT32 needs at least ~33 MiB; the root follows at 64 MiB
# GPT keeps a backup header in the disk's last 33 sectors: the root stops a MiB before the end.
GPT_TAIL = 1 * MIB
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
LINUX_TYPE = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
# What core.img must carry to find and read /boot/grub/grub.cfg on an ext4 partition of an MBR
# disk and boot Linux with the console on the first serial port.
GRUB_MODULES = (
    *("biosdisk", "part_msdos", "ext2", "normal", "configfile", "linux", "search"),
    *("search_fs_uuid", "serial", "terminal", "echo", "test", "gzio", "all_video"),
)
GRUB_EFI_MODULES = (*(m if m != "biosdisk" else "part_gpt" for m in GRUB_MODULES), "fat")
# What the guest needs to boot and be reached: the cloud kernel (virtio, nvme, ena, gve and the
# Hyper-V drivers built in or as modules), cloud-init with the DHCP client it calls, sshd.
PACKAGES = (
    "linux-image-cloud-amd64",
    "cloud-init",
    "openssh-server",
    "ifupdown",
    "isc-dhcp-client",
    "systemd-sysv",
    "udev",
    "initramfs-tools",
    "netbase",
    "procps",
    "iproute2",
    "waagent",  # Azure's Linux agent: runs only in the variants that enable it
)
# Host keys and the machine id are made at first boot, as on every cloud image; apt's lists are
# dropped to keep the disk small.
ROOTFS_HOOKS = (
    'rm -f "$1"/etc/ssh/ssh_host_*_key*',
    ': > "$1"/etc/machine-id',
    'rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin',
)
APT_PACKAGES = "mmdebstrap grub-pc-bin grub-efi-amd64-bin e2fsprogs fdisk dosfstools mtools"
TOOLS = (
    *("mmdebstrap", "grub-mkimage", "mkfs.ext4", "sfdisk", "mkfs.vfat", "mcopy", "mmd"),
    *("unshare", "chroot"),
)
# Debian's cloud images log the console on ttyS0 (and tty0) and keep the classic eth0 names.
KERNEL_ARGS = "console=tty0 console=ttyS0,115200 earlyprintk=ttyS0,115200 net.ifnames=0 ro"

# The cloud-init datasources each of Debian's per-cloud images enables (the file name is the
# one debconf writes for `dpkg-reconfigure cloud-init`).
DATASOURCES = {
    "ec2": "[ Ec2, None ]",
    "gce": "[ GCE, None ]",
    "gce-uefi": "[ GCE, None ]",
    "azure": "[ Azure ]",
    "azure-waagent": "[ Azure ]",
    "openstack": "[ ConfigDrive, OpenStack, None ]",
    "ec2-macpin": "[ Ec2, None ]",
    "ec2-netplan": "[ Ec2, None ]",
    "ec2-nvme": "[ Ec2, None ]",
    "ec2-hostonly": "[ Ec2, None ]",
    "ec2-uefi": "[ Ec2, None ]",
}
VARIANTS = tuple(DATASOURCES)
UEFI_ONLY = frozenset({"gce-uefi", "ec2-uefi"})
WAAGENT = frozenset({"azure-waagent"})  # the agent provisions; cloud-init is disabled
AGENT_UNIT = "etc/systemd/system/walinuxagent.service"
# The agent refuses to provision while `systemctl is-enabled cloud-init-local.service` says
# enabled: its variant masks cloud-init's units.
CLOUD_INIT_UNITS = ("cloud-init-local", "cloud-init", "cloud-config", "cloud-final")

# The customer AMIs' defects (see the module docstring). EC2 gives NICs locally administered
# MACs (0e:… or 02:…): no other cloud's NIC has this one.
MAC_PINNED = frozenset({"ec2-macpin", "ec2-netplan"})
NETPLAN = frozenset({"ec2-netplan"})
# Packages a variant's root tree has beyond PACKAGES (each set is a root tree of its own).
EXTRA_PACKAGES = {"ec2-netplan": ("netplan.io", "systemd-resolved")}
EC2_MAC = "0e:3c:5a:91:7d:e3"
EC2_NIC = "ens5"  # what predictable naming calls the ENA NIC on Nitro (PCI slot 5)
NET_CONFIG_OFF = "etc/cloud/cloud.cfg.d/99-disable-network-config.cfg"
PERSISTENT_NET = "etc/udev/rules.d/70-persistent-net.rules"
PINNED_STANZA = f"etc/network/interfaces.d/{EC2_NIC}"
PINNED_NETPLAN = "etc/netplan/50-cloud-init.yaml"
DATA_VOLUME = frozenset({"ec2-nvme"})
DATA_SIZE = 64 * MIB  # room for a recognisable file; small enough to seed into the emulator
DATA_DEVICE = "/dev/nvme1n1"  # the AMI's second EBS volume, as Nitro names it
DATA_MOUNT = "/data"
DATA_FILE = "imagekit-data.txt"
HOST_ONLY = frozenset({"ec2-hostonly"})
# What a Nitro instance needs before the root is mounted: its disk (nvme, built into Debian's
# cloud kernel, so listed only as the builder on EC2 would list it) and its NIC.
HOST_ONLY_MODULES = ("nvme", "ena")
HOST_ONLY_CONF = "etc/initramfs-tools/conf.d/hostonly.conf"
INITRAMFS_MODULES = "etc/initramfs-tools/modules"


class BuildError(Exception):
    """A step failed; the message is the one line printed before exiting."""


def step(message: str) -> None:
    print(f"debian: {message}", flush=True)


def run(*argv: str | Path, stdin: bytes | None = None) -> str:
    try:
        done = subprocess.run([str(a) for a in argv], input=stdin, capture_output=True, check=False)
    except FileNotFoundError as exc:
        raise BuildError(f"{argv[0]} not found: apt-get install {APT_PACKAGES}") from exc
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()
        raise BuildError(f"{argv[0]} failed: {lines[-1] if lines else done.returncode}")
    return done.stdout.decode(errors="replace")


def check_tools() -> None:
    if os.geteuid() != 0:
        raise BuildError("building Debian guests needs root (the root tree keeps its owners)")
    missing = [t for t in TOOLS if shutil.which(t) is None]
    dirs = [str(d) for d in (GRUB_DIR, GRUB_EFI_DIR) if not d.is_dir()]
    if missing or dirs:
        what = ", ".join(missing + dirs)
        raise BuildError(f"missing {what}: apt-get install {APT_PACKAGES}")


def _stamp(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()


# --- the root tree ------------------------------------------------------------------------------


def packages_of(variant: str) -> tuple[str, ...]:
    return (*PACKAGES, *EXTRA_PACKAGES.get(variant, ()))


def rootfs(out: Path, packages: tuple[str, ...] = PACKAGES) -> Path:
    """The root tree of ``packages`` from the mirror as a tar (``rootfs.tar`` for PACKAGES,
    ``rootfs-<extra>.tar`` for more), rebuilt only when the package list changes."""
    extra = [p.removesuffix(".io") for p in packages if p not in PACKAGES]
    name = "-".join(("rootfs", *extra))
    tar, stamp_file = out / f"{name}.tar", out / f"{name}.sha256"
    stamp = _stamp(SUITE, *packages, *ROOTFS_HOOKS)
    if tar.is_file() and stamp_file.is_file() and stamp_file.read_text().strip() == stamp:
        return tar
    step(f"mmdebstrap {SUITE} with {len(packages)} packages (about a minute)")
    partial = out / f".{name}.tar.partial"
    argv: list[str | Path] = ["mmdebstrap", "--variant=apt", "--format=tar"]
    argv.append("--include=" + ",".join(packages))
    argv += [f"--customize-hook={hook}" for hook in ROOTFS_HOOKS]
    run(*argv, SUITE, partial)
    os.replace(partial, tar)
    stamp_file.write_text(stamp + "\n")
    return tar


def _kernel_files(tree: Path) -> tuple[str, str]:
    kernels = sorted(p.name for p in (tree / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise BuildError("the root tree has no kernel in /boot")
    version = kernels[-1].removeprefix("vmlinuz-")
    if not (tree / "boot" / f"initrd.img-{version}").is_file():
        raise BuildError(f"the root tree has no initramfs for {version}")
    return f"/boot/vmlinuz-{version}", f"/boot/initrd.img-{version}"


def configure(tree: Path, variant: str, root_uuid: str, work: Path) -> None:
    """What Debian's image builder writes besides the packages, for ``variant``."""
    kernel, initrd = _kernel_files(tree)
    (tree / "etc/fstab").write_text(f"UUID={root_uuid} / ext4 defaults,discard 0 1\n")
    (tree / "etc/hostname").write_text("localhost\n")
    (tree / "etc/network/interfaces").write_text(
        "# cloud-init writes the interfaces it configures into interfaces.d\n"
        "auto lo\niface lo inet loopback\n\nsource-directory /etc/network/interfaces.d\n"
    )
    cfg = tree / "etc/cloud/cloud.cfg.d"
    cfg.mkdir(parents=True, exist_ok=True)
    (cfg / "90_dpkg.cfg").write_text(
        f"# to update this file, run dpkg-reconfigure cloud-init\n"
        f"datasource_list: {DATASOURCES[variant]}\n"
    )
    (tree / "etc/imagekit-variant").write_text(variant + "\n")
    _configure_agent(tree, variant)
    _configure_network_pin(tree, variant)
    _configure_data_volume(tree, variant)
    _configure_initramfs(tree, variant, work)
    grub = tree / "boot/grub"
    (grub / "i386-pc").mkdir(parents=True, exist_ok=True)
    for module in GRUB_DIR.glob("*.mod"):
        shutil.copy2(module, grub / "i386-pc" / module.name)
    (grub / "grub.cfg").write_text(
        "serial --unit=0 --speed=115200\nterminal_input serial console\n"
        "terminal_output serial console\nset timeout=0\n"
        f"search --no-floppy --fs-uuid --set=root {root_uuid}\n"
        "menuentry 'Debian GNU/Linux' {\n"
        f"  linux {kernel} root=UUID={root_uuid} {KERNEL_ARGS}\n"
        f"  initrd {initrd}\n}}\n"
    )


def _configure_agent(tree: Path, variant: str) -> None:
    """waagent masked where it is not the provisioning agent (elsewhere it would poll a
    wireserver that is not there); in its variant it provisions and cloud-init is off."""
    unit = tree / AGENT_UNIT
    unit.unlink(missing_ok=True)
    disabled = tree / "etc/cloud/cloud-init.disabled"
    disabled.unlink(missing_ok=True)
    # Without cloud-init nothing writes the NIC's configuration or makes host keys: an image
    # provisioned by the agent carries both (keys made at first boot, one set per VM).
    nic = tree / "etc/network/interfaces.d/eth0"
    keygen = tree / "etc/systemd/system/ssh.service.d/host-keys.conf"
    # The agent's unit starts only where systemd sees Hyper-V, which it reads from the CPUID
    # hypervisor signature ("Microsoft Hv"): QEMU's TCG cannot present it, so this test guest
    # drops the condition (docs/providers/twins.md says so).
    anywhere = tree / "etc/systemd/system/walinuxagent.service.d/twin.conf"
    masks = [tree / f"etc/systemd/system/{name}.service" for name in CLOUD_INIT_UNITS]
    for path in (nic, keygen, anywhere, *masks):
        path.unlink(missing_ok=True)
    conf = tree / "etc/waagent.conf"
    text = conf.read_text()
    stock = text.replace("Provisioning.Agent=waagent", "Provisioning.Agent=cloud-init")
    if variant not in WAAGENT:
        unit.symlink_to("/dev/null")
        conf.write_text(stock)
        return
    disabled.write_text("")
    for mask in masks:
        mask.symlink_to("/dev/null")
    nic.write_text("allow-hotplug eth0\niface eth0 inet dhcp\n")
    anywhere.parent.mkdir(parents=True, exist_ok=True)
    anywhere.write_text("[Unit]\nConditionVirtualization=\n")
    keygen.parent.mkdir(parents=True, exist_ok=True)
    # Before the unit's own "sshd -t", which fails without keys: the list is reset first.
    keygen.write_text(
        "[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\n"
        "ExecStartPre=/usr/sbin/sshd -t\n"
    )
    conf.write_text(stock.replace("Provisioning.Agent=cloud-init", "Provisioning.Agent=waagent"))


# --- the customer AMIs' defects: each undone for the variants without it (one tree serves all) ---


def _configure_network_pin(tree: Path, variant: str) -> None:
    """A baked AMI's network: cloud-init told to leave it alone, the NIC renamed by its MAC
    (by a persistent-net udev rule and ifupdown, or by netplan where the tree has it)."""
    files = [tree / NET_CONFIG_OFF, tree / PERSISTENT_NET, tree / PINNED_STANZA]
    for path in (*files, tree / PINNED_NETPLAN):
        path.unlink(missing_ok=True)
    if variant not in MAC_PINNED:
        return
    off, rule, stanza = files
    off.write_text(
        "# the AMI's network is configured below, not by cloud-init\nnetwork: {config: disabled}\n"
    )
    if variant in NETPLAN:
        netplan = tree / PINNED_NETPLAN
        # What cloud-init renders for EC2's fallback NIC (its netplan renderer), kept when the
        # image was baked; netplan wants it unreadable to others.
        netplan.write_text(
            "# This file is generated from information provided by the datasource.  Changes\n"
            "# to it will not persist across an instance reboot.\n"
            "network:\n    ethernets:\n"
            f"        {EC2_NIC}:\n            dhcp4: true\n"
            f"            match:\n                macaddress: {EC2_MAC}\n"
            f"            set-name: {EC2_NIC}\n    version: 2\n"
        )
        netplan.chmod(0o600)
        return
    rule.parent.mkdir(parents=True, exist_ok=True)
    # As udev's persistent-net generator wrote it on the instance the AMI was made from.
    rule.write_text(
        "# This file was automatically generated by the /lib/udev/write_net_rules\n"
        "# program, run by the persistent-net-generator.rules rules file.\n#\n"
        "# PCI device 0x1d0f:0xec20 (ena)\n"
        f'SUBSYSTEM=="net", ACTION=="add", DRIVERS=="?*", ATTR{{address}}=="{EC2_MAC}", '
        f'ATTR{{dev_id}}=="0x0", ATTR{{type}}=="1", KERNEL=="eth*", NAME="{EC2_NIC}"\n'
    )
    stanza.write_text(f"auto {EC2_NIC}\niface {EC2_NIC} inet dhcp\n")


def _configure_data_volume(tree: Path, variant: str) -> None:
    """fstab mounts the second EBS volume by the name Nitro gives it, without nofail."""
    mount = tree / DATA_MOUNT.lstrip("/")
    if variant not in DATA_VOLUME:
        if mount.is_dir():
            mount.rmdir()
        return
    mount.mkdir(exist_ok=True)
    with (tree / "etc/fstab").open("a") as fstab:
        fstab.write(f"{DATA_DEVICE} {DATA_MOUNT} ext4 defaults 0 2\n")


def _configure_initramfs(tree: Path, variant: str, work: Path) -> None:
    """The stock initramfs (MODULES=most) everywhere but the host-only variant, whose one is
    regenerated by the guest's own update-initramfs with only ``HOST_ONLY_MODULES`` listed."""
    _, initrd = _kernel_files(tree)
    stock = work / "stock"
    originals = [tree / INITRAMFS_MODULES, tree / initrd.lstrip("/")]
    for path in originals:  # kept once, from the tree as mmdebstrap left it
        kept = stock / path.relative_to(tree)
        if not kept.exists():
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, kept)
        shutil.copy2(kept, path)
    (tree / HOST_ONLY_CONF).unlink(missing_ok=True)
    if variant not in HOST_ONLY:
        return
    # gzip: the tree has no zstd binary, and initramfs-tools would fall back to gzip with a
    # warning anyway.
    (tree / HOST_ONLY_CONF).write_text(
        "# built on the instance for this instance type only (Nitro: NVMe disks, ENA NIC)\n"
        "MODULES=list\nCOMPRESS=gzip\n"
    )
    with originals[0].open("a") as modules:
        modules.write("".join(f"{name}\n" for name in HOST_ONLY_MODULES))
    version = initrd.removeprefix("/boot/initrd.img-")
    mounts = (
        f'mount -t proc proc "$1/proc" && mount -t sysfs sysfs "$1/sys" && '
        f'mount --rbind /dev "$1/dev" && chroot "$1" update-initramfs -u -k {version}'
    )
    # A private mount namespace: the mounts end with it, whatever happens to the build.
    run("unshare", "--mount", "--propagation", "private", "sh", "-c", mounts, "sh", tree)


def make_data_disk(path: Path, data_uuid: str, variant: str, work: Path) -> None:
    """One ext4 filesystem on the whole disk (no partition table, as on most EBS data volumes)."""
    content = work / "data"
    shutil.rmtree(content, ignore_errors=True)
    content.mkdir()
    (content / DATA_FILE).write_text(f"imagekit {variant} data volume {data_uuid}\n")
    with path.open("wb") as disk:
        disk.truncate(DATA_SIZE)
    run("mkfs.ext4", "-q", "-F", "-U", data_uuid, "-b", "4096", "-d", content, path)


# --- the disk -----------------------------------------------------------------------------------


def make_disk(path: Path, tree: Path, root_uuid: str, work: Path, uefi: bool = False) -> None:
    if uefi:
        make_uefi_disk(path, tree, root_uuid, work)
        return
    with path.open("wb") as disk:
        disk.truncate(DISK_SIZE)
    layout = f"label: dos\nstart={PART_OFFSET // SECTOR}, type=83, bootable\n"
    run("sfdisk", "--quiet", path, stdin=layout.encode())
    blocks = (DISK_SIZE - PART_OFFSET) // 4096
    run(
        "mkfs.ext4", "-q", "-F", "-L", "root", "-U", root_uuid, "-b", "4096",
        "-E", f"offset={PART_OFFSET}", "-d", tree, path, str(blocks),
    )  # fmt: skip
    core = work / "core.img"
    run(
        "grub-mkimage", "-O", "i386-pc", "-o", core, "-p", "(hd0,msdos1)/boot/grub",
        *GRUB_MODULES,
    )  # fmt: skip
    image = core.read_bytes()
    if len(image) > PART_OFFSET - SECTOR:
        raise BuildError(f"GRUB's core image ({len(image)} bytes) does not fit before sector 2048")
    boot = (GRUB_DIR / "boot.img").read_bytes()
    with path.open("r+b") as disk:
        # boot.img's code only: the disk signature and partition table sfdisk wrote stay.
        disk.write(boot[:440])
        disk.seek(SECTOR)  # boot.img loads core.img from sector 1 unless told otherwise
        disk.write(image)


def make_uefi_disk(path: Path, tree: Path, root_uuid: str, work: Path) -> None:
    """GPT: an EFI system partition holding GRUB as \\EFI\\BOOT\\BOOTX64.EFI (the removable-media
    path every UEFI firmware tries), then the root. No BIOS boot code at all."""
    with path.open("wb") as disk:
        disk.truncate(DISK_SIZE)
    root_start = PART_OFFSET + ESP_SIZE
    root_size = DISK_SIZE - root_start - GPT_TAIL
    layout = (
        "label: gpt\n"
        f"start={PART_OFFSET // SECTOR}, size={ESP_SIZE // SECTOR}, type={ESP_TYPE}\n"
        f"start={root_start // SECTOR}, size={root_size // SECTOR}, type={LINUX_TYPE}\n"
    )
    run("sfdisk", "--quiet", path, stdin=layout.encode())
    run(
        # One sector a cluster: FAT32 wants 65525 clusters at least, and mkfs.vfat would size
        # clusters for the whole disk file, not the partition.
        "mkfs.vfat", "-F", "32", "-s", "1", "-n", "ESP", f"--offset={PART_OFFSET // SECTOR}", path,
        str(ESP_SIZE // 1024),
    )  # fmt: skip
    run(
        "mkfs.ext4", "-q", "-F", "-L", "root", "-U", root_uuid, "-b", "4096",
        "-E", f"offset={root_start}", "-d", tree, path, str(root_size // 4096),
    )  # fmt: skip
    efi = work / "BOOTX64.EFI"
    run("grub-mkimage", "-O", "x86_64-efi", "-o", efi, "-p", "/EFI/BOOT", *GRUB_EFI_MODULES)
    esp = f"{path}@@{PART_OFFSET}"
    run("mmd", "-i", esp, "::/EFI", "::/EFI/BOOT")
    run("mcopy", "-i", esp, efi, tree / "boot/grub/grub.cfg", "::/EFI/BOOT/")


def filesystem_uuid(variant: str, volume: str = "root") -> str:
    """Fixed per variant and volume, so tests and the guest stage can name them."""
    suffix = "" if volume == "root" else f"-{volume}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"imagekit-debian-{variant}{suffix}"))


def describe(variant: str) -> dict[str, Any]:
    """``<variant>.json``: the variant's disk files (root first, as the AMI maps them), their
    filesystems and the AMI's boot mode and architecture (EC2's ``BootMode`` values)."""
    doc: dict[str, Any] = {
        "variant": variant,
        "disks": [f"{variant}.raw"],
        "root_uuid": filesystem_uuid(variant),
        "boot_mode": "uefi" if variant in UEFI_ONLY else "legacy-bios",
        "architecture": "x86_64",
        "datasource_list": DATASOURCES[variant],
    }
    if variant in DATA_VOLUME:
        doc["disks"].append(f"{variant}.data.raw")
        doc["data"] = {
            "uuid": filesystem_uuid(variant, "data"),
            "fstab_device": DATA_DEVICE,
            "mount": DATA_MOUNT,
            "file": DATA_FILE,
        }
    if variant in MAC_PINNED:
        doc["pinned_mac"] = EC2_MAC
    if variant in HOST_ONLY:
        doc["initramfs_modules"] = list(HOST_ONLY_MODULES)
    return doc


def _outputs(out: Path, variant: str) -> list[Path]:
    return [out / name for name in describe(variant)["disks"]] + [out / f"{variant}.json"]


def build(out: Path, variants: list[str], force: bool = False) -> list[Path]:
    check_tools()
    out.mkdir(parents=True, exist_ok=True)
    by_packages: dict[tuple[str, ...], list[str]] = {}
    for variant in variants:
        by_packages.setdefault(packages_of(variant), []).append(variant)
    for packages, group in by_packages.items():
        _build_group(out, rootfs(out, packages), group, force)
    return [out / f"{v}.raw" for v in variants]


def _build_group(out: Path, tar: Path, variants: list[str], force: bool) -> None:
    """The variants made from one root tree, ``tar``, unpacked once for them all."""
    # The disks depend on the tree and on this builder (layouts, settings per variant).
    stamp = _stamp(str(tar.stat().st_mtime_ns), Path(__file__).read_text())
    wanted = []
    for variant in variants:
        stamp_file = out / f"{variant}.sha256"
        fresh = all(p.is_file() for p in _outputs(out, variant)) and stamp_file.is_file()
        if force or not fresh or stamp_file.read_text().strip() != stamp:
            wanted.append(variant)
    if not wanted:
        return
    with tempfile.TemporaryDirectory(prefix=".work-", dir=out) as tmp:
        work = Path(tmp)
        tree = work / "root"
        tree.mkdir()
        step(f"unpacking the root tree {tar.name}")
        run("tar", "-C", tree, "--numeric-owner", "-xpf", tar)
        for variant in wanted:
            _build_variant(out, tree, variant, work)
            # The stamp last: a build cut short leaves the variant stale, not half-fresh.
            (out / f"{variant}.sha256").write_text(stamp + "\n")


def _build_variant(out: Path, tree: Path, variant: str, work: Path) -> None:
    started = time.monotonic()
    doc = describe(variant)
    step(f"{variant}: writing {', '.join(doc['disks'])}")
    root_uuid = doc["root_uuid"]
    configure(tree, variant, root_uuid, work)
    if "data" in doc:
        partial = out / f".{variant}.data.raw.partial"
        make_data_disk(partial, doc["data"]["uuid"], variant, work)
        os.replace(partial, out / doc["disks"][1])
    partial = out / f".{variant}.raw.partial"
    make_disk(partial, tree, root_uuid, work, uefi=variant in UEFI_ONLY)
    os.replace(partial, out / f"{variant}.raw")
    sidecar = out / f".{variant}.json.partial"
    sidecar.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(sidecar, out / f"{variant}.json")
    step(f"{variant}: built in {time.monotonic() - started:.1f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/debian"))
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    parser.add_argument("variants", nargs="*", help=f"some of {', '.join(VARIANTS)} (default: all)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}: use {', '.join(VARIANTS)}")
    try:
        for disk in build(args.out, list(args.variants) or list(VARIANTS), args.force):
            step(f"built {disk}")
    except BuildError as exc:
        print(f"debian: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
