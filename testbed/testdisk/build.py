"""Build the bootable test disk: ``python testbed/testdisk/build.py --out build/test-disk``.

The disk (``disk.raw``, 64 MiB) is an MBR disk with one FAT partition holding syslinux, a Debian
cloud kernel and a busybox initramfs; README.md describes what the guest does. It is made from
Debian packages without root-only steps: no loop devices, no mounts, no mknod — sfdisk, mkfs.vfat
and syslinux work on the image file at an offset, mtools copies the files in, and the initramfs
is a cpio archive written here.

A stamp of the inputs (these sources, the Debian package versions, the kernel) sits beside the
disk; when it matches, nothing is rebuilt. Outputs are written under temporary names and renamed.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from testbed.testdisk import kmod
from testbed.testdisk.newc import Entry, archive

HERE = Path(__file__).resolve().parent
DISK_NAME = "disk.raw"
STAMP_NAME = "inputs.sha256"
MIB = 1024 * 1024
DISK_SIZE = (
    64 * MIB
)  # kernel (~14 MiB) + initramfs (~4 MiB) with room to spare, still quick to copy
PART_OFFSET = 1 * MIB  # first partition at sector 2048, the alignment every modern tool uses
SECTOR = 512
FILE_TIME = 946684800  # 2000-01-01: a fixed file time for FAT entries (FAT starts at 1980)
FAT_DATE = (2000 - 1980) << 9 | 1 << 5 | 1  # the same day in FAT's packed date format
PART_TYPE = 0x0E  # "W95 FAT16 (LBA)": the partition holds the FAT16 that mkfs.vfat -F 16 makes
MBR_CODE = 440  # boot code area of the MBR; the disk signature and partition table follow it
MBR_BIN = Path("/usr/lib/syslinux/mbr/mbr.bin")
BUSYBOX = Path("/bin/busybox")  # from busybox-static: no libraries to copy
DROPBEAR = (Path("/usr/sbin/dropbear"), Path("/usr/bin/dropbearconvert"))
KERNEL_META = "linux-image-cloud-amd64"  # the cloud flavour boots ~2 s faster under TCG
# Loaded in the guest, with their dependencies: disk and NIC (virtio-pci), the seed CD drive
# (PIIX IDE on QEMU's default machine, ATAPI via SCSI) and its filesystem, and virtio-rng: without
# a hardware RNG the kernel's random pool takes ~1 s of jitter to seed under TCG, and dropbear
# waits for it.
MODULES = ("virtio_pci", "virtio_blk", "virtio_net", "virtio_rng", "ata_piix", "sr_mod", "isofs")
# quiet: the kernel's own log costs boot time on an emulated UART; panic=-1 reboots at once,
# which with QEMU's -no-reboot ends the VM, so a broken guest fails fast instead of hanging.
KERNEL_ARGS = "console=ttyS0,115200 panic=-1 quiet"
PACKAGES = ("busybox-static", "dropbear-bin", "syslinux", "syslinux-common", "libc6")
TOOLS = ("sfdisk", "mkfs.vfat", "mcopy", "syslinux", "apt-get", "dpkg-deb", "dpkg-query", "ldd")
APT_PACKAGES = "fdisk dosfstools mtools syslinux syslinux-common busybox-static dropbear-bin"

SYSLINUX_CFG = f"""\
SERIAL 0 115200
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  KERNEL vmlinuz
  INITRD initrd.img
  APPEND {KERNEL_ARGS}
"""

GUEST_FILES = {  # initramfs path -> (source in this folder, permissions)
    "init": ("guest-init.sh", 0o755),
    "etc/inittab": ("guest-inittab", 0o644),
    "etc/imagekit/boot.sh": ("guest-boot.sh", 0o755),
    "etc/imagekit/udhcpc.sh": ("guest-udhcpc.sh", 0o755),
    "etc/imagekit/cloud-config.awk": ("guest-cloud-config.awk", 0o644),
}

ETC_FILES = {
    # "*": no password can match; dropbear runs with -s (keys only) anyway.
    "etc/passwd": "root:*:0:0:root:/root:/bin/sh\n",
    "etc/group": "root:x:0:\n",
    "etc/shells": "/bin/sh\n",
    "etc/hostname": "imagekit-testdisk\n",
}


class BuildError(Exception):
    """A step failed; the message is the one line printed before exiting."""


def step(message: str) -> None:
    print(f"test-disk: {message}", flush=True)


def run(*argv: str | Path, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(
            [str(arg) for arg in argv], cwd=cwd, capture_output=True, text=True, check=False
        )
    except FileNotFoundError as exc:
        raise BuildError(f"{argv[0]} not found: apt-get install {APT_PACKAGES}") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise BuildError(f"{argv[0]} failed: {detail[-1] if detail else done.returncode}")
    return done.stdout


def check_tools() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    missing += [str(p) for p in (MBR_BIN, BUSYBOX, *DROPBEAR) if not p.exists()]
    if missing:
        raise BuildError(f"missing {', '.join(missing)}: apt-get install {APT_PACKAGES}")


# --- the kernel ---------------------------------------------------------------------------------


def fetch_kernel(cache: Path) -> Path:
    """The unpacked kernel package (``boot/vmlinuz-*``, ``lib/modules/*``), downloaded once."""
    unpacked = sorted(cache.glob("linux-image-*/boot/vmlinuz-*"))
    if unpacked:
        return unpacked[-1].parent.parent
    step(f"downloading {KERNEL_META} (apt-get download)")
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    try:
        run("apt-get", "download", KERNEL_META, cwd=debs)
    except BuildError as exc:
        raise BuildError(f"{exc} (is the package list current? run apt-get update)") from exc
    meta = max(debs.glob(f"{KERNEL_META}_*.deb"))
    # The metapackage only depends on the versioned image package, which holds the files.
    depends = run("dpkg-deb", "-f", meta, "Depends")
    match = re.search(r"(linux-image-\d[^\s,(]*)", depends)
    if match is None:
        raise BuildError(f"{meta.name} names no linux-image package in Depends: {depends.strip()}")
    run("apt-get", "download", match.group(1), cwd=debs)
    deb = max(debs.glob(f"{match.group(1)}_*.deb"))
    target = cache / deb.name.removesuffix(".deb")
    partial = Path(tempfile.mkdtemp(prefix=".unpack-", dir=cache))
    step(f"unpacking {deb.name}")
    run("dpkg-deb", "-x", deb, partial)
    partial.rename(target)
    return target


def kernel_modules(kernel: Path) -> list[Entry]:
    """The wanted modules, decompressed, plus ``lib/modules/load-order`` for guest-init.sh."""
    (moddir,) = (kernel / "lib" / "modules").iterdir()
    files: dict[str, Path] = {}
    deps: dict[str, tuple[str, ...]] = {}
    plain: dict[str, bytes] = {}
    for path in sorted(moddir.rglob("*.ko*")):
        if path.name.endswith(kmod.SUFFIXES):
            name = kmod.module_name(path)
            files[name] = path
            elf = kmod.decompress(path.name, path.read_bytes())
            deps[name] = kmod.depends(kmod.modinfo(elf))
            plain[name] = elf
    builtin_file = moddir / "modules.builtin"
    builtin = builtin_file.read_text().split() if builtin_file.exists() else []
    try:
        order = kmod.load_order(MODULES, deps, builtin)
    except ValueError as exc:
        raise BuildError(f"kernel {moddir.name}: {exc}") from exc
    entries = [Entry.file(f"lib/modules/{name}.ko", plain[name]) for name in order]
    entries.append(Entry.file("lib/modules/load-order", "".join(f"{n}\n" for n in order).encode()))
    return entries


# --- the initramfs ------------------------------------------------------------------------------


def shared_libraries(binary: Path) -> list[Path]:
    """The libraries ``ldd`` resolves for a binary, including the dynamic loader."""
    libs = []
    for line in run("ldd", binary).splitlines():
        found = re.search(r"(/\S+)", line.split("=>")[-1])
        if found:
            libs.append(Path(found.group(1)))
    return libs


def with_parents(entries: list[Entry]) -> list[Entry]:
    """Add directory entries for every parent not listed, ahead of its children."""
    dirs = {e.path for e in entries if e.mode & 0o170000 == 0o040000}
    out: list[Entry] = []
    for entry in entries:
        parts = entry.path.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            parent = "/".join(parts[:depth])
            if parent not in dirs:
                dirs.add(parent)
                out.append(Entry.directory(parent))
        out.append(entry)
    return out


def initramfs(kernel: Path) -> bytes:
    entries = [Entry.directory(d) for d in ("dev", "proc", "sys", "run", "tmp", "root", "mnt")]
    # The kernel opens /dev/console for /init before anything can mount devtmpfs.
    entries += [Entry.chardev("dev/console", 5, 1), Entry.chardev("dev/null", 1, 3, 0o666)]
    entries.append(Entry.file("bin/busybox", BUSYBOX.read_bytes(), 0o755))
    for applet in run(BUSYBOX, "--list-full").split():
        if applet not in ("bin/busybox", "init"):
            entries.append(Entry.symlink(applet, "/bin/busybox"))
    libs: set[Path] = set()
    for binary in DROPBEAR:
        entries.append(Entry.file(str(binary).lstrip("/"), binary.read_bytes(), 0o755))
        libs.update(shared_libraries(binary))
    for lib in sorted(libs):
        # Copy the resolved file under the name the loader looks up (often a symlink on the host).
        entries.append(Entry.file(str(lib).lstrip("/"), lib.resolve().read_bytes(), 0o755))
    for path, text in ETC_FILES.items():
        entries.append(Entry.file(path, text.encode()))
    for path, (source, perm) in GUEST_FILES.items():
        entries.append(Entry.file(path, (HERE / source).read_bytes(), perm))
    entries += kernel_modules(kernel)
    # mtime=0 keeps the gzip header, and so the disk, the same for the same inputs.
    return gzip.compress(archive(with_parents(entries)), compresslevel=6, mtime=0)


# --- the disk -----------------------------------------------------------------------------------


def make_disk(path: Path, kernel_image: Path, initrd: Path, work: Path) -> None:
    offset = PART_OFFSET // SECTOR
    with path.open("wb") as disk:
        disk.truncate(DISK_SIZE)
    # label-id fixed so the disk signature is reproducible; "*" marks the partition active for
    # mbr.bin, which boots the active partition.
    layout = f"label: dos\nlabel-id: 0x1a6e4b17\n{offset},,{PART_TYPE:x},*\n"
    done = subprocess.run(
        ["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", str(path)],
        input=layout,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BuildError(f"sfdisk failed: {done.stderr.strip()}")
    blocks = (DISK_SIZE - PART_OFFSET) // 1024
    run(
        "mkfs.vfat",
        *("-F", "16", "--invariant", "-n", "IMAGEKIT", "--offset", str(offset)),
        *(path, str(blocks)),
    )
    cfg = work / "syslinux.cfg"
    cfg.write_text(SYSLINUX_CFG)
    image = f"{path}@@{PART_OFFSET}"
    for source in (cfg, kernel_image, initrd):
        os.utime(source, (FILE_TIME, FILE_TIME))  # mcopy -m keeps it: same inputs, same bytes
    run("mcopy", "-i", image, "-m", cfg, "::syslinux.cfg")
    run("mcopy", "-i", image, "-m", kernel_image, "::vmlinuz")
    run("mcopy", "-i", image, "-m", initrd, "::initrd.img")
    run("syslinux", "--install", "--offset", str(PART_OFFSET), path)
    fix_root_dir_times(path, PART_OFFSET)
    with path.open("r+b") as disk:
        disk.write(MBR_BIN.read_bytes()[:MBR_CODE])


def fix_root_dir_times(path: Path, offset: int) -> None:
    """Give every root-directory entry of the FAT16 at ``offset`` the fixed FILE_TIME.

    syslinux stamps ldlinux.* with the current time; fixing it makes the disk byte-for-byte the
    same for the same inputs.
    """
    with path.open("r+b") as disk:
        disk.seek(offset)
        boot = disk.read(SECTOR)
        sector_size, _, reserved, fats, root_entries, _, _, fat_sectors = struct.unpack_from(
            "<HBHBHHBH", boot, 11
        )
        root = offset + (reserved + fats * fat_sectors) * sector_size
        disk.seek(root)
        table = bytearray(disk.read(root_entries * 32))
        for at in range(0, len(table), 32):
            first, attr = table[at], table[at + 11]
            if first == 0:
                break  # end of directory
            if first == 0xE5 or attr == 0x0F:  # deleted entry, long-name slot
                continue
            # creation (tenths, time, date), access date, modification (time, date)
            struct.pack_into("<BHHH", table, at + 13, 0, 0, FAT_DATE, FAT_DATE)
            struct.pack_into("<HH", table, at + 22, 0, FAT_DATE)
        disk.seek(root)
        disk.write(table)


# --- orchestration ------------------------------------------------------------------------------


def input_stamp(kernel: Path) -> str:
    digest = hashlib.sha256()
    for source in sorted(HERE.glob("*")):
        if source.is_file() and source.suffix != ".md" and not source.name.startswith("."):
            digest.update(source.name.encode() + b"\0" + source.read_bytes())
    versions = run("dpkg-query", "-W", "-f", "${Package}=${Version}\\n", *PACKAGES)
    digest.update(versions.encode())
    digest.update(kernel.name.encode())
    return digest.hexdigest()


def build(out: Path, cache: Path, force: bool = False) -> Path:
    check_tools()
    out.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    kernel = fetch_kernel(cache)
    disk = out / DISK_NAME
    stamp_file = out / STAMP_NAME
    stamp = input_stamp(kernel)
    if not force and disk.exists() and stamp_file.exists() and stamp_file.read_text() == stamp:
        step(f"{disk} is up to date")
        return disk
    with tempfile.TemporaryDirectory(prefix=".build-", dir=out) as tmp:
        work = Path(tmp)
        step(f"kernel {kernel.name}")
        initrd = work / "initrd.img"
        initrd.write_bytes(initramfs(kernel))
        step(f"initramfs {initrd.stat().st_size // 1024} KiB")
        (vmlinuz,) = (kernel / "boot").glob("vmlinuz-*")
        partial = work / DISK_NAME
        make_disk(partial, vmlinuz, initrd, work)
        step(f"disk {DISK_SIZE // MIB} MiB: MBR, FAT, syslinux")
        stamp_file.unlink(missing_ok=True)
        os.replace(partial, disk)
        stamp_file.write_text(stamp)
    step(f"built {disk}")
    return disk


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True, help="output folder for disk.raw")
    parser.add_argument(
        "--cache", type=Path, help="download/unpack folder for the kernel (default: OUT/../cache)"
    )
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = parser.parse_args(argv)
    cache = args.cache or args.out.parent / "cache" / "test-disk"
    try:
        build(args.out, cache, force=args.force)
    except BuildError as exc:
        print(f"test-disk: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
