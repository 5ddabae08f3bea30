"""``failover`` and ``rehearse`` end to end: real local stores, real QEMU boots of the test disk.

AWS is never reachable here: every AWS endpoint variable points at a closed port on loopback,
so any AWS call would fail the command. The ``null`` provider (a folder standing in for a
cloud, see ``providers/null.py``) runs the cases about failures and reports, where no boot is
needed; the ``local`` provider boots for real where the stack must come up.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import imagekit.cli.dr_cmds  # noqa: F401  (registers the commands on the CLI)
from imagekit.cli.app import main
from imagekit.errors import PlanError
from imagekit.plans.choose import choose_images
from imagekit.plans.load import load_text
from imagekit.plans.records import Verification, VerifiedRecord
from imagekit.plans.rehearse import rehearse
from imagekit.providers.null import NullProvider
from imagekit.providers.runs import RunStore
from imagekit.store.backends.registry import open_backend
from imagekit.store.copy import copy_images
from imagekit.store.ingest import ingest
from imagekit.store.manifest import ImageManifest, StoredImage
from imagekit.store.repository import Repository
from imagekit.store.sources import open_disk
from testbed.process import free_port

PASSPHRASE = "failover passphrase"
CLI = [
    sys.executable,
    "-c",
    "import sys, imagekit.cli.dr_cmds; from imagekit.cli.app import main; sys.exit(main())",
]

PLAN = """\
version: 1
name: shop
aws: {{region: us-east-1}}
sources:
  web: {{tags: {{role: web}}, instance_type: t3.micro}}
  worker: {{tags: {{role: worker}}}}
stores:
  primary: {{name: primary, url: stores/primary}}
  replicas:
    - {{name: replica, url: stores/replica}}
objectives: {{rpo: 26h, rto: 30m}}
targets:
  local:
    provider: local
    stack:
      web: {{ports: [22, 80], health: ["http:80/health~ok"], health_timeout: 180s}}
      worker:
        depends_on: [web]
        ports: [22, 80]
        health: ["http:80/health~ok"]
        health_timeout: 180s
  fake:
    provider: "null"  # quoted: a bare null is YAML for nothing
    settings: {{console: "IMAGEKIT-READY hostname=x"}}
    stack:
      web: {{health: ["serial:IMAGEKIT-READY"], health_timeout: 5s}}
      worker:
        depends_on: [web]
        health: ["{worker_check}"]
        health_timeout: {worker_timeout}
"""


def _ingest(url: str, disk: Path, names: list[str]) -> None:
    with open_backend(url) as backend:
        repo = Repository.init(backend, passphrase=PASSPHRASE)
        for name in names:
            with open_disk(disk) as opened:
                ingest(repo, [opened], name=name, source="test disk", metadata={"role": name})


def _replicate(src_url: str, dst_url: str) -> None:
    """The replica as run-export makes it: a copy (same creation times) of the primary."""
    with open_backend(src_url) as src_backend, open_backend(dst_url) as dst_backend:
        src = Repository.open(src_backend, passphrase=PASSPHRASE)
        dst = Repository.init(dst_backend, passphrase=PASSPHRASE)
        copy_images(src, dst)


@pytest.fixture
def bench(tmp_path: Path, test_disk: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder with both stores holding web and worker; AWS unreachable."""
    closed = f"http://127.0.0.1:{free_port()}"
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2", "AWS_ENDPOINT_URL_EBS"):
        monkeypatch.setenv(var, closed)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "unused")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "unused")
    monkeypatch.setenv("IMAGEKIT_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("IMAGEKIT_STATE_DIR", str(tmp_path / "state"))
    _ingest(str(tmp_path / "stores" / "primary"), test_disk, ["web", "worker"])
    _replicate(str(tmp_path / "stores" / "primary"), str(tmp_path / "stores" / "replica"))
    write_plan(tmp_path)
    return tmp_path


def write_plan(
    folder: Path, worker_check: str = "serial:IMAGEKIT-READY", timeout: str = "5s"
) -> Path:
    path = folder / "plan.yaml"
    path.write_text(PLAN.format(worker_check=worker_check, worker_timeout=timeout))
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main([*args, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


def runs_in(bench: Path) -> list[str]:
    return [r.run_id for r in RunStore(bench / "state").list()]


def _qemu_of(run_id: str) -> list[int]:
    """Live QEMU processes whose command line names the run (its files live in its folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if run_id in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _get(endpoint: dict[str, Any], path: str) -> str:
    url = f"http://{endpoint['host']}:{endpoint['port']}{path}"
    with urllib.request.urlopen(url, timeout=10) as answer:
        return str(answer.read().decode())


# -- choosing images (pure) ----------------------------------------------------------------------


def _image(image_id: str, name: str, created: datetime) -> StoredImage:
    manifest = ImageManifest(name=name, source="s", created=created, volumes=(), metadata={})
    return StoredImage(image_id, manifest)


def _plan() -> Any:
    loaded = load_text(PLAN.format(worker_check="tcp:22", worker_timeout="5s"), "plan.yaml")
    assert loaded.plan is not None, loaded.problems
    return loaded.plan


def test_choice_prefers_the_newest_verified_image_and_honours_at() -> None:
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    images = [
        _image("w1", "web", t0),
        _image("w2", "web", t0 + timedelta(days=1)),
        _image("w3", "web", t0 + timedelta(days=2)),  # newest, never verified
        _image("k1", "worker", t0),
    ]
    record = VerifiedRecord()
    record.mark("repo", "u", "w2", Verification("2026-11-02T03:00:00Z", "sample", 4))
    chosen = choose_images(_plan(), "local", images, record, "repo")
    assert chosen["web"].image.id == "w2" and chosen["web"].verified == "sample"
    assert chosen["worker"].image.id == "k1" and chosen["worker"].verified is None
    # Without a verified record (another host), the newest wins.
    assert choose_images(_plan(), "local", images, VerifiedRecord(), "repo")["web"].image.id == "w3"
    at = t0 + timedelta(hours=1)
    assert choose_images(_plan(), "local", images, record, "repo", at=at)["web"].image.id == "w1"
    with pytest.raises(PlanError, match=r"web \(no image 'web' frozen at or before"):
        choose_images(_plan(), "local", images, record, "repo", at=t0 - timedelta(days=1))


def test_choice_keeps_pinned_images_of_a_resumed_failover() -> None:
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    images = [
        _image("w1", "web", t0),
        _image("w2", "web", t0 + timedelta(1)),
        _image("k", "worker", t0),
    ]
    chosen = choose_images(_plan(), "local", images, VerifiedRecord(), "r", pinned={"web": "w1"})
    assert chosen["web"].image.id == "w1"
    chosen = choose_images(_plan(), "local", images, VerifiedRecord(), "r", pinned={"web": "gone"})
    assert chosen["web"].image.id == "w2"  # a pinned image no longer stored: choose afresh


# -- dry run and bad input -----------------------------------------------------------------------


def test_dry_run_names_images_and_waves_and_changes_nothing(
    bench: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, doc = run_cli(
        capsys, "failover", "--plan", str(bench / "plan.yaml"), "--target", "local", "--dry-run"
    )
    assert code == 0
    actions = doc["actions"]
    assert actions[0].startswith("read images from store primary")
    web = next(i for i, a in enumerate(actions) if a.startswith("wave 1, web: image"))
    worker = next(i for i, a in enumerate(actions) if a.startswith("wave 2, worker: image"))
    assert web < worker
    assert any("create node web-RUN-1 (t3.micro)" in a for a in actions)
    assert not (bench / "state" / "runs").exists()
    assert not (bench / "state" / "plans" / "shop" / "failover" / "local.json").exists()


def test_unknown_target_and_bad_time_are_usage_errors(
    bench: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = str(bench / "plan.yaml")
    assert main(["failover", "--plan", plan, "--target", "mars"]) == 2
    assert "no target 'mars'" in capsys.readouterr().err
    assert main(["failover", "--plan", plan, "--target", "local", "--at", "yesterday"]) == 2
    assert "--at 'yesterday': not a time" in capsys.readouterr().err


# -- rehearsals (null provider: no boot needed) --------------------------------------------------


def test_rehearsal_with_a_failing_role_tears_everything_down_and_reports(
    bench: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = write_plan(bench, worker_check="serial:NEVER-PRINTED", timeout="1s")
    reports = bench / "reports"
    code, doc = run_cli(
        capsys, "rehearse", "--plan", str(plan), "--target", "fake", "--report-dir", str(reports)
    )
    assert code == 1
    assert doc["healthy"] is False and "worker did not come up" in doc["error"]
    by_role = {r["role"]: r for r in doc["roles"]}
    assert by_role["web"]["healthy"] is True and by_role["worker"]["status"] == "failed"
    assert doc["torn_down"] is True
    # Nothing left: no run records, no resources in the fake cloud, no rehearsal journal.
    assert runs_in(bench) == []
    assert list((bench / "state" / "null").glob("*/*")) == []
    assert list((bench / "state" / "plans" / "shop" / "failover").glob("rehearsals/*.json")) == []
    report = json.loads((reports / "report.json").read_text())
    assert report["healthy"] is False
    assert report["objectives"]["rto_met"] is False  # fast, but it never recovered
    assert [s["name"] for s in report["stages"]] == [
        "fetch", "decrypt", "convert", "adapt", "upload", "import", "boot", "healthy",
    ]  # fmt: skip
    assert "NOT healthy" in (reports / "report.html").read_text()

    # A passing rehearsal into the same folder: its page draws the trend of both.
    plan = write_plan(bench)
    code, doc = run_cli(
        capsys, "rehearse", "--plan", str(plan), "--target", "fake", "--report-dir", str(reports)
    )
    assert code == 0 and doc["healthy"] is True
    assert doc["rpo_seconds"] is not None and doc["rpo_seconds"] >= 0
    assert doc["rto_seconds"] > 0 and sum(s["seconds"] for s in doc["stages"]) <= doc["rto_seconds"]
    page = (reports / "report.html").read_text()
    assert "<polyline" in page and "fewer than two rehearsals" not in page
    assert len(list(reports.glob("rehearsal-*.json"))) == 2
    assert runs_in(bench) == []


def test_rehearsal_interrupted_tears_down_then_reraises(
    bench: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imagekit.plans.load import load_plan

    calls = {"n": 0}
    original = NullProvider.wait_healthy

    def interrupt_second(self: NullProvider, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # Ctrl-C while the worker waits for health
        return original(self, *args, **kwargs)

    monkeypatch.setattr(NullProvider, "wait_healthy", interrupt_second)
    plan = load_plan(bench / "plan.yaml")
    with pytest.raises(KeyboardInterrupt):
        rehearse(plan, "fake", state_dir=bench / "state", report_dir=bench / "reports")
    assert calls["n"] == 2
    assert runs_in(bench) == []
    assert list((bench / "state" / "null").glob("*/*")) == []
    report = json.loads((bench / "reports" / "report.json").read_text())
    assert report["error"] == "interrupted" and report["torn_down"] is True


def test_a_killed_rehearsals_leftovers_are_removed_by_the_next(bench: Path) -> None:
    from imagekit.plans.failover import Journal
    from imagekit.plans.load import load_plan
    from imagekit.providers.boot import BootOptions, boot
    from imagekit.providers.sources import FileImageSource

    plan = load_plan(bench / "plan.yaml")
    state = bench / "state"
    provider = NullProvider(state_dir=state, settings={"console": "IMAGEKIT-READY"})
    (bench / "disk.raw").write_bytes(b"\0" * 1024 * 1024)
    source = FileImageSource(bench / "disk.raw", source_format="raw")
    runs = RunStore(state)
    record = boot(provider, source, BootOptions(checks=("serial:IMAGEKIT-READY",)), runs)
    folder = state / "plans" / "shop" / "failover" / "rehearsals"
    journal = Journal.new(folder / "20261101T000000Z.json", plan, "fake", "rehearsal")
    journal.set_role("web", run_id=record.run_id, status="healthy")  # then the process died
    report = rehearse(plan, "fake", state_dir=state, report_dir=bench / "reports")
    assert report["healthy"] is True
    assert runs_in(bench) == []
    assert not journal.path.exists()


def test_a_second_failover_of_the_same_plan_and_target_refuses_while_one_runs(
    bench: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two operators on the bad day: the second is told who holds the stack, and boots nothing.
    lock = bench / "state" / "plans" / "shop" / "failover" / "fake.failover.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from imagekit.plans.records import RunLock\n"
            f"with RunLock(Path({str(lock)!r}), 'failover of plan shop to fake'):\n"
            "    print('held', flush=True); sys.stdin.readline()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        code = main(["failover", "--plan", str(bench / "plan.yaml"), "--target", "fake"])
        err = capsys.readouterr().err
        assert code == 1
        assert "failover of plan shop to fake is already running" in err
        assert f"pid {holder.pid}" in err
        assert runs_in(bench) == []
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    # Released: the next one runs.
    code, doc = run_cli(capsys, "failover", "--plan", str(bench / "plan.yaml"), "--target", "fake")
    assert code == 0 and doc["healthy"] is True


# -- failover for real (local QEMU) --------------------------------------------------------------


@pytest.mark.slow
def test_failover_from_the_replica_with_aws_unreachable_then_rerun_then_teardown(
    bench: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.rmtree(bench / "stores" / "primary")  # the primary store is gone
    plan = str(bench / "plan.yaml")
    code, doc = run_cli(capsys, "failover", "--plan", plan, "--target", "local")
    assert code == 0, doc
    assert doc["store"] == "replica" and "store primary" in doc["fallbacks"][0]
    roles = {r["role"]: r for r in doc["roles"]}
    assert [r["role"] for r in doc["roles"]] == ["web", "worker"]
    for role in roles.values():
        http = next(e for e in role["endpoints"] if e["guest_port"] == 80)
        assert _get(http, "/health").startswith("ok ")
    first = runs_in(bench)
    assert len(first) == 2

    # Running it again changes nothing: the healthy stack is kept, no node is booted twice.
    code, again = run_cli(capsys, "failover", "--plan", plan, "--target", "local")
    assert code == 0 and runs_in(bench) == first
    assert [r["run_id"] for r in again["roles"]] == [r["run_id"] for r in doc["roles"]]

    code, ended = run_cli(capsys, "failover", "--plan", plan, "--target", "local", "--teardown")
    assert code == 0 and sorted(ended["torn_down"]) == sorted(first)
    assert runs_in(bench) == []
    assert all(_qemu_of(run_id) == [] for run_id in first)


@pytest.mark.slow
def test_an_interrupted_failover_resumes_without_duplicating_nodes(
    bench: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = str(bench / "plan.yaml")
    journal = bench / "state" / "plans" / "shop" / "failover" / "local.json"
    proc = subprocess.Popen(
        [*CLI, "failover", "--plan", plan, "--target", "local"],
        env=os.environ.copy(),
        stderr=subprocess.DEVNULL,
    )
    killed_run = None
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and killed_run is None:
            time.sleep(0.05)
            doc = json.loads(journal.read_text()) if journal.exists() else {}
            worker = doc.get("roles", {}).get("worker", {})
            run_id = worker.get("run_id")
            record = bench / "state" / "runs" / str(run_id) / "run.json"
            # Kill once the worker's node exists: the worst moment, a VM nobody tracks but us.
            if run_id and record.exists() and '"node"' in record.read_text():
                killed_run = run_id
        assert killed_run, "the worker never got a node"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    web_run = json.loads(journal.read_text())["roles"]["web"]["run_id"]
    assert _qemu_of(killed_run), "the killed failover's worker VM should still be running"

    code, doc = run_cli(capsys, "failover", "--plan", plan, "--target", "local")
    assert code == 0, doc
    roles = {r["role"]: r for r in doc["roles"]}
    assert roles["web"]["run_id"] == web_run  # kept
    assert roles["worker"]["run_id"] != killed_run  # the half-booted one was torn down
    assert sorted(runs_in(bench)) == sorted([web_run, roles["worker"]["run_id"]])
    assert _qemu_of(killed_run) == []
    assert main(["failover", "--plan", plan, "--target", "local", "--teardown"]) == 0
    assert runs_in(bench) == []


def test_a_rehearsal_misconfigured_is_a_usage_error_before_anything_happens(
    bench: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (
        (bench / "plan.yaml")
        .read_text()
        .replace(
            '    provider: "null"',
            '    provider: "null"\n    credentials: {env: [FAKE_CLOUD_TOKEN]}',
        )
    )
    (bench / "plan.yaml").write_text(text)
    monkeypatch.delenv("FAKE_CLOUD_TOKEN", raising=False)
    reports = bench / "reports"
    args = ["rehearse", "--plan", str(bench / "plan.yaml"), "--report-dir", str(reports)]
    assert main([*args, "--target", "fake"]) == 2
    assert "target fake needs FAKE_CLOUD_TOKEN" in capsys.readouterr().err
    assert main([*args, "--target", "mars"]) == 2
    assert "no target 'mars'" in capsys.readouterr().err
    assert not reports.exists() and runs_in(bench) == []


def test_a_rehearsal_that_never_became_healthy_did_not_meet_its_rto() -> None:
    """However fast it failed: a stack that never came up recovered nothing."""
    from types import SimpleNamespace

    from imagekit.plans.rehearse import build_report

    plan = SimpleNamespace(objectives=SimpleNamespace(rto=3600.0, rpo=86400.0))
    for healthy, met in ((False, False), (True, True)):
        outcome = SimpleNamespace(
            as_dict=lambda h=healthy: {"healthy": h, "rto_seconds": 12.0, "rpo_seconds": 60.0}
        )
        report = build_report(plan, outcome, True, [])  # type: ignore[arg-type]
        assert report["objectives"]["rto_met"] is met


def _seen_then_withheld(bench: Path, capsys: pytest.CaptureFixture[str]) -> StoredImage:
    """A newer web image reaches the primary and this host sees it there (a dry run lists the
    stores); then the primary's provider withholds it. The withheld image."""
    plan = str(bench / "plan.yaml")
    code, doc = run_cli(capsys, "failover", "--plan", plan, "--target", "local", "--dry-run")
    assert code == 0 and doc["actions"][0].startswith("read images from store primary")
    with open_backend(str(bench / "stores" / "primary")) as backend:
        repo = Repository.open(backend, passphrase=PASSPHRASE)
        old = repo.resolve("web")
        newer = repo.write_image(
            replace(old.manifest, created=old.manifest.created + timedelta(hours=1))
        )[0]
    code, doc = run_cli(capsys, "failover", "--plan", plan, "--target", "local", "--dry-run")
    assert code == 0 and any(newer.id[:12] in a for a in doc["actions"])
    (bench / "stores" / "primary" / "images" / newer.id).unlink()
    return newer


def test_a_rehearsal_boots_from_the_replica_when_the_primary_withholds(
    bench: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    newer = _seen_then_withheld(bench, capsys)
    code, doc = run_cli(
        capsys, "rehearse", "--plan", str(bench / "plan.yaml"), "--target", "fake",
        "--report-dir", str(bench / "reports"),
    )  # fmt: skip
    assert code == 0 and doc["store"] == "replica"
    assert "rolled back" in doc["fallbacks"][0] and newer.id[:12] in doc["fallbacks"][0]


def test_a_primary_withholding_its_newest_image_loses_to_the_replica(
    bench: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The primary now serves an older web image than this host saw there, and the replica
    # (equally new otherwise) is used instead.
    newer = _seen_then_withheld(bench, capsys)
    plan = str(bench / "plan.yaml")
    code, doc = run_cli(capsys, "failover", "--plan", plan, "--target", "local", "--dry-run")
    assert code == 0
    assert doc["actions"][0].startswith("pass over store primary")
    assert "rolled back" in doc["actions"][0] and newer.id[:12] in doc["actions"][0]
    assert any(a.startswith("read images from store replica") for a in doc["actions"])


def test_a_plan_pinning_other_keys_cannot_open_the_store(bench: Path) -> None:
    """The plan's fingerprint is the trust anchor: a store whose config and slots name other
    keys (replaced wholesale by whoever controls the bucket) is refused, naming both values."""
    from imagekit.errors import IntegrityError
    from imagekit.plans.load import load_plan
    from imagekit.plans.stores import open_store

    plan = load_plan(bench / "plan.yaml")
    with open_backend(str(bench / "stores" / "primary")) as backend:
        real = Repository.open(backend, passphrase=PASSPHRASE).fingerprint
    with open_backend(str(bench / "stores" / "replica")) as backend:
        other = Repository.open(backend, passphrase=PASSPHRASE).fingerprint
    spec = plan.stores.primary.model_copy(update={"fingerprint": other})
    with pytest.raises(IntegrityError) as err, open_store(spec, bench / "state"):
        pass
    assert real in str(err.value) and other in str(err.value)
    pinned = plan.stores.primary.model_copy(update={"fingerprint": real})
    with open_store(pinned, bench / "state") as repo:
        assert repo.fingerprint == real
