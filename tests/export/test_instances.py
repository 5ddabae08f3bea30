"""Running instances exported through crash-consistent snapshot sets, against the AWS emulator.

Hourly cycles with writes in between: only the changed blocks are read (requests and bytes),
the data's point in time is the set's start time, imagekit's older snapshots are deleted and
nobody else's, a run that died between snapshot and export is repaired, and the restored disks
are byte-identical to the volumes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from imagekit.cli import main
from imagekit.errors import ExportError, InputError
from imagekit.export import lifecycle, snapshots
from imagekit.export.iam import export_policy
from imagekit.export.instance import InstanceSelection, InstanceSpec
from imagekit.export.instance_job import (
    InstanceExportResult,
    InstanceSource,
    export_instance,
    resolve_instances,
)
from imagekit.store.backends.registry import open_backend
from imagekit.store.identity import Identity, write_identity
from imagekit.store.repository import Repository
from imagekit.store.restore import restore
from testbed.moto_aws import MotoAWS
from testbed.seed_ami import BLOCK_SIZE, VolumeSpec, pattern_block, seed_ami
from testbed.seed_instance import DataVolume, SeededInstance, launch_instance

pytestmark = pytest.mark.slow

REGION = "us-east-1"
PLAN, ROLE = "shop", "db"


@pytest.fixture
def ec2(aws: MotoAWS) -> Any:
    return aws.client("ec2")


@pytest.fixture
def ebs(aws: MotoAWS) -> Any:
    return aws.client("ebs")


def launch(aws: MotoAWS, ec2: Any, ebs: Any, data_devices: tuple[str, ...]) -> SeededInstance:
    root = b"".join(pattern_block(f"root-{i}") for i in range(4))
    ami = seed_ami(ebs, ec2, "db-base", [VolumeSpec("/dev/xvda", root)])
    data = [DataVolume(d) for d in data_devices]
    return launch_instance(ec2, ami, data_volumes=data, tags={"Name": "db-1", "app": "db"})


def describe(ec2: Any, seeded: SeededInstance) -> InstanceSpec:
    (spec,) = resolve_instances(ec2, REGION, InstanceSelection((seeded.instance_id,)))
    return spec


def cycle(
    repo: Repository,
    ec2: Any,
    ebs: Any,
    instance: InstanceSpec,
    tmp_path: Path,
    **source: Any,
) -> InstanceExportResult:
    return export_instance(
        repo,
        ec2,
        ebs,
        instance,
        InstanceSource(PLAN, ROLE, poll_interval=0.0, **source),
        image_name=ROLE,
        state_dir=tmp_path / "state",
        sleep=lambda _: None,
    )


def writes(label: str, *indexes: int) -> dict[int, bytes | None]:
    return {i: pattern_block(f"{label}-{i}") for i in indexes}


def managed(ec2: Any) -> list[dict[str, Any]]:
    return [
        s
        for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]
        if lifecycle.is_ours(s, PLAN, ROLE, s_instance(s))
    ]


def s_instance(snap: dict[str, Any]) -> str:
    return next((t["Value"] for t in snap.get("Tags", []) if t["Key"] == "imagekit:instance"), "")


def test_hourly_cycles_read_only_what_changed(
    aws: MotoAWS, ec2: Any, ebs: Any, store: tuple[str, Repository], tmp_path: Path
) -> None:
    _, repo = store
    seeded = launch(aws, ec2, ebs, ("/dev/sdf",))
    data = seeded.volumes["/dev/sdf"]
    aws.write_volume(data, writes("a", *range(8)))
    instance = describe(ec2, seeded)
    assert (instance.instance_type, instance.ena_support, instance.nvme, instance.boot_mode) == (
        "m6i.large",
        True,
        True,
        "legacy-bios",
    )

    aws.reset_counters()
    first = cycle(repo, ec2, ebs, instance, tmp_path)
    assert [v.mode for v in first.export.volumes] == ["full", "full"]
    assert aws.counters()["GetSnapshotBlock"] == 4 + 8
    assert aws.counters()["CreateSnapshots"] == 1

    for hour, changed in enumerate(((2, 5, 9), (), (0, 1, 2, 3, 4, 5, 6, 7)), start=1):
        aws.write_volume(data, writes(f"h{hour}", *changed))
        aws.reset_counters()
        result = cycle(repo, ec2, ebs, instance, tmp_path)
        assert [v.mode for v in result.export.volumes] == ["incremental", "incremental"]
        assert [v.blocks_read for v in result.export.volumes] == [0, len(changed)]
        assert aws.counters()["GetSnapshotBlock"] == len(changed)
        assert result.export.bytes_read == len(changed) * BLOCK_SIZE
        # The previous set was the base; it is deleted now, the new one kept.
        assert set(result.deleted) == set(first.snapshot_set.values())
        assert {s["SnapshotId"] for s in managed(ec2)} == set(result.snapshot_set.values())
        first = result

    stored = repo.resolve(ROLE).manifest
    meta = stored.metadata
    started = min(
        s["StartTime"]
        for s in ec2.describe_snapshots(SnapshotIds=list(first.snapshot_set.values()))["Snapshots"]
    )
    assert meta["point_in_time"] == first.point_in_time.isoformat()
    assert abs(first.point_in_time.timestamp() - started.timestamp()) < 1
    assert meta["instance"]["instance_id"] == seeded.instance_id
    assert (meta["instance"]["instance_type"], meta["instance"]["nvme"]) == ("m6i.large", True)
    assert meta["instance_type"] == "m6i.large"  # what targets map sizes from (PreparedImage)
    assert meta["ami"]["ena_support"] is True and meta["ami"]["boot_mode"] == "legacy-bios"
    assert meta["ami"]["image_id"] == seeded.image_id
    assert [v["device_name"] for v in meta["ami"]["volumes"]] == ["/dev/xvda", "/dev/sdf"]


def test_three_volumes_restore_byte_identical(
    aws: MotoAWS,
    ec2: Any,
    ebs: Any,
    store: tuple[str, Repository],
    reader: Identity,
    tmp_path: Path,
) -> None:
    url, repo = store
    seeded = launch(aws, ec2, ebs, ("/dev/sdf", "/dev/sdg"))
    aws.write_volume(seeded.volumes["/dev/sdf"], writes("f", 0, 3, 7))
    aws.write_volume(seeded.volumes["/dev/sdg"], writes("g", 1, 2000))
    instance = describe(ec2, seeded)
    cycle(repo, ec2, ebs, instance, tmp_path)
    aws.write_volume(seeded.root_volume, {1: None, 5: pattern_block("root-new")})
    aws.write_volume(seeded.volumes["/dev/sdf"], writes("f2", 3, 8))
    second = cycle(repo, ec2, ebs, instance, tmp_path)
    assert sum(v.blocks_read for v in second.export.volumes) == 4

    out = tmp_path / "restored"
    with open_backend(url) as backend:
        reading = Repository.open(backend, identity=reader)
        restore(reading, reading.resolve(ROLE), out)
    for device, volume_id in seeded.volumes.items():
        disk = out / f"{device.rsplit('/', 1)[-1]}.raw"
        assert disk.stat().st_size == 1 << 30
        expected = aws.volume_blocks(volume_id)
        with disk.open("rb") as handle:
            for index in range(max(expected) + 2):
                handle.seek(index * BLOCK_SIZE)
                block = handle.read(BLOCK_SIZE)
                digest = base64.b64encode(hashlib.sha256(block).digest()).decode()
                want = expected.get(index, _ZERO_DIGEST)
                assert digest == want, f"{device} block {index}"


_ZERO_DIGEST = base64.b64encode(hashlib.sha256(bytes(BLOCK_SIZE)).digest()).decode()


def test_foreign_snapshots_are_never_deleted(
    aws: MotoAWS, ec2: Any, ebs: Any, store: tuple[str, Repository], tmp_path: Path
) -> None:
    _, repo = store
    aws.set_snapshot_polls(0)
    seeded = launch(aws, ec2, ebs, ("/dev/sdf",))
    data = seeded.volumes["/dev/sdf"]
    instance = describe(ec2, seeded)
    someone = ec2.create_snapshot(VolumeId=data, Description="the team's own backup")
    other_plan = lifecycle.snapshot_tags("other-plan", ROLE, seeded.instance_id, "r1")
    lookalike = snapshots.create_set(ec2, seeded.instance_id, other_plan)
    # Tagged as imagekit's by hand, but missing the instance tag: not ours either.
    partial = ec2.create_snapshot(
        VolumeId=data,
        TagSpecifications=[
            {
                "ResourceType": "snapshot",
                "Tags": [
                    {"Key": "imagekit:managed", "Value": "true"},
                    {"Key": "imagekit:plan", "Value": PLAN},
                    {"Key": "imagekit:role", "Value": ROLE},
                ],
            }
        ],
    )
    for _ in range(3):
        cycle(repo, ec2, ebs, instance, tmp_path)
    left = {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    foreign = {someone["SnapshotId"], partial["SnapshotId"], *(s["SnapshotId"] for s in lookalike)}
    assert foreign <= left
    assert len(managed(ec2)) == 2  # the newest set: root and data


def test_a_set_left_by_a_dead_run_is_reused_when_young(
    aws: MotoAWS, ec2: Any, ebs: Any, store: tuple[str, Repository], tmp_path: Path
) -> None:
    _, repo = store
    seeded = launch(aws, ec2, ebs, ("/dev/sdf",))
    instance = describe(ec2, seeded)
    cycle(repo, ec2, ebs, instance, tmp_path)
    aws.write_volume(seeded.volumes["/dev/sdf"], writes("b", 4))
    # A run that died right after CreateSnapshots: its set is tagged, pending, not stored.
    dead = snapshots.create_set(
        ec2, seeded.instance_id, lifecycle.snapshot_tags(PLAN, ROLE, seeded.instance_id, "dead")
    )
    aws.write_volume(seeded.volumes["/dev/sdf"], writes("c", 5))  # after the dead run's set
    aws.reset_counters()
    result = cycle(repo, ec2, ebs, instance, tmp_path)
    assert result.reused
    assert aws.counters()["CreateSnapshots"] == 0
    assert set(result.snapshot_set.values()) == {s["SnapshotId"] for s in dead}
    assert [v.blocks_read for v in result.export.volumes] == [0, 1]  # block 4, not block 5


def test_an_old_leftover_set_is_removed_and_a_fresh_one_taken(
    aws: MotoAWS, ec2: Any, ebs: Any, store: tuple[str, Repository], tmp_path: Path
) -> None:
    _, repo = store
    seeded = launch(aws, ec2, ebs, ("/dev/sdf",))
    instance = describe(ec2, seeded)
    cycle(repo, ec2, ebs, instance, tmp_path)
    dead = snapshots.create_set(
        ec2, seeded.instance_id, lifecycle.snapshot_tags(PLAN, ROLE, seeded.instance_id, "dead")
    )
    aws.reset_counters()
    result = cycle(repo, ec2, ebs, instance, tmp_path, reuse_within=0.0)
    assert not result.reused
    assert aws.counters()["CreateSnapshots"] == 1
    assert {s["SnapshotId"] for s in dead} <= set(result.deleted)


def test_a_deleted_base_means_a_full_read(
    aws: MotoAWS, ec2: Any, ebs: Any, store: tuple[str, Repository], tmp_path: Path
) -> None:
    _, repo = store
    aws.set_snapshot_polls(0)
    seeded = launch(aws, ec2, ebs, ("/dev/sdf",))
    data = seeded.volumes["/dev/sdf"]
    aws.write_volume(data, writes("a", 0, 1, 2))
    instance = describe(ec2, seeded)
    first = cycle(repo, ec2, ebs, instance, tmp_path)
    ec2.delete_snapshot(SnapshotId=first.snapshot_set[data])  # someone cleaned up by hand
    second = cycle(repo, ec2, ebs, instance, tmp_path)
    modes = {v.snapshot: v.mode for v in second.export.volumes}
    assert modes[second.snapshot_set[data]] == "full"
    assert modes[second.snapshot_set[seeded.root_volume]] == "incremental"


def test_boot_volume_excluded(
    aws: MotoAWS, ec2: Any, ebs: Any, store: tuple[str, Repository], tmp_path: Path
) -> None:
    _, repo = store
    seeded = launch(aws, ec2, ebs, ("/dev/sdf",))
    instance = describe(ec2, seeded)
    result = cycle(repo, ec2, ebs, instance, tmp_path, exclude_boot_volume=True)
    assert list(result.snapshot_set) == [seeded.volumes["/dev/sdf"]]
    assert [v.name for v in repo.resolve(ROLE).manifest.volumes] == ["sdf"]


def test_throttled_create_snapshots_backs_off_then_names_it(
    aws: MotoAWS, ec2: Any, ebs: Any, store: tuple[str, Repository], tmp_path: Path
) -> None:
    _, repo = store
    seeded = launch(aws, ec2, ebs, ())
    instance = describe(ec2, seeded)
    waits: list[float] = []
    tags = lifecycle.snapshot_tags(PLAN, ROLE, seeded.instance_id, "r")
    aws.add_fault("CreateSnapshots", count=2, kind="throttle")
    made = snapshots.create_set(ec2, seeded.instance_id, tags, sleep=waits.append)
    assert len(made) == 1 and len(waits) == 2

    aws.add_fault("DescribeSnapshots", count=3, kind="throttle")
    done = snapshots.wait_completed(ec2, [made[0]["SnapshotId"]], sleep=waits.append)
    assert done[0].state == "completed" and len(waits) > 5

    aws.add_fault("CreateSnapshots", count=snapshots.ATTEMPTS, kind="throttle")
    with pytest.raises(ExportError, match=r"throttled.*RequestLimitExceeded"):
        snapshots.create_set(ec2, seeded.instance_id, tags, sleep=lambda _: None)
    aws.add_fault(
        "CreateSnapshots",
        count=snapshots.ATTEMPTS,
        kind="throttle",
        code="ResourceLimitExceeded",
        message="Maximum number of pending snapshots reached",
    )
    with pytest.raises(ExportError, match=r"quota of pending snapshots.*ResourceLimitExceeded"):
        cycle(repo, ec2, ebs, instance, tmp_path, reuse_within=0.0)  # the set above is removed


def test_cli_exports_instances_by_tag(
    aws: MotoAWS,
    ec2: Any,
    ebs: Any,
    store: tuple[str, Repository],
    reader: Identity,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, _ = store
    for key, value in aws.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("IMAGEKIT_STATE_DIR", str(tmp_path / "state"))
    identity = tmp_path / "reader.key"
    monkeypatch.setenv("IMAGEKIT_PASSPHRASE", "pw")
    write_identity(identity, reader, "pw")
    seeded = launch(aws, ec2, ebs, ("/dev/sdf",))
    aws.write_volume(seeded.volumes["/dev/sdf"], writes("x", 1, 2))
    args = [
        "export",
        "--instance-filter",
        "tag:app=db",
        "--store",
        url,
        "--identity",
        str(identity),
    ]
    assert main([*args, "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["instance"], row["name"]) == (seeded.instance_id, "db-1")
    assert [v["mode"] for v in row["volumes"]] == ["full", "full"]
    tags = {
        t["Key"]: t["Value"]
        for s in ec2.describe_snapshots(SnapshotIds=list(row["snapshot_set"].values()))["Snapshots"]
        for t in s["Tags"]
    }
    assert tags[lifecycle.TAG_PLAN] == "cli" and tags[lifecycle.TAG_ROLE] == "db-1"
    assert main(["export", "--instance", seeded.instance_id, "ami-12345678", "--store", url]) == 2
    assert "AMIs or instances, not both" in capsys.readouterr().err


def test_iam_policy_for_instances_deletes_only_tagged_snapshots() -> None:
    plain = export_policy()
    assert not any("ec2:DeleteSnapshot" in s["Action"] for s in plain["Statement"])
    policy = export_policy(instances=True)
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    delete = by_sid["DeleteOwnSnapshotsOnly"]
    assert delete["Action"] == ["ec2:DeleteSnapshot"]
    assert delete["Condition"] == {"StringEquals": {"aws:ResourceTag/imagekit:managed": "true"}}
    assert lifecycle.TAG_MANAGED == "imagekit:managed"
    tag = by_sid["TagNewSnapshotsOnly"]
    assert tag["Condition"] == {"StringEquals": {"ec2:CreateAction": "CreateSnapshots"}}
    actions = {a for s in policy["Statement"] for a in s["Action"]}
    assert actions == {
        "ec2:DescribeImages",
        "ec2:DescribeSnapshots",
        "ebs:ListSnapshotBlocks",
        "ebs:ListChangedBlocks",
        "ebs:GetSnapshotBlock",
        "ec2:DescribeInstances",
        "ec2:DescribeVolumes",
        "ec2:DescribeInstanceTypes",
        "ec2:CreateSnapshots",
        "ec2:CreateTags",
        "ec2:DeleteSnapshot",
    }


class Recording:
    visible = True

    def __init__(self) -> None:
        self.updates: list[float] = []
        self.started: list[str] = []

    def start(self, description: str, total: float | None) -> None:
        self.started.append(description)

    def update(self, completed: float) -> None:
        self.updates.append(completed)

    def advance(self, amount: float) -> None:
        pass

    def finish(self) -> None:
        pass


def test_wait_shows_progress_and_names_a_failed_snapshot(aws: MotoAWS, ec2: Any, ebs: Any) -> None:
    aws.set_snapshot_polls(3)
    seeded = launch(aws, ec2, ebs, ("/dev/sdf",))
    tags = lifecycle.snapshot_tags(PLAN, ROLE, seeded.instance_id, "r")
    made = [s["SnapshotId"] for s in snapshots.create_set(ec2, seeded.instance_id, tags)]
    bar = Recording()
    waited: list[float] = []
    snapshots.wait_completed(ec2, made, progress=bar, sleep=waited.append)
    assert bar.updates == [25.0, 50.0, 100.0]
    assert waited == [0.5, 1.0]  # polls back off
    again = [s["SnapshotId"] for s in snapshots.create_set(ec2, seeded.instance_id, tags)]
    aws.set_snapshot_state(again[1], state="error")
    with pytest.raises(ExportError, match=rf"snapshot {again[1]} of .* is in the error state"):
        snapshots.wait_completed(ec2, again, sleep=lambda _: None)


def test_an_export_that_failed_after_the_snapshot_is_finished_by_the_next_run(
    aws: MotoAWS, ec2: Any, ebs: Any, store: tuple[str, Repository], tmp_path: Path
) -> None:
    _, repo = store
    seeded = launch(aws, ec2, ebs, ("/dev/sdf",))
    aws.write_volume(seeded.volumes["/dev/sdf"], writes("a", 0, 1, 2))
    instance = describe(ec2, seeded)
    aws.add_fault("GetSnapshotBlock", count=1, kind="access_denied")
    with pytest.raises(ExportError, match="access denied for ebs:GetSnapshotBlock"):
        cycle(repo, ec2, ebs, instance, tmp_path)
    assert repo.list_images() == []  # nothing half-written is listed
    aws.reset_counters()
    result = cycle(repo, ec2, ebs, instance, tmp_path)
    assert result.reused and aws.counters()["CreateSnapshots"] == 0
    assert [v.mode for v in result.export.volumes] == ["full", "full"]
    assert len(managed(ec2)) == 2


def test_an_unknown_instance_is_a_usage_error(ec2: Any) -> None:
    with pytest.raises(InputError, match="not found"):
        resolve_instances(ec2, REGION, InstanceSelection(("i-0123456789abcdef0",)))
    with pytest.raises(InputError, match="no instance matches"):
        resolve_instances(ec2, REGION, InstanceSelection(filters={"tag:app": ["nope"]}))


def test_delete_skips_a_snapshot_gone_meanwhile_and_one_whose_tags_changed(
    aws: MotoAWS, ec2: Any, ebs: Any
) -> None:
    aws.set_snapshot_polls(0)
    seeded = launch(aws, ec2, ebs, ())
    tags = lifecycle.snapshot_tags(PLAN, ROLE, seeded.instance_id, "r")
    gone, retagged, doomed = (
        snapshots.create_set(ec2, seeded.instance_id, tags)[0]["SnapshotId"] for _ in range(3)
    )
    listed = [lifecycle.parse_snapshot(s) for s in managed(ec2)]
    ec2.delete_snapshot(SnapshotId=gone)
    # Between the listing and the delete someone took the snapshot over for another use.
    ec2.create_tags(Resources=[retagged], Tags=[{"Key": "imagekit:managed", "Value": "false"}])
    deleted = snapshots.delete_checked(ec2, listed, PLAN, ROLE, seeded.instance_id)
    assert deleted == [doomed]
    left = {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    assert retagged in left and doomed not in left


def test_the_first_instance_export_builds_on_its_amis_stored_image(
    aws: MotoAWS, ec2: Any, ebs: Any, store: tuple[str, Repository], tmp_path: Path
) -> None:
    from imagekit.export.job import Selection, export_ami, resolve_amis

    _, repo = store
    seeded = launch(aws, ec2, ebs, ("/dev/sdf",))
    (ami,) = resolve_amis(ec2, REGION, Selection(image_ids=(seeded.image_id,)))
    export_ami(repo, ebs, ami, image_name="db-ami", state_dir=tmp_path / "state")
    aws.write_volume(seeded.root_volume, {1: pattern_block("patched")})
    aws.reset_counters()
    result = cycle(repo, ec2, ebs, describe(ec2, seeded), tmp_path)
    # The root volume was made from the AMI's snapshot: same lineage, so only the block the
    # instance changed since is read; the data volume has no base and nothing written.
    assert [v.mode for v in result.export.volumes] == ["incremental", "full"]
    assert [v.blocks_read for v in result.export.volumes] == [1, 0]
    assert aws.counters()["GetSnapshotBlock"] == 1


def test_a_killed_instance_export_resumes_on_the_same_set(
    aws: MotoAWS,
    ec2: Any,
    ebs: Any,
    store: tuple[str, Repository],
    reader: Identity,
    tmp_path: Path,
) -> None:
    """SIGKILL mid-export: the next run reuses the set and fetches only what no pack holds."""
    url, _ = store
    blocks = 160  # 80 MiB of random data: several 32 MiB packs
    seeded = launch(aws, ec2, ebs, ("/dev/sdf",))
    aws.write_volume(seeded.volumes["/dev/sdf"], {i: os.urandom(BLOCK_SIZE) for i in range(80)})
    aws.write_volume(
        seeded.volumes["/dev/sdf"], {i: os.urandom(BLOCK_SIZE) for i in range(80, blocks)}
    )
    writer = Identity.generate()
    ident = tmp_path / "writer.key"
    write_identity(ident, writer, "pw")
    with open_backend(url) as backend:
        Repository.open(backend, identity=reader).add_recipient(writer.recipient, "write")
    env = {**os.environ, **aws.env, "IMAGEKIT_STATE_DIR": str(tmp_path / "state")}
    env["IMAGEKIT_PASSPHRASE"] = "pw"
    aws.add_fault("GetSnapshotBlock", count=10_000, kind="delay", delay=0.03)
    exe = Path(sys.executable).parent / "imagekit"
    command = [str(exe), "export", "--instance", seeded.instance_id, "--store", url]
    proc = subprocess.Popen(
        [*command, "--identity", str(ident), "--image-name", ROLE, "--concurrency", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    data = Path(url) / "data"
    deadline = time.monotonic() + 90
    while not any(p.is_file() and not p.name.startswith(".") for p in data.rglob("*")):
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "no pack was uploaded within 90 s"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    aws.clear_faults()
    assert Repository.open(open_backend(url), identity=reader).list_images() == []
    aws.reset_counters()
    with open_backend(url) as backend:
        export_host = Repository.open(backend, identity=writer)
        instance = describe(ec2, seeded)
        result = export_instance(
            export_host,
            ec2,
            ebs,
            instance,
            InstanceSource("cli", ROLE, poll_interval=0.0),
            image_name=ROLE,
            state_dir=tmp_path / "state",
        )
    assert result.reused and aws.counters()["CreateSnapshots"] == 0
    resumed = sum(v.blocks_resumed for v in result.export.volumes)
    assert resumed >= 64  # at least one whole pack's blocks were kept
    assert aws.counters()["GetSnapshotBlock"] == 4 + blocks - resumed
