"""A Debian test guest seeded as an AMI through the EBS direct API: one snapshot per disk, in
the AMI's mapping order, with the boot mode its disk needs (small stand-in disks: the real ones
are ~900 MiB each, too much for a moto held in RAM in a fast test)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from testbed.debian.guests import debian_guest, seed_guest_ami
from testbed.seed_ami import BLOCK_SIZE, pattern_block, read_snapshot

pytestmark = pytest.mark.slow  # the AWS emulator


def _stand_ins(out: Path, variant: str) -> dict[Path, bytes]:
    written = {}
    for number, disk in enumerate(debian_guest(variant, out=out).disks):
        data = pattern_block(f"{variant}-{number}") + bytes(3 * BLOCK_SIZE) + b"end"
        disk.write_bytes(data)
        written[disk] = data
    return written


def test_a_guest_with_a_data_volume_becomes_a_two_volume_ami(
    ebs: Any, ec2: Any, tmp_path: Path
) -> None:
    written = _stand_ins(tmp_path, "ec2-nvme")
    guest = debian_guest("ec2-nvme", out=tmp_path)
    ami = seed_guest_ami(ebs, ec2, guest)
    [image] = ec2.describe_images(ImageIds=[ami.image_id])["Images"]
    assert (image["Name"], image["RootDeviceName"]) == ("debian-12-ec2-nvme", "/dev/xvda")
    assert (image["BootMode"], image["Architecture"]) == ("legacy-bios", "x86_64")
    devices = [m["DeviceName"] for m in image["BlockDeviceMappings"]]
    assert devices == ["/dev/xvda", "/dev/sdf"]
    for (_, snap), disk in zip(ami.volumes, guest.disks, strict=True):
        blocks = read_snapshot(ebs, snap.snapshot_id)
        assert sorted(blocks) == [0, 4]  # the zero blocks between stay unwritten
        assert blocks[0] == written[disk][:BLOCK_SIZE]
        assert blocks[4].rstrip(b"\0") == b"end"


def test_a_uefi_only_guest_is_registered_uefi(ebs: Any, ec2: Any, tmp_path: Path) -> None:
    _stand_ins(tmp_path, "ec2-uefi")
    ami = seed_guest_ami(ebs, ec2, debian_guest("ec2-uefi", out=tmp_path), name="uefi-1")
    [image] = ec2.describe_images(ImageIds=[ami.image_id])["Images"]
    assert image["BootMode"] == "uefi" and len(image["BlockDeviceMappings"]) == 1


def test_a_guest_not_built_is_refused_before_any_upload(ebs: Any, ec2: Any, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="make debian-images"):
        seed_guest_ami(ebs, ec2, debian_guest("ec2", out=tmp_path))
    assert ec2.describe_images(Owners=["self"])["Images"] == []
