"""``run-export`` of a plan whose role is a running instance, ``status`` and the metrics, then a
failover of that role with AWS unreachable. The AWS emulator over HTTP, real local stores."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import imagekit.cli.dr_cmds
import imagekit.cli.plan_cmds  # noqa: F401
from imagekit.cli import main
from imagekit.store.backends.registry import open_backend
from imagekit.store.repository import Repository
from testbed.moto_aws import MotoAWS
from testbed.process import free_port
from testbed.seed_ami import VolumeSpec, pattern_block, seed_ami
from testbed.seed_instance import DataVolume, SeededInstance, launch_instance

pytestmark = pytest.mark.slow

PASSPHRASE = "instance passphrase"
BLOCK = 524_288

PLAN = """\
version: 1
name: shop
aws: {region: us-east-1, concurrency: 4}
sources:
  db: {instance: {tags: {app: db}}, rpo: 2h}
stores:
  primary: {name: main, url: stores/main}
schedule: {every: 1h, at: "00:05"}
objectives: {rpo: 26h}
verify: {sample_chunks: 4}
targets:
  fake:
    provider: "null"
    settings: {console: "IMAGEKIT-READY hostname=x"}
    stack:
      db: {health: ["serial:IMAGEKIT-READY"], health_timeout: 5s}
"""


@pytest.fixture
def bench(aws: MotoAWS, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> MotoAWS:
    for key, value in aws.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("IMAGEKIT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("IMAGEKIT_PASSPHRASE", PASSPHRASE)
    with open_backend(str(tmp_path / "stores" / "main")) as backend:
        Repository.init(backend, passphrase=PASSPHRASE)
    (tmp_path / "plan.yaml").write_text(PLAN)
    monkeypatch.chdir(tmp_path)
    return aws


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    code = main([*args, "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else None, err


def launch(aws: MotoAWS, test_disk: Path) -> SeededInstance:
    ec2, ebs = aws.client("ec2"), aws.client("ebs")
    ami = seed_ami(ebs, ec2, "db-base", [VolumeSpec("/dev/xvda", test_disk)])
    return launch_instance(
        ec2, ami, data_volumes=[DataVolume("/dev/sdf")], tags={"app": "db", "Name": "db-1"}
    )


def test_instance_role_hourly_status_metrics_and_failover(
    bench: MotoAWS,
    test_disk: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seeded = launch(bench, test_disk)
    data = seeded.volumes["/dev/sdf"]
    bench.write_volume(data, {i: pattern_block(f"row-{i}") for i in range(6)})

    code, first, err = cli(capsys, "run-export", "--plan", "plan.yaml")
    assert code == 0, err
    (row,) = first["exports"]
    assert (row["role"], row["instance"], row["ami"]) == ("db", seeded.instance_id, seeded.image_id)
    assert row["mode"] == "full"

    bench.write_volume(data, {2: pattern_block("row-2-v2"), 40: pattern_block("row-40")})
    bench.reset_counters()
    code, second, err = cli(capsys, "run-export", "--plan", "plan.yaml")
    assert code == 0, err
    (row,) = second["exports"]
    assert row["mode"] == "incremental" and row["blocks_read"] == 2
    assert row["bytes_read"] == 2 * BLOCK == bench.counters()["GetSnapshotBlock"] * BLOCK
    assert set(row["snapshots_deleted"]) == set(first["exports"][0]["snapshot_set"].values())

    # The RPO is measured from the snapshot set's start, not from the end of the export.
    started = min(
        s["StartTime"]
        for s in bench.client("ec2").describe_snapshots(
            SnapshotIds=list(row["snapshot_set"].values())
        )["Snapshots"]
    )
    code, status, err = cli(capsys, "status", "--plan", "plan.yaml")
    assert code == 0, err
    (db,) = status["roles"]
    assert db["instance"] == seeded.instance_id and db["ok"]
    when = datetime.fromisoformat(db["point_in_time"].replace("Z", "+00:00"))
    assert abs((when - started).total_seconds()) < 1
    assert db["rpo_objective_seconds"] == 7200 and db["age_seconds"] < 600
    metrics = (tmp_path / "state" / "plans" / "shop" / "metrics.prom").read_text()
    labels = '{plan="shop",role="db",store="main"}'
    stamp = f"imagekit_image_timestamp_seconds{labels} {int(when.timestamp())}"
    assert stamp in metrics

    # The bad day: AWS unreachable, the role whose source is an instance comes up from the store.
    closed = f"http://127.0.0.1:{free_port()}"
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2", "AWS_ENDPOINT_URL_EBS"):
        monkeypatch.setenv(var, closed)
    code, failover, err = cli(capsys, "failover", "--plan", "plan.yaml", "--target", "fake")
    assert code == 0, err
    (booted,) = failover["roles"]
    assert booted["role"] == "db" and booted["healthy"] is True
    assert booted["image_id"] == row["image_id"]  # the newer data is what came up
    assert booted["point_in_time"] == db["point_in_time"]
    code, _, err = cli(capsys, "failover", "--plan", "plan.yaml", "--target", "fake", "--teardown")
    assert code == 0, err
