"""RegisterImage keeps the mapping the caller gave, and AMIs seeded from disk images read back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from testbed.seed_ami import (
    BLOCK_SIZE,
    VolumeSpec,
    pattern_block,
    read_snapshot,
    seed_ami,
    seed_next_ami,
    upload_snapshot,
)

pytestmark = pytest.mark.slow

ROOT = pattern_block("mbr") + bytes(4 * BLOCK_SIZE) + pattern_block("fs") + b"tail"  # partial block
DATA = bytes(8 * BLOCK_SIZE) + pattern_block("data")


def test_multi_volume_ami_round_trip(ebs: Any, ec2: Any) -> None:
    ami = seed_ami(
        ebs,
        ec2,
        "web-2024-01-01",
        [
            VolumeSpec("/dev/xvda", ROOT),
            VolumeSpec("/dev/xvdb", DATA, volume_size_gib=2, volume_type="st1"),
        ],
        tags={"dr": "true", "role": "web"},
        boot_mode="uefi",
    )
    [image] = ec2.describe_images(ImageIds=[ami.image_id])["Images"]
    assert image["RootDeviceName"] == "/dev/xvda"
    assert image["RootDeviceType"] == "ebs"
    assert (image["Architecture"], image["BootMode"], image["EnaSupport"]) == (
        "x86_64",
        "uefi",
        True,
    )
    assert image["VirtualizationType"] == "hvm"
    assert {t["Key"]: t["Value"] for t in image["Tags"]} == {"dr": "true", "role": "web"}
    mappings = [
        (m["DeviceName"], m["Ebs"]["SnapshotId"], m["Ebs"]["VolumeSize"], m["Ebs"]["VolumeType"])
        for m in image["BlockDeviceMappings"]
    ]
    assert mappings == [
        ("/dev/xvda", ami.snapshot_ids[0], 1, "gp3"),
        ("/dev/xvdb", ami.snapshot_ids[1], 2, "st1"),
    ]
    # Sparse: zero blocks were never written, and the data reads back identical.
    assert read_snapshot(ebs, ami.snapshot_ids[0]) == {
        0: pattern_block("mbr"),
        5: pattern_block("fs"),
        6: b"tail".ljust(BLOCK_SIZE, b"\0"),
    }
    assert read_snapshot(ebs, ami.snapshot_ids[1]) == {8: pattern_block("data")}
    # Filters on tags work, as the exporter's --filter relies on them.
    found = ec2.describe_images(Owners=["self"], Filters=[{"Name": "tag:dr", "Values": ["true"]}])
    assert [i["ImageId"] for i in found["Images"]] == [ami.image_id]


def test_day_two_ami_shares_the_lineage(ebs: Any, ec2: Any) -> None:
    day1 = seed_ami(ebs, ec2, "db-1", [VolumeSpec("/dev/sda1", ROOT), VolumeSpec("/dev/sdf", DATA)])
    day2 = seed_next_ami(ebs, ec2, day1, "db-2", {"/dev/sdf": {3: pattern_block("new")}})
    [root_changes, data_changes] = [
        ebs.list_changed_blocks(FirstSnapshotId=old, SecondSnapshotId=new)["ChangedBlocks"]
        for old, new in zip(day1.snapshot_ids, day2.snapshot_ids, strict=True)
    ]
    assert root_changes == []
    assert [b["BlockIndex"] for b in data_changes] == [3]
    assert read_snapshot(ebs, day2.snapshot_ids[1]) == {
        3: pattern_block("new"),
        8: pattern_block("data"),
    }


def test_register_image_refuses_unknown_snapshot_and_duplicate_name(ebs: Any, ec2: Any) -> None:
    mapping: list[dict[str, Any]] = [
        {"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": "snap-0123456789abcdef0"}}
    ]
    with pytest.raises(ClientError) as excinfo:
        ec2.register_image(Name="app-x", RootDeviceName="/dev/xvda", BlockDeviceMappings=mapping)
    assert excinfo.value.response["Error"]["Code"] == "InvalidSnapshot.NotFound"
    snap = upload_snapshot(ebs, pattern_block("a"))
    mapping[0]["Ebs"]["SnapshotId"] = snap.snapshot_id
    ec2.register_image(Name="app-x", RootDeviceName="/dev/xvda", BlockDeviceMappings=mapping)
    with pytest.raises(ClientError) as excinfo:
        ec2.register_image(Name="app-x", RootDeviceName="/dev/xvda", BlockDeviceMappings=mapping)
    assert excinfo.value.response["Error"]["Code"] == "InvalidAMIName.Duplicate"


def test_no_default_amis(ec2: Any) -> None:
    assert ec2.describe_images(Owners=["amazon"])["Images"] == []


def test_seed_from_a_sparse_image_file(tmp_path: Path, ebs: Any, ec2: Any) -> None:
    disk = tmp_path / "disk.raw"
    with disk.open("wb") as f:
        f.truncate(3 * BLOCK_SIZE + 100)  # a sparse file: zeros cost nothing
        f.seek(2 * BLOCK_SIZE + 7)
        f.write(b"boot")
    ami = seed_ami(ebs, ec2, "file-ami", [VolumeSpec("/dev/xvda", disk)])
    assert read_snapshot(ebs, ami.snapshot_ids[0]) == {
        2: (bytes(7) + b"boot").ljust(BLOCK_SIZE, b"\0")
    }
