"""Parsing EC2's description of an AMI into what a target cloud needs (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from imagekit.errors import ExportError, InputError
from imagekit.export.ami import parse_image, select_latest_per_name
from imagekit.export.iam import export_policy


def image(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "ImageId": "ami-0123",
        "Name": "web-2026-11-25",
        "State": "available",
        "Architecture": "x86_64",
        "BootMode": "uefi-preferred",
        "VirtualizationType": "hvm",
        "EnaSupport": True,
        "RootDeviceType": "ebs",
        "RootDeviceName": "/dev/xvda",
        "PlatformDetails": "Linux/UNIX",
        "UsageOperation": "RunInstances",
        "CreationDate": "2026-11-25T01:00:00.000Z",
        "Tags": [{"Key": "dr", "Value": "true"}],
        "BlockDeviceMappings": [
            {
                "DeviceName": "/dev/xvda",
                "Ebs": {
                    "SnapshotId": "snap-root",
                    "VolumeSize": 8,
                    "VolumeType": "gp3",
                    "DeleteOnTermination": True,
                },
            },
            {"DeviceName": "/dev/sdb", "VirtualName": "ephemeral0"},
            {"DeviceName": "/dev/xvdf", "Ebs": {"SnapshotId": "snap-data", "VolumeSize": 20}},
        ],
    }
    base.update(overrides)
    return base


SNAPS = {
    "snap-root": {"State": "completed", "VolumeSize": 8},
    "snap-data": {"State": "completed", "VolumeSize": 20, "Encrypted": True, "KmsKeyId": "arn:k"},
}


def test_volumes_in_mapping_order_without_ephemerals() -> None:
    spec = parse_image(image(), "eu-west-1", SNAPS)
    assert [(v.device_name, v.snapshot_id, v.size_gib) for v in spec.volumes] == [
        ("/dev/xvda", "snap-root", 8),
        ("/dev/xvdf", "snap-data", 20),
    ]
    assert spec.volumes[1].encrypted and spec.volumes[1].kms_key_id == "arn:k"
    meta = spec.as_metadata()
    assert meta["boot_mode"] == "uefi-preferred" and meta["ena_support"] is True
    assert meta["tags"] == {"dr": "true"} and meta["region"] == "eu-west-1"
    assert meta["licence_warning"] is None


def test_licence_bound_amis_are_flagged() -> None:
    windows = parse_image(image(PlatformDetails="Windows"), "r", SNAPS)
    assert windows.licence_warning and "Windows" in windows.licence_warning
    market = parse_image(image(ProductCodes=[{"ProductCodeId": "abc123"}]), "r", SNAPS)
    assert market.licence_warning and "abc123" in market.licence_warning


def test_instance_store_ami_is_refused() -> None:
    with pytest.raises(InputError, match="instance-store"):
        parse_image(image(RootDeviceType="instance-store"), "r", SNAPS)


@pytest.mark.parametrize(
    ("state", "words"), [("error", "error state"), ("pending", "not completed")]
)
def test_unfinished_snapshots_are_refused(state: str, words: str) -> None:
    snaps = dict(SNAPS, **{"snap-data": {"State": state}})
    with pytest.raises(ExportError, match=words):
        parse_image(image(), "r", snaps)


def test_latest_per_name() -> None:
    images = [
        {"ImageId": "a", "Name": "web", "CreationDate": "2026-11-01"},
        {"ImageId": "b", "Name": "web", "CreationDate": "2026-11-03"},
        {"ImageId": "c", "Name": "db", "CreationDate": "2026-10-01"},
    ]
    assert [i["ImageId"] for i in select_latest_per_name(images)] == ["c", "b"]


def test_iam_policy_is_read_only_and_kms_optional() -> None:
    policy = export_policy()
    actions = [a for s in policy["Statement"] for a in s["Action"]]
    assert sorted(actions) == sorted(
        [
            "ec2:DescribeImages",
            "ec2:DescribeSnapshots",
            "ebs:ListSnapshotBlocks",
            "ebs:ListChangedBlocks",
            "ebs:GetSnapshotBlock",
        ]
    )
    with_kms = export_policy(["arn:aws:kms:eu-west-1:1:key/k"])
    assert with_kms["Statement"][-1] == {
        "Sid": "DecryptEncryptedSnapshots",
        "Effect": "Allow",
        "Action": ["kms:Decrypt"],
        "Resource": ["arn:aws:kms:eu-west-1:1:key/k"],
    }
