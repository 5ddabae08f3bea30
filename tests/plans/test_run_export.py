"""``run-export`` and ``status`` end to end: the AWS emulator over HTTP, two real local stores.

Nothing is mocked: AMIs are seeded through the EBS direct APIs, the CLI runs the job, and the
stores, status file, verified record and metrics file it leaves are read back.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import imagekit.cli.plan_cmds  # noqa: F401  (registers the commands on the CLI)
from imagekit.cli import main
from imagekit.store.backends.registry import open_backend
from imagekit.store.repository import Repository
from testbed.moto_aws import MotoAWS
from testbed.seed_ami import SeededAmi, VolumeSpec, seed_ami, seed_next_ami

pytestmark = pytest.mark.slow

BLOCK = 524_288
PASSPHRASE = "correct horse battery staple"


def disk(seed: int, blocks: int) -> bytes:
    rng = random.Random(seed)
    return b"".join(rng.randbytes(BLOCK) for _ in range(blocks))


PLAN = """\
version: 1
name: shop
aws: {{region: us-east-1, concurrency: 4}}
sources:
  web: {{tags: {{role: web}}}}
  worker: {{tags: {{role: worker}}, rpo: 2d}}
stores:
  primary: {{name: main, url: stores/main}}
  replicas:
    - {{name: {replica_name}, url: {replica_url}}}
retention: {{keep_last: 2}}
objectives: {{rpo: 26h}}
verify: {{sample_chunks: 3}}
"""


@pytest.fixture
def bench(aws: MotoAWS, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> MotoAWS:
    for key, value in aws.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("IMAGEKIT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("IMAGEKIT_PASSPHRASE", PASSPHRASE)
    for name in ("main", "far"):
        with open_backend(str(tmp_path / "stores" / name)) as backend:
            Repository.init(backend, passphrase=PASSPHRASE)
    return aws


def write_plan(tmp_path: Path, replica_url: str = "stores/far", name: str = "far") -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN.format(replica_url=replica_url, replica_name=name))
    return path


def seed(aws: MotoAWS, role: str, data: bytes) -> SeededAmi:
    ec2, ebs = aws.client("ec2"), aws.client("ebs")
    return seed_ami(ebs, ec2, f"{role}-1", [VolumeSpec("/dev/xvda", data)], tags={"role": role})


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    code = main([*args, "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else None, err


def state(tmp_path: Path, name: str) -> Path:
    return tmp_path / "state" / "plans" / "shop" / name


def test_run_export_end_to_end(
    bench: MotoAWS, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    web = seed(bench, "web", disk(1, 4))
    worker = seed(bench, "worker", disk(2, 3))
    plan = write_plan(tmp_path)

    code, report, err = cli(capsys, "run-export", "--plan", str(plan))
    assert code == 0, err
    assert report["run"]["ok"] and report["run"]["failures"] == []
    exports = {row["role"]: row for row in report["exports"]}
    assert {r: (e["ami"], e["mode"]) for r, e in exports.items()} == {
        "web": (web.image_id, "full"),
        "worker": (worker.image_id, "full"),
    }
    assert report["copies"][0]["store"] == "far" and len(report["copies"][0]["copied"]) == 2
    assert {v["store"] for v in report["verification"]} == {"main", "far"}
    rows = report["status"]["roles"]
    assert len(rows) == 4 and all(r["ok"] and r["verified"] == "sample" for r in rows)
    assert {r["ami"] for r in rows if r["role"] == "web"} == {web.image_id}

    # The status file is the report; the verified record names both repositories' images.
    assert json.loads(state(tmp_path, "status.json").read_text())["run"]["ok"] is True
    verified = json.loads(state(tmp_path, "verified.json").read_text())
    assert len(verified) == 2 and all(len(v["images"]) == 2 for v in verified.values())
    metrics = state(tmp_path, "metrics.prom").read_text()
    assert 'imagekit_export_success{plan="shop"} 1' in metrics
    assert 'imagekit_export_bytes_read{plan="shop",role="web"} 2097152' in metrics
    for role in ("web", "worker"):
        for store in ("main", "far"):
            assert (
                f'imagekit_objective_met{{plan="shop",role="{role}",store="{store}"}} 1' in metrics
            )
    assert 'imagekit_rpo_objective_seconds{plan="shop",role="worker"} 172800' in metrics

    # Second run, nothing new in AWS: nothing exported or copied again.
    code, again, err = cli(capsys, "run-export", "--plan", str(plan))
    assert code == 0, err
    assert {e["mode"] for e in again["exports"]} == {"current"}
    assert again["copies"][0]["copied"] == [] and again["copies"][0]["skipped"] == 2

    # Day 2: a new web AMI of the same lineage → an incremental export, copied on.
    ec2, ebs = bench.client("ec2"), bench.client("ebs")
    day2 = seed_next_ami(ebs, ec2, web, "web-2", {"/dev/xvda": {1: disk(3, 1)}})
    code, third, err = cli(capsys, "run-export", "--plan", str(plan))
    assert code == 0, err
    web_row = next(e for e in third["exports"] if e["role"] == "web")
    assert (web_row["ami"], web_row["mode"]) == (day2.image_id, "incremental")
    assert web_row["bytes_read"] == BLOCK

    code, status, err = cli(capsys, "status", "--plan", str(plan))
    assert code == 0, err
    assert status["ok"] and status["last_run"]["ok"]
    assert {r["ami"] for r in status["roles"] if r["role"] == "web"} == {day2.image_id}
    assert all(r["age_seconds"] < 600 for r in status["roles"])


def test_failure_is_named_and_others_proceed(
    bench: MotoAWS, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(bench, "web", disk(4, 2))
    seed(bench, "worker", disk(5, 2))
    plan = write_plan(tmp_path, replica_url="stores/nowhere", name="gone")

    code, report, err = cli(capsys, "run-export", "--plan", str(plan))
    assert code == 1
    assert "open gone:" in err and "no repository here" in err
    assert [f["step"] + " " + f["subject"] for f in report["run"]["failures"]] == ["open gone"]
    assert {e["mode"] for e in report["exports"]} == {"full"}  # the primary still got its export
    metrics = state(tmp_path, "metrics.prom").read_text()
    assert 'imagekit_export_success{plan="shop"} 0' in metrics
    assert 'imagekit_export_failures{plan="shop"} 1' in metrics
    assert "imagekit_export_last_success_timestamp_seconds" not in metrics  # never succeeded

    code, status, _ = cli(capsys, "status", "--plan", str(plan))
    assert code == 1
    gone = [r for r in status["roles"] if r["store"] == "gone"]
    assert len(gone) == 2 and all(not r["ok"] and "no repository" in r["error"] for r in gone)


def test_corrupt_store_fails_verification(
    bench: MotoAWS, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(bench, "web", disk(6, 2))
    seed(bench, "worker", disk(7, 2))
    plan = write_plan(tmp_path)
    assert cli(capsys, "run-export", "--plan", str(plan))[0] == 0
    # Flip a byte in the middle of every pack of the replica: its chunks no longer authenticate.
    for pack in (tmp_path / "stores" / "far" / "data").rglob("*"):
        if pack.is_file():
            data = bytearray(pack.read_bytes())
            data[len(data) // 3] ^= 0xFF
            pack.write_bytes(bytes(data))

    code, report, err = cli(capsys, "run-export", "--plan", str(plan), "--verify-all")
    assert code == 1 and "verify far:" in err
    far = [r for r in report["status"]["roles"] if r["store"] == "far"]
    assert all(r["verified"] is None and not r["ok"] for r in far)
    main_rows = [r for r in report["status"]["roles"] if r["store"] == "main"]
    assert all(r["verified"] == "all" for r in main_rows)


def test_a_verification_that_crashes_proves_nothing(
    bench: MotoAWS,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed(bench, "web", disk(10, 1))
    seed(bench, "worker", disk(11, 1))
    plan = write_plan(tmp_path)
    assert cli(capsys, "run-export", "--plan", str(plan), "--verify-all")[0] == 0
    from imagekit.plans import run_export

    real = run_export.verify

    def crashing(repo: Repository, **options: Any) -> Any:
        if repo.url.endswith("far"):
            raise RuntimeError("a bug in verify")
        return real(repo, **options)

    monkeypatch.setattr(run_export, "verify", crashing)
    code, report, err = cli(capsys, "run-export", "--plan", str(plan), "--verify-all")
    assert code == 1 and "unexpected RuntimeError" in err
    # The images verified by the first run are no longer counted as verified there.
    far = [r for r in report["status"]["roles"] if r["store"] == "far"]
    assert far and all(r["verified"] is None and not r["ok"] for r in far)
    assert all(r["verified"] == "all" for r in report["status"]["roles"] if r["store"] == "main")


def test_lock_prevents_overlap_and_stale_lock_is_taken(
    bench: MotoAWS, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(bench, "web", disk(8, 1))
    seed(bench, "worker", disk(9, 1))
    plan = write_plan(tmp_path)
    lock = state(tmp_path, "run.lock")
    lock.parent.mkdir(parents=True)
    # A live holder: another process takes the lock and waits.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys
                from pathlib import Path
                from imagekit.plans.records import RunLock
                with RunLock(Path({str(lock)!r}), "test"):
                    print("held", flush=True)
                    sys.stdin.readline()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        code, _, err = cli(capsys, "run-export", "--plan", str(plan))
        assert code == 1
        assert f"already running (pid {holder.pid} on" in err
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    # The holder is gone but (say it crashed) its lock file still names it: stale, taken.
    lock.write_text(json.dumps({"pid": holder.pid, "host": "elsewhere", "started": 1.0}))
    code, report, err = cli(capsys, "run-export", "--plan", str(plan))
    assert code == 0, err
    assert any(f"pid {holder.pid} on elsewhere" in w for w in report["run"]["warnings"])
    assert lock.read_text() == ""  # released
