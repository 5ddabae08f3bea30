"""The pure core of status and metrics, and the run lock, without any store or AWS."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from imagekit.errors import PlanError
from imagekit.plans import metrics
from imagekit.plans.load import load_text
from imagekit.plans.model import Plan
from imagekit.plans.records import RunLock, Verification, VerifiedRecord, write_atomic
from imagekit.plans.status import StoreListing, render, summarize
from imagekit.store.manifest import ImageManifest, StoredImage

NOW = datetime(2024, 6, 2, 12, 0, tzinfo=UTC)
PLAN = """\
version: 1
name: shop
aws: {region: eu-west-1}
sources:
  web: {tags: {role: web}}
  db: {tags: {role: db}, image_name: database, rpo: 2d}
stores:
  primary: {name: main, url: /srv/main}
  replicas: [{name: far, url: /srv/far}]
objectives: {rpo: 26h}
"""


def plan() -> Plan:
    loaded = load_text(PLAN, "plan.yaml")
    assert loaded.plan is not None, loaded.problems
    return loaded.plan


def image(
    image_id: str, name: str, ami_created: datetime | None, exported: datetime
) -> StoredImage:
    meta = {}
    if ami_created is not None:
        meta = {"ami": {"image_id": f"ami-{image_id}", "creation_date": ami_created.isoformat()}}
    return StoredImage(image_id, ImageManifest(name, exported, "aws:x", (), metadata=meta))


def test_summarize_ages_verification_and_objectives() -> None:
    old_web = image("01", "web", NOW - timedelta(hours=50), NOW - timedelta(hours=49))
    new_web = image("02", "web", NOW - timedelta(hours=3), NOW - timedelta(hours=1))
    db = image("03", "database", None, NOW - timedelta(hours=30))  # no AMI date: export time
    verified = VerifiedRecord()
    verified.mark("r1", "/srv/main", "02", Verification("2024-06-02T11:00:00Z", "sample", 3))
    verified.mark("r1", "/srv/main", "03", Verification("2024-06-02T11:00:00Z", "all", 9))
    listings = [
        StoreListing("main", "r1", (old_web, new_web, db)),
        StoreListing("far", error="store unreachable"),
    ]
    report = summarize(plan(), listings, verified, NOW)
    rows = {(r.role, r.store): r for r in report.roles}
    web = rows[("web", "main")]
    assert (web.image_id, web.age, web.verified, web.ok) == ("02", 3 * 3600, "sample", True)
    assert web.ami == "ami-02"
    database = rows[("db", "main")]
    assert (database.age, database.rpo_objective, database.ok) == (30 * 3600, 2 * 86400, True)
    far = rows[("web", "far")]
    assert not far.ok and far.error == "store unreachable"
    assert not report.ok and [f"{r.role}@{r.store}" for r in report.failing()] == [
        "web@far",
        "db@far",
    ]
    text = render(report)
    assert "OBJECTIVES NOT MET" in text and "3h" in text and "(store unreachable)" in text


def test_unverified_or_stale_image_fails_the_objective() -> None:
    stale = image("04", "web", NOW - timedelta(hours=27), NOW)
    fresh_unverified = image("05", "database", NOW - timedelta(hours=1), NOW)
    verified = VerifiedRecord()
    verified.mark("r1", "", "04", Verification("t", "sample", 1))
    report = summarize(
        plan(), [StoreListing("main", "r1", (stale, fresh_unverified))], verified, NOW
    )
    rows = {r.role: r for r in report.roles}
    assert not rows["web"].rpo_met and rows["web"].verified == "sample"
    assert rows["db"].rpo_met and rows["db"].verified is None and not rows["db"].ok


def test_a_rolled_back_store_fails_the_objective_and_says_why() -> None:
    web = image("02", "web", NOW - timedelta(hours=3), NOW - timedelta(hours=1))
    verified = VerifiedRecord()
    verified.mark("r1", "/srv/main", "02", Verification("2024-06-02T11:00:00Z", "sample", 3))
    finding = "/srv/main: lineage 'web' rolled back or withheld: this host saw image 09 ..."
    listing = StoreListing("main", "r1", (web,), rollbacks={"web": finding})
    report = summarize(plan(), [listing], verified, NOW)
    row = next(r for r in report.roles if r.role == "web")
    assert row.rpo_met and row.verified and not row.ok
    assert row.as_dict()["rollback"] == finding
    text = render(report)
    assert "OBJECTIVES NOT MET" in text and f"ROLLBACK: {finding}" in text


def test_metrics_text() -> None:
    new_web = image("02", "web", NOW - timedelta(hours=3), NOW)
    verified = VerifiedRecord()
    verified.mark("r1", "", "02", Verification("t", "sample", 3))
    report = summarize(plan(), [StoreListing("main", "r1", (new_web,))], verified, NOW)
    started = NOW.timestamp()
    run = metrics.RunFigures(
        plan='sh"op',
        started=started,
        finished=started + 12.5,
        ok=False,
        failures=2,
        last_success=1_700_000_000.0,
        bytes_read={"web": 1048576},
        bytes_uploaded={"main": 2048, "far": 0},
    )
    lines = metrics.render(run, report).splitlines()
    assert 'imagekit_export_duration_seconds{plan="sh\\"op"} 12.5' in lines
    assert 'imagekit_export_last_success_timestamp_seconds{plan="sh\\"op"} 1700000000' in lines
    assert 'imagekit_export_success{plan="sh\\"op"} 0' in lines
    assert 'imagekit_export_bytes_uploaded{plan="sh\\"op",store="far"} 0' in lines
    assert 'imagekit_rpo_seconds{plan="sh\\"op",role="web",store="main"} 10800' in lines
    point = (NOW - timedelta(hours=3)).timestamp()
    assert (
        f'imagekit_image_timestamp_seconds{{plan="sh\\"op",role="web",store="main"}} {point:.0f}'
        in lines
    )
    assert 'imagekit_image_verified{plan="sh\\"op",role="db",store="main"} 0' in lines
    # Every family is announced once, before its samples, as the text format requires.
    names = [line.split()[2] for line in lines if line.startswith("# TYPE")]
    assert len(names) == len(set(names))
    for line in lines:
        if not line.startswith("#"):
            assert line.split("{")[0] in names


def test_atomic_write_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out" / "metrics.prom"
    write_atomic(target, "a 1\n")
    write_atomic(target, "a 2\n")
    assert target.read_text() == "a 2\n"
    assert [p.name for p in target.parent.iterdir()] == ["metrics.prom"]


def test_run_lock_in_process(tmp_path: Path) -> None:
    path = tmp_path / "run.lock"
    with RunLock(path, "run-export of plan shop") as held:
        assert held.stale is None
        assert json.loads(path.read_text())["pid"] == os.getpid()
        with pytest.raises(PlanError, match=rf"already running \(pid {os.getpid()} on"):
            RunLock(path, "run-export of plan shop").__enter__()
    assert path.read_text() == ""
    with RunLock(path, "x") as again:  # released: free to take, nothing stale
        assert again.stale is None


def test_verified_record_round_trip(tmp_path: Path) -> None:
    record = VerifiedRecord()
    record.mark("r1", "/a", "img1", Verification("t1", "sample", 3))
    record.mark("r1", "/a", "img2", Verification("t2", "all", 5))
    record.keep_only("r1", ["img2"])
    record.save(tmp_path / "v.json")
    loaded = VerifiedRecord.load(tmp_path / "v.json")
    assert loaded.get("r1", "img1") is None
    assert loaded.get("r1", "img2") == Verification("t2", "all", 5)
    assert loaded.as_dict()["r1"]["url"] == "/a"
