"""AMI export end to end against the AWS emulator over real HTTP (moto, corrected to the contract).

Nothing of boto3 is mocked: AMIs are seeded by uploading real disk images through the EBS direct
APIs, exported by imagekit into a real local store, restored, and compared byte for byte.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from imagekit.cli import main
from imagekit.errors import ExportError, ImagekitError, InputError
from imagekit.export.job import ExportResult, Selection, export
from imagekit.fsutil import allocated_bytes
from imagekit.store.backends.registry import open_backend
from imagekit.store.identity import Identity, write_identity
from imagekit.store.repository import Repository
from imagekit.store.restore import restore
from testbed.moto_aws import MotoAWS
from testbed.seed_ami import SeededAmi, VolumeSpec, seed_ami, seed_next_ami

pytestmark = pytest.mark.slow

BLOCK = 524_288
GIB = 1 << 30
REGION = "us-east-1"


def disk_bytes(seed: int, blocks: int, *, holes: bool = True) -> bytes:
    """A disk of ``blocks`` EBS blocks: random data with holes and a partly written block."""
    rng = random.Random(seed)
    out = bytearray(blocks * BLOCK)
    for i in range(blocks):
        if holes and i % 3 == 1:
            continue  # a hole: never written, never listed
        if i % 5 == 4:
            out[i * BLOCK : i * BLOCK + 4096] = rng.randbytes(4096)  # a mostly-zero block
        else:
            out[i * BLOCK : (i + 1) * BLOCK] = rng.randbytes(BLOCK)
    return bytes(out)


@pytest.fixture
def aws_env(aws: MotoAWS, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> MotoAWS:
    for key, value in aws.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("IMAGEKIT_STATE_DIR", str(tmp_path / "state"))
    return aws


def read_repo(url: str, reader: Identity) -> Repository:
    return Repository.open(open_backend(url), identity=reader)


def seed(aws: MotoAWS, name: str, volumes: list[tuple[str, bytes | Path]]) -> SeededAmi:
    specs = [VolumeSpec(device, image) for device, image in volumes]
    return seed_ami(aws.client("ebs"), aws.client("ec2"), name, specs, tags={"dr": "true"})


def run_export(repo: Repository, *amis: str, **kwargs: Any) -> list[ExportResult]:
    state = Path(os.environ["IMAGEKIT_STATE_DIR"])
    return export(repo, Selection(image_ids=amis), region=REGION, state_dir=state, **kwargs)


def restore_all(url: str, reader: Identity, ref: str, out: Path) -> dict[str, Path]:
    repo = read_repo(url, reader)
    restore(repo, repo.resolve(ref), out)
    if out.is_dir():
        return {p.stem: p for p in out.iterdir() if not p.name.startswith(".")}
    return {"": out}


def assert_volume(restored: Path, source: bytes, size: int) -> None:
    assert restored.stat().st_size == size
    with restored.open("rb") as handle:
        assert handle.read(len(source)) == source
    # Past the source's data the volume is holes: the restore must stay sparse.
    assert allocated_bytes(restored) <= len(source) + 2 * BLOCK


def test_multi_volume_round_trip(
    aws_env: MotoAWS, store: tuple[str, Repository], reader: Identity, tmp_path: Path
) -> None:
    url, repo = store
    root, data = disk_bytes(1, 12), disk_bytes(2, 7)
    ami = seed(aws_env, "web-1", [("/dev/xvda", root), ("/dev/xvdf", data)])
    (result,) = run_export(repo, ami.image_id)

    assert [v.mode for v in result.volumes] == ["full", "full"]
    written = [sum(1 for i in range(n) if i % 3 != 1) for n in (12, 7)]
    assert [v.blocks_read for v in result.volumes] == written
    assert aws_env.counters()["GetSnapshotBlock"] == sum(written)
    meta = read_repo(url, reader).resolve("web-1").manifest.metadata["ami"]
    assert meta["image_id"] == ami.image_id
    assert [v["device_name"] for v in meta["volumes"]] == ["/dev/xvda", "/dev/xvdf"]
    assert meta["tags"] == {"dr": "true"}

    files = restore_all(url, reader, "web-1", tmp_path / "out")
    assert sorted(files) == ["xvda", "xvdf"]
    assert_volume(files["xvda"], root, GIB)
    assert_volume(files["xvdf"], data, GIB)


def test_incremental_reads_only_changed_blocks(
    aws_env: MotoAWS, store: tuple[str, Repository], reader: Identity, tmp_path: Path
) -> None:
    url, repo = store
    root = disk_bytes(3, 10)
    day1 = seed(aws_env, "app", [("/dev/xvda", root), ("/dev/xvdf", disk_bytes(4, 4))])
    run_export(repo, day1.image_id, image_name="app")
    changes = {2: os.urandom(BLOCK), 7: os.urandom(BLOCK), 30: os.urandom(BLOCK)}
    day2 = seed_next_ami(
        aws_env.client("ebs"), aws_env.client("ec2"), day1, "app-2", {"/dev/xvda": changes}
    )
    aws_env.reset_counters()

    (result,) = run_export(repo, day2.image_id, image_name="app")

    assert [v.mode for v in result.volumes] == ["incremental", "incremental"]
    assert [v.blocks_changed for v in result.volumes] == [3, 0]
    assert aws_env.counters()["GetSnapshotBlock"] == 3
    assert result.image.manifest.parent is not None
    expected = bytearray(root + bytes(21 * BLOCK))
    for index, block in changes.items():
        expected[index * BLOCK : (index + 1) * BLOCK] = block
    files = restore_all(url, reader, result.image.id, tmp_path / "out")
    assert_volume(files["xvda"], bytes(expected), GIB)


def test_an_export_reads_the_index_and_lists_the_packs_once(
    aws_env: MotoAWS, store: tuple[str, Repository], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a cloud store each index object is a GET and the pack listing pages through data/:
    planning and ingest share one load, under one shared lock."""
    _, repo = store
    day1 = seed(aws_env, "once", [("/dev/xvda", disk_bytes(5, 6))])
    run_export(repo, day1.image_id, image_name="once")
    day2 = seed_next_ami(
        aws_env.client("ebs"),
        aws_env.client("ec2"),
        day1,
        "once-2",
        {"/dev/xvda": {1: b"x" * BLOCK}},
    )
    listed: list[str] = []
    index_reads: list[str] = []
    real_list, real_read = repo.backend.list, repo.backend.read

    def counting_list(prefix: str = "") -> Any:
        listed.append(prefix)
        return real_list(prefix)

    def counting_read(name: str, offset: int = 0, length: int | None = None) -> bytes:
        if name.startswith("index/"):
            index_reads.append(name)
        return real_read(name, offset, length)

    monkeypatch.setattr(repo.backend, "list", counting_list)
    monkeypatch.setattr(repo.backend, "read", counting_read)

    (result,) = run_export(repo, day2.image_id, image_name="once")

    assert [v.mode for v in result.volumes] == ["incremental"]
    assert listed.count("data/") == 1
    assert listed.count("index/") == 1
    assert len(index_reads) == 1  # day 1's one index object, read once


class RecordingProgress:
    """Every bar started (description, total) and the bytes advanced on it."""

    visible = True

    def __init__(self) -> None:
        self.bars: list[list[Any]] = []

    def start(self, description: str, total: float | None) -> None:
        self.bars.append([description, total, 0])

    def update(self, completed: float) -> None:
        self.bars[-1][2] = completed

    def advance(self, amount: float) -> None:
        self.bars[-1][2] += amount

    def finish(self) -> None:
        pass


def test_a_watched_export_counts_its_blocks_first_for_an_eta(
    aws_env: MotoAWS, store: tuple[str, Repository]
) -> None:
    _, repo = store
    day1 = seed(
        aws_env, "eta", [("/dev/xvda", disk_bytes(11, 10)), ("/dev/xvdf", disk_bytes(12, 4))]
    )
    aws_env.reset_counters()
    bar = RecordingProgress()
    run_export(repo, day1.image_id, image_name="eta", progress=bar)
    volumes = [b for b in bar.bars if b[0].startswith("xvd")]
    assert [b[0].split()[0] for b in volumes] == ["xvda", "xvdf"]
    assert all(total == done > 0 for _, total, done in volumes)  # the bar ends full, not beyond
    assert sum(b[1] for b in volumes) == aws_env.counters()["GetSnapshotBlock"] * BLOCK
    changes = {2: os.urandom(BLOCK), 30: os.urandom(BLOCK)}
    day2 = seed_next_ami(
        aws_env.client("ebs"), aws_env.client("ec2"), day1, "eta-2", {"/dev/xvda": changes}
    )
    bar = RecordingProgress()
    run_export(repo, day2.image_id, image_name="eta", progress=bar)
    assert [b[1] for b in bar.bars if b[0].startswith("xvd")] == [2 * BLOCK, 0]


def test_same_snapshot_again_reads_nothing(aws_env: MotoAWS, store: tuple[str, Repository]) -> None:
    _, repo = store
    ami = seed(aws_env, "same", [("/dev/xvda", disk_bytes(5, 4))])
    run_export(repo, ami.image_id)
    aws_env.reset_counters()
    (again,) = run_export(repo, ami.image_id)
    assert [v.mode for v in again.volumes] == ["unchanged"]
    assert aws_env.counters()["GetSnapshotBlock"] == 0


def test_unrelated_snapshot_falls_back_to_full_read_with_dedup(
    aws_env: MotoAWS, store: tuple[str, Repository]
) -> None:
    _, repo = store
    disk = disk_bytes(6, 8)
    first = seed(aws_env, "db-1", [("/dev/xvda", disk)])
    run_export(repo, first.image_id, image_name="db")
    # Rebuilt from scratch (no ParentSnapshotId): AWS says the snapshots are not related.
    rebuilt = seed(aws_env, "db-rebuilt", [("/dev/xvda", disk)])
    (result,) = run_export(repo, rebuilt.image_id, image_name="db")
    assert result.volumes[0].mode == "full"
    assert aws_env.counters()["ListChangedBlocks"] >= 1
    # Same data: dedup means only metadata is uploaded.
    assert result.bytes_uploaded < BLOCK


def test_pagination_and_expired_listing_token(
    aws_env: MotoAWS, store: tuple[str, Repository], reader: Identity, tmp_path: Path
) -> None:
    url, repo = store
    disk = disk_bytes(7, 260, holes=False)
    ami = seed(aws_env, "big", [("/dev/xvda", disk)])
    aws_env.set_page_cap(100)
    aws_env.set_page_token_ttl(0.0)  # every NextToken has expired by the time it is used
    aws_env.reset_counters()
    (result,) = run_export(repo, ami.image_id)
    assert result.volumes[0].blocks_read == 260
    assert aws_env.counters()["ListSnapshotBlocks"] >= 3  # more than one page, and restarts
    assert aws_env.counters()["GetSnapshotBlock"] == 260
    files = restore_all(url, reader, "big", tmp_path / "out.raw")
    assert_volume(files[""], disk, GIB)


def test_throttling_and_server_errors_still_give_identical_bytes(
    aws_env: MotoAWS, store: tuple[str, Repository], reader: Identity, tmp_path: Path
) -> None:
    url, repo = store
    disk = disk_bytes(8, 9)
    ami = seed(aws_env, "flaky", [("/dev/xvda", disk)])
    aws_env.add_fault("GetSnapshotBlock", count=4, kind="throttle")
    aws_env.add_fault("GetSnapshotBlock", count=2, kind="internal")
    aws_env.add_fault("GetSnapshotBlock", count=1, kind="slowdown")
    aws_env.add_fault("ListSnapshotBlocks", count=1, kind="unavailable")
    aws_env.add_fault("DescribeImages", count=1, kind="request_throttled")
    run_export(repo, ami.image_id)
    assert aws_env.pending_faults() == []
    files = restore_all(url, reader, "flaky", tmp_path / "out.raw")
    assert_volume(files[""], disk, GIB)


def test_resume_after_kill_fetches_only_what_was_not_stored(
    aws_env: MotoAWS, store: tuple[str, Repository], tmp_path: Path, reader: Identity
) -> None:
    """Kill a real `imagekit export` process mid-way; the rerun skips blocks already in packs."""
    url, _ = store
    blocks = 160  # 80 MiB of random data: several 32 MiB packs
    disk = disk_bytes(9, blocks, holes=False)
    ami = seed(aws_env, "resume", [("/dev/xvda", disk)])
    writer = Identity.generate()
    ident = tmp_path / "writer.key"
    os.environ["IMAGEKIT_PASSPHRASE"] = "pw"
    write_identity(ident, writer, "pw")
    with open_backend(url) as backend:
        Repository.open(backend, identity=reader).add_recipient(writer.recipient, "write")
    aws_env.add_fault("GetSnapshotBlock", count=10_000, kind="delay", delay=0.03)
    exe = Path(sys.executable).parent / "imagekit"
    proc = subprocess.Popen(
        [
            str(exe),
            "export",
            ami.image_id,
            "--store",
            url,
            "--identity",
            str(ident),
            "--concurrency",
            "2",
        ],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    data = Path(url) / "data"
    deadline = time.monotonic() + 60
    # Wait for the first whole pack (an upload in progress is a hidden temporary file).
    while not any(p.is_file() and not p.name.startswith(".") for p in data.rglob("*")):
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "no pack was uploaded within 60 s"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    aws_env.clear_faults()
    assert read_repo(url, reader).list_images() == [], "an interrupted export must not be listed"
    aws_env.reset_counters()

    with open_backend(url) as backend:
        (result,) = run_export(Repository.open(backend, identity=writer), ami.image_id)
    resumed = result.volumes[0].blocks_resumed
    assert resumed >= 64  # at least one full 32 MiB pack was kept
    assert aws_env.counters()["GetSnapshotBlock"] == blocks - resumed
    files = restore_all(url, reader, "resume", tmp_path / "out.raw")
    assert_volume(files[""], disk, GIB)


def test_unknown_ami_is_a_clear_input_error(
    aws_env: MotoAWS, store: tuple[str, Repository]
) -> None:
    _, repo = store
    with pytest.raises(ImagekitError) as err:
        run_export(repo, "ami-0000000000000dead")
    assert err.value.exit_code == 2
    assert "ami-0000000000000dead" in str(err.value)


def test_access_denied_names_the_iam_action(
    aws_env: MotoAWS, store: tuple[str, Repository]
) -> None:
    _, repo = store
    ami = seed(aws_env, "denied", [("/dev/xvda", disk_bytes(10, 2))])
    aws_env.add_fault("GetSnapshotBlock", count=1, kind="access_denied")
    with pytest.raises(ExportError, match="ebs:GetSnapshotBlock"):
        run_export(repo, ami.image_id)


def test_encrypted_snapshot_without_kms_rights(
    aws_env: MotoAWS, store: tuple[str, Repository]
) -> None:
    _, repo = store
    ami = seed(aws_env, "sealed", [("/dev/xvda", disk_bytes(11, 2))])
    aws_env.set_snapshot_state(
        ami.snapshot_ids[0], encrypted=True, kms_key_id="arn:aws:kms:k", kms_decrypt=False
    )
    with pytest.raises(ExportError, match="kms:Decrypt"):
        run_export(repo, ami.image_id)


def test_snapshot_in_error_state(aws_env: MotoAWS, store: tuple[str, Repository]) -> None:
    _, repo = store
    ami = seed(aws_env, "broken", [("/dev/xvda", disk_bytes(12, 2))])
    aws_env.set_snapshot_state(ami.snapshot_ids[0], state="error")
    with pytest.raises(ExportError, match="error state"):
        run_export(repo, ami.image_id)


def test_selection_by_tag_and_latest_per_name(
    aws_env: MotoAWS, store: tuple[str, Repository]
) -> None:
    _, repo = store
    seed(aws_env, "web", [("/dev/xvda", disk_bytes(13, 1))])
    seed(aws_env, "worker", [("/dev/xvda", disk_bytes(14, 1))])
    results = export(
        repo,
        Selection(filters={"tag:dr": ["true"]}, latest_per_name=True),
        region=REGION,
        state_dir=Path(os.environ["IMAGEKIT_STATE_DIR"]),
    )
    assert sorted(r.image.manifest.name for r in results) == ["web", "worker"]
    with pytest.raises(InputError, match="no AMI matches"):
        export(
            repo,
            Selection(name_patterns=("nothing-*",)),
            region=REGION,
            state_dir=Path(os.environ["IMAGEKIT_STATE_DIR"]),
        )


def test_cli_json_shape(
    aws_env: MotoAWS, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    ami = seed(aws_env, "cli", [("/dev/xvda", disk_bytes(15, 3))])
    os.environ["IMAGEKIT_PASSPHRASE"] = "pw"
    url = str(tmp_path / "cli-store")
    assert main(["store", "init", url, "--passphrase"]) == 0
    capsys.readouterr()
    assert main(["export", ami.image_id, "--store", url, "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert set(row) >= {"id", "name", "ami", "volumes", "bytes_read", "bytes_uploaded", "seconds"}
    assert row["ami"] == ami.image_id
    assert set(row["volumes"][0]) >= {"snapshot", "virtual_size", "blocks_read", "blocks_changed"}
    assert row["volumes"][0]["virtual_size"] == GIB
    assert row["bytes_read"] == 3 * BLOCK - BLOCK  # block 1 is a hole


def test_exported_test_disk_boots(
    aws_env: MotoAWS,
    store: tuple[str, Repository],
    reader: Identity,
    test_disk: Path,
    tmp_path: Path,
) -> None:
    from imagekit.providers.local.qemu import VM, VMSpec

    url, repo = store
    ami = seed(aws_env, "bootable", [("/dev/xvda", test_disk)])
    run_export(repo, ami.image_id)
    files = restore_all(url, reader, "bootable", tmp_path / "boot.raw")
    with VM(VMSpec(disk=files[""], disk_format="raw"), tmp_path / "vm") as vm:
        assert vm.wait_for_http("/health", timeout=90).startswith(b"ok")


def test_corrupted_block_is_detected_and_fetched_again(
    aws_env: MotoAWS, store: tuple[str, Repository], reader: Identity, tmp_path: Path
) -> None:
    url, repo = store
    disk = disk_bytes(16, 4, holes=False)
    ami = seed(aws_env, "corrupt", [("/dev/xvda", disk)])
    aws_env.add_fault("GetSnapshotBlock", count=2, kind="corrupt")
    (result,) = run_export(repo, ami.image_id, concurrency=1)
    assert aws_env.counters()["GetSnapshotBlock"] == 4 + 2  # two blocks fetched twice
    assert result.volumes[0].blocks_read == 4
    files = restore_all(url, reader, "corrupt", tmp_path / "out.raw")
    assert_volume(files[""], disk, GIB)


def test_block_corrupted_every_time_fails_the_export(
    aws_env: MotoAWS, store: tuple[str, Repository]
) -> None:
    _, repo = store
    ami = seed(aws_env, "rotten", [("/dev/xvda", disk_bytes(17, 1, holes=False))])
    aws_env.add_fault("GetSnapshotBlock", count=10, kind="corrupt")
    with pytest.raises(ExportError, match="SHA-256 checksum"):
        run_export(repo, ami.image_id)
    assert repo.list_images() == []
