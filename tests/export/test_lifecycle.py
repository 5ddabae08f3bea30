"""The pure core of instance exports: which snapshots are kept, reused, deleted; parsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from imagekit.errors import ExportError, InputError
from imagekit.export.instance import parse_instance
from imagekit.export.lifecycle import (
    ManagedSnapshot,
    decide,
    is_ours,
    parse_snapshot,
    snapshot_tags,
)

T0 = datetime(2026, 5, 1, 2, 0, tzinfo=UTC)
VOLUMES = ["vol-root", "vol-data"]


def snap(
    sid: str, volume: str, run: str, hours: float, state: str = "completed"
) -> ManagedSnapshot:
    return ManagedSnapshot(sid, volume, run, state, T0 + timedelta(hours=hours))


def ids(snaps: tuple[ManagedSnapshot, ...]) -> set[str]:
    return {s.snapshot_id for s in snaps}


def hourly(runs: int) -> list[ManagedSnapshot]:
    return [snap(f"s{r}-{v}", v, f"r{r}", r) for r in range(runs) for v in VOLUMES]


def test_the_newest_stored_set_is_kept_and_older_ones_deleted() -> None:
    snaps = hourly(3)
    stored = {f"s{r}-{v}": float(r) for r in range(3) for v in VOLUMES}
    decision = decide(snaps, stored, VOLUMES, T0 + timedelta(hours=3))
    assert ids(decision.keep) == {"s2-vol-root", "s2-vol-data"}
    assert decision.reuse == ()
    assert ids(decision.delete) == {"s0-vol-root", "s0-vol-data", "s1-vol-root", "s1-vol-data"}


def test_the_store_decides_the_base_even_when_start_times_tie() -> None:
    # Start times have whole-second resolution: two sets in one second are ordered by the store.
    snaps = [snap("a", "vol-data", "r1", 0), snap("b", "vol-data", "r2", 0)]
    assert ids(decide(snaps, {"a": 2.0, "b": 1.0}, ["vol-data"], T0).keep) == {"a"}
    assert ids(decide(snaps, {"a": 1.0, "b": 2.0}, ["vol-data"], T0).keep) == {"b"}


def test_a_young_whole_unstored_set_is_reused() -> None:
    snaps = [*hourly(2), snap("d-root", "vol-root", "dead", 1.5, "pending")]
    snaps.append(snap("d-data", "vol-data", "dead", 1.5, "pending"))
    stored = {f"s{r}-{v}": float(r) for r in range(2) for v in VOLUMES}
    now = T0 + timedelta(hours=1.5, minutes=5)
    decision = decide(snaps, stored, VOLUMES, now)
    assert [s.snapshot_id for s in decision.reuse] == ["d-root", "d-data"]  # in volume order
    assert ids(decision.keep) == {"s1-vol-root", "s1-vol-data"}
    assert ids(decision.delete) == {"s0-vol-root", "s0-vol-data"}


@pytest.mark.parametrize(
    ("members", "minutes", "why"),
    [
        ((("vol-root", "pending"), ("vol-data", "pending")), 30, "too old"),
        ((("vol-root", "pending"),), 5, "not every volume"),
        ((("vol-root", "error"), ("vol-data", "completed")), 5, "a failed snapshot"),
    ],
)
def test_a_leftover_set_is_removed_when(
    members: tuple[tuple[str, str], ...], minutes: int, why: str
) -> None:
    snaps = [snap(f"d-{v}", v, "dead", 1.5, state) for v, state in members]
    now = T0 + timedelta(hours=1.5, minutes=minutes)
    decision = decide(snaps, {}, VOLUMES, now)
    assert decision.reuse == (), why
    assert ids(decision.delete) == {f"d-{v}" for v, _ in members}


def test_an_unstored_set_older_than_the_base_is_removed() -> None:
    snaps = [snap("old", "vol-data", "r0", 0), snap("base", "vol-data", "r1", 1)]
    decision = decide(snaps, {"base": 1.0}, ["vol-data"], T0 + timedelta(hours=1))
    assert decision.reuse == () and ids(decision.delete) == {"old"}


def test_is_ours_needs_every_tag() -> None:
    tags = snapshot_tags("shop", "db", "i-1", "r1")
    desc: dict[str, Any] = {"Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
    assert is_ours(desc, "shop", "db", "i-1")
    assert not is_ours(desc, "shop", "web", "i-1")
    assert not is_ours(desc, "other", "db", "i-1")
    assert not is_ours(desc, "shop", "db", "i-2")
    desc["Tags"] = [t for t in desc["Tags"] if t["Key"] != "imagekit:managed"]
    assert not is_ours(desc, "shop", "db", "i-1")
    assert not is_ours({}, "shop", "db", "i-1")


def test_parse_snapshot_reads_ec2s_answer() -> None:
    parsed = parse_snapshot(
        {
            "SnapshotId": "snap-1",
            "VolumeId": "vol-1",
            "State": "pending",
            "Progress": "40%",
            "StartTime": "2026-05-01T02:00:00.000Z",
            "Tags": [{"Key": "imagekit:run", "Value": "r9"}],
        }
    )
    assert (parsed.run, parsed.state, parsed.progress, parsed.start_time) == (
        "r9",
        "pending",
        "40%",
        T0,
    )


def _instance(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "InstanceId": "i-1",
        "InstanceType": "m6i.large",
        "State": {"Name": "running"},
        "ImageId": "ami-1",
        "RootDeviceName": "/dev/xvda",
        "Architecture": "arm64",
        "BootMode": "uefi",
        "EnaSupport": True,
        "BlockDeviceMappings": [
            {"DeviceName": "/dev/sdf", "Ebs": {"VolumeId": "vol-d", "DeleteOnTermination": False}},
            {"DeviceName": "/dev/xvda", "Ebs": {"VolumeId": "vol-r", "DeleteOnTermination": True}},
        ],
        "Tags": [{"Key": "Name", "Value": "db-1"}],
    }
    return {**base, **changes}


VOLS = {
    "vol-d": {"Size": 100, "VolumeType": "gp3", "Encrypted": True, "KmsKeyId": "arn:k"},
    "vol-r": {"Size": 8, "VolumeType": "gp3"},
}


def test_parse_instance_puts_the_root_first_and_keeps_boot_attributes() -> None:
    spec = parse_instance(_instance(), "eu-west-1", VOLS, nvme=True)
    assert [v.volume_id for v in spec.volumes] == ["vol-r", "vol-d"]
    assert (spec.name, spec.architecture, spec.boot_mode, spec.ena_support, spec.nvme) == (
        "db-1",
        "arm64",
        "uefi",
        True,
        True,
    )
    ami = spec.as_ami({"vol-r": "snap-r", "vol-d": "snap-d"}, T0)
    assert [(v.device_name, v.snapshot_id, v.size_gib) for v in ami.volumes] == [
        ("/dev/xvda", "snap-r", 8),
        ("/dev/sdf", "snap-d", 100),
    ]
    assert ami.image_id == "ami-1" and ami.creation_date == T0.isoformat()
    assert ami.volumes[1].encrypted and ami.volumes[1].kms_key_id == "arn:k"


def test_parse_instance_refuses_what_cannot_be_snapshotted() -> None:
    with pytest.raises(ExportError, match="is terminated"):
        parse_instance(_instance(State={"Name": "terminated"}), "r", VOLS)
    with pytest.raises(InputError, match="instance-store"):
        parse_instance(_instance(RootDeviceType="instance-store"), "r", VOLS)
    with pytest.raises(InputError, match="no EBS volume"):
        parse_instance(_instance(BlockDeviceMappings=[]), "r", VOLS)
    with pytest.raises(ExportError, match="vol-d is not visible"):
        parse_instance(_instance(), "r", {"vol-r": VOLS["vol-r"]})
