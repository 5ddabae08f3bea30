"""The Debian test guests as tests see them: names, UUIDs and AMI metadata from the builder's
one description, every disk handed to a boot, and the built data volume as described."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from imagekit.providers.base import PreparedImage
from testbed.debian import build
from testbed.debian.guests import DEFAULT_OUT, GuestDisksSource, debian_guest


def test_a_guest_with_a_data_volume_has_two_disks_root_first(tmp_path: Path) -> None:
    guest = debian_guest("ec2-nvme", out=tmp_path)
    assert guest.disks == (tmp_path / "ec2-nvme.raw", tmp_path / "ec2-nvme.data.raw")
    assert guest.devices == ("/dev/xvda", "/dev/sdf")
    assert (guest.data_mount, guest.data_file) == ("/data", "imagekit-data.txt")
    assert guest.missing() == list(guest.disks)
    assert guest.data_uuid == build.filesystem_uuid("ec2-nvme", "data") != guest.root_uuid
    volumes = guest.metadata()["ami"]["volumes"]
    assert [v["device_name"] for v in volumes] == ["/dev/xvda", "/dev/sdf"]


def test_the_ami_metadata_says_uefi_only_for_the_uefi_only_disks() -> None:
    modes = {v: debian_guest(v).metadata()["ami"]["boot_mode"] for v in build.VARIANTS}
    assert {v for v, mode in modes.items() if mode == "uefi"} == {"gce-uefi", "ec2-uefi"}
    assert set(modes.values()) == {"uefi", "legacy-bios"}
    assert {debian_guest(v).architecture for v in build.VARIANTS} == {"x86_64"}
    # What the providers read of it: the firmware a file boot chooses.
    for variant, firmware in (("ec2-uefi", "uefi"), ("ec2", "bios")):
        prepared = PreparedImage(
            Path("d"), "raw", variant, "i", 1, metadata=debian_guest(variant).metadata()
        )
        assert prepared.boot_mode == firmware


def test_root_uuids_are_fixed_and_distinct_per_variant() -> None:
    uuids = [debian_guest(v).root_uuid for v in build.VARIANTS]
    assert len(set(uuids)) == len(uuids)
    assert debian_guest("ec2").root_uuid == build.filesystem_uuid("ec2")
    with pytest.raises(ValueError, match="unknown Debian variant"):
        debian_guest("ec2-arm64")


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img (make setup) missing")
def test_every_disk_of_a_guest_reaches_the_boot(tmp_path: Path) -> None:
    out = tmp_path / "debian"
    out.mkdir()
    guest = debian_guest("ec2-nvme", out=out)
    for disk, size in zip(guest.disks, (4 << 20, 1 << 20), strict=True):
        with disk.open("wb") as f:
            f.truncate(size)
    folder = tmp_path / "run"
    folder.mkdir()
    prepared = GuestDisksSource(guest).materialise(folder, "qcow2")
    assert prepared.path == folder / "disk.qcow2"
    assert prepared.extra_disks == (folder / "disk1.qcow2",)
    assert all(p.is_file() for p in (prepared.path, *prepared.extra_disks))
    assert prepared.boot_mode == "bios" and prepared.name == "ec2-nvme"


@pytest.mark.slow
def test_the_built_data_volume_is_the_described_filesystem() -> None:
    # The guest stage's tests rely on this UUID to check fstab is rewritten to it.
    guest = debian_guest("ec2-nvme")
    if guest.missing():
        pytest.fail(f"{guest.missing()[0]} is missing: run `make debian-images`")
    assert guest.data is not None and guest.root.parent == DEFAULT_OUT
    probe = subprocess.run(
        ["blkid", "-p", "-o", "export", str(guest.data)], capture_output=True, text=True, check=True
    )
    fields = dict(line.split("=", 1) for line in probe.stdout.splitlines() if "=" in line)
    assert (fields["TYPE"], fields["UUID"]) == ("ext4", guest.data_uuid)
    assert "LABEL" not in fields  # fstab cannot have used a label: only the NVMe name
    listing = subprocess.run(
        ["debugfs", "-R", f"cat /{guest.data_file}", str(guest.data)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert listing.stdout == f"imagekit ec2-nvme data volume {guest.data_uuid}\n"
