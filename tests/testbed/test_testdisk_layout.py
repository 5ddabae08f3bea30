"""The built test disk's layout, read without booting it: MBR, partition, bootloader files."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from testbed.testdisk import build


def test_mbr_has_boot_code_and_one_active_fat_partition(test_disk: Path) -> None:
    mbr = test_disk.read_bytes()[:512]
    assert mbr[510:] == b"\x55\xaa"
    assert mbr[: build.MBR_CODE] == build.MBR_BIN.read_bytes()[: build.MBR_CODE]
    entry = mbr[446:462]
    assert entry[0] == 0x80  # active: mbr.bin boots this one
    assert entry[4] == build.PART_TYPE
    assert int.from_bytes(entry[8:12], "little") == build.PART_OFFSET // build.SECTOR
    assert mbr[462:510] == bytes(48)  # no other partitions
    assert test_disk.stat().st_size == build.DISK_SIZE


@pytest.mark.skipif(shutil.which("mcopy") is None, reason="needs mtools")
def test_fat_holds_syslinux_kernel_and_an_initramfs_with_init(test_disk: Path) -> None:
    image = f"{test_disk}@@{build.PART_OFFSET}"
    listing = subprocess.run(
        ["mdir", "-a", "-b", "-i", image, "::"], capture_output=True, text=True, check=True
    ).stdout.lower()
    for name in ("ldlinux.sys", "ldlinux.c32", "syslinux.cfg", "vmlinuz", "initrd.img"):
        assert f"::/{name}" in listing
    with tempfile.TemporaryDirectory() as tmp:
        initrd = Path(tmp) / "initrd.img"
        subprocess.run(["mcopy", "-i", image, "::initrd.img", str(initrd)], check=True)
        cpio = gzip.decompress(initrd.read_bytes())
    for member in (b"init\0", b"etc/imagekit/boot.sh\0", b"usr/sbin/dropbear\0"):
        assert member in cpio
    assert b"lib/modules/virtio_net.ko\0" in cpio
