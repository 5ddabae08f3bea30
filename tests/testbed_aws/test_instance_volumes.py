"""The emulator's instances: volumes that hold data, snapshots of them, CreateSnapshots."""

from __future__ import annotations

from typing import Any

import botocore.exceptions
import pytest

from testbed.moto_aws import MotoAWS
from testbed.moto_patches.ebs_model import EbsState
from testbed.seed_ami import VolumeSpec, checksum, pattern_block, seed_ami
from testbed.seed_instance import DataVolume, SeededInstance, launch_instance


def _instance(aws: MotoAWS, ec2: Any, ebs: Any) -> tuple[Any, SeededInstance]:
    root = pattern_block("root-0") + pattern_block("root-1")
    ami = seed_ami(ebs, ec2, "db-image", [VolumeSpec("/dev/xvda", root)])
    return ami, launch_instance(ec2, ami, data_volumes=[DataVolume("/dev/sdf")])


def _completed(ec2: Any, ids: list[str]) -> list[dict[str, Any]]:
    for _ in range(10):
        snaps = ec2.describe_snapshots(SnapshotIds=ids)["Snapshots"]
        if all(s["State"] == "completed" for s in snaps):
            return list(snaps)
    raise AssertionError("snapshots never completed")


def test_volume_from_snapshot_holds_its_blocks(aws: MotoAWS, ec2: Any, ebs: Any) -> None:
    _, inst = _instance(aws, ec2, ebs)
    held = aws.volume_blocks(inst.root_volume)
    assert held == {0: checksum(pattern_block("root-0")), 1: checksum(pattern_block("root-1"))}
    assert aws.volume_blocks(inst.volumes["/dev/sdf"]) == {}


def test_create_snapshots_freezes_every_volume_pending_then_completed(
    aws: MotoAWS, ec2: Any, ebs: Any
) -> None:
    ami, inst = _instance(aws, ec2, ebs)
    data = inst.volumes["/dev/sdf"]
    aws.write_volume(data, {3: pattern_block("d3")})
    answer = ec2.create_snapshots(
        InstanceSpecification={"InstanceId": inst.instance_id},
        TagSpecifications=[{"ResourceType": "snapshot", "Tags": [{"Key": "k", "Value": "v"}]}],
    )["Snapshots"]
    assert {s["VolumeId"] for s in answer} == set(inst.volumes.values())
    assert {s["State"] for s in answer} == {"pending"}
    aws.write_volume(data, {4: pattern_block("after")})  # after the point in time: not in it
    ids = [s["SnapshotId"] for s in answer]
    first = ec2.describe_snapshots(SnapshotIds=ids)["Snapshots"]
    assert {s["Progress"] for s in first} == {"33%"}
    done = _completed(ec2, ids)
    assert {s["Progress"] for s in done} == {"100%"}
    by_volume = {s["VolumeId"]: s["SnapshotId"] for s in done}
    blocks = ebs.list_snapshot_blocks(SnapshotId=by_volume[data])["Blocks"]
    assert [b["BlockIndex"] for b in blocks] == [3]
    # The root volume's snapshot is in the AMI's lineage: nothing changed since.
    changed = ebs.list_changed_blocks(
        FirstSnapshotId=ami.snapshot_ids[0], SecondSnapshotId=by_volume[inst.root_volume]
    )["ChangedBlocks"]
    assert changed == []


def test_changed_blocks_between_two_snapshots_of_a_volume(aws: MotoAWS, ec2: Any, ebs: Any) -> None:
    aws.set_snapshot_polls(0)
    _, inst = _instance(aws, ec2, ebs)
    data = inst.volumes["/dev/sdf"]
    aws.write_volume(data, {i: pattern_block(f"a{i}") for i in range(6)})
    first = ec2.create_snapshot(VolumeId=data)["SnapshotId"]
    aws.write_volume(data, {2: pattern_block("b2"), 5: None, 9: pattern_block("b9")})
    spec = {"InstanceId": inst.instance_id, "ExcludeBootVolume": True}
    second = ec2.create_snapshots(InstanceSpecification=spec)["Snapshots"]
    assert [s["VolumeId"] for s in second] == [data]
    changed = ebs.list_changed_blocks(
        FirstSnapshotId=first, SecondSnapshotId=second[0]["SnapshotId"]
    )["ChangedBlocks"]
    assert [c["BlockIndex"] for c in changed] == [2, 5, 9]
    assert "SecondBlockToken" not in changed[1]  # block 5 was discarded: reads as zeros


def test_deleted_snapshot_is_gone_for_the_ebs_direct_apis(aws: MotoAWS, ec2: Any, ebs: Any) -> None:
    aws.set_snapshot_polls(0)
    _, inst = _instance(aws, ec2, ebs)
    data = inst.volumes["/dev/sdf"]
    old = ec2.create_snapshot(VolumeId=data)["SnapshotId"]
    new = ec2.create_snapshot(VolumeId=data)["SnapshotId"]
    ec2.delete_snapshot(SnapshotId=old)
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        ebs.list_changed_blocks(FirstSnapshotId=old, SecondSnapshotId=new)
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_instance_shows_its_amis_boot_attributes(aws: MotoAWS, ec2: Any, ebs: Any) -> None:
    _, inst = _instance(aws, ec2, ebs)
    found = ec2.describe_instances(InstanceIds=[inst.instance_id])["Reservations"][0]
    described = found["Instances"][0]
    assert (described["EnaSupport"], described["BootMode"]) == (True, "legacy-bios")
    assert described["InstanceType"] == "m6i.large"


def test_model_volume_writes_are_validated() -> None:
    state = EbsState("123456789012")
    state.create_volume("vol-1", 1)
    with pytest.raises(ValueError, match="outside"):
        state.write_volume("vol-1", {2048: pattern_block("x")})
    with pytest.raises(ValueError, match="bytes"):
        state.write_volume("vol-1", {0: b"short"})
    with pytest.raises(KeyError):
        state.write_volume("vol-2", {0: pattern_block("x")})
