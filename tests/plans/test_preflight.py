"""The nightly guest preflight: a blocker is found the night it appears, not at the outage.

End to end (slow): a real Debian AMI configured as Debian's EC2 image on a UEFI-only disk is
seeded into the AWS emulator and exported by ``run-export`` of a plan with a GCE target (UEFI
guests boot there) and a Rackspace target (Xen starts guests through the BIOS only). The run
must inspect the image, fail naming the Rackspace blocker, and write it into the status file,
``imagekit status`` and the metrics; a second run must not inspect the unchanged image again; a
host holding only a writer key must say it skipped. The pure parts (the summary, the metrics
family) are tested without any of that.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import imagekit.cli.plan_cmds  # noqa: F401  (registers the commands on the CLI)
from imagekit.cli import main
from imagekit.plans import metrics, preflight
from imagekit.plans.load import load_plan
from imagekit.plans.preflight import Verdict, guest_targets
from imagekit.plans.records import VerifiedRecord
from imagekit.plans.status import StoreListing, render, summarize
from imagekit.store.backends.registry import open_backend
from imagekit.store.identity import Identity
from imagekit.store.repository import Repository
from testbed.debian.guests import debian_guest, seed_guest_ami
from testbed.moto_aws import MotoAWS

PASSPHRASE = "preflight passphrase"
PLAN = """\
version: 1
name: shop
aws: {region: us-east-1}
sources:
  web: {tags: {variant: ec2-uefi}}
stores:
  primary: {name: main, url: stores/main}
objectives: {rpo: 1000d}
verify: {sample_chunks: 1}
targets:
  gcp:
    provider: gcp
    settings: {project: p, zone: europe-west1-b, bucket: b}
    stack: {web: {}}
  rackspace:
    provider: rackspace
    stack: {web: {}}
  bench:
    provider: local
    stack: {web: {}}
"""


def write_plan(tmp_path: Path) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN)
    return path


def test_only_the_cloud_targets_are_judged_nightly(tmp_path: Path) -> None:
    plan = load_plan(write_plan(tmp_path))
    assert guest_targets(plan) == {"gcp": "gcp", "rackspace": "rackspace"}  # not the bench


def test_a_blocked_guest_fails_the_objectives_and_shows_in_status_and_metrics(
    tmp_path: Path,
) -> None:
    plan = load_plan(write_plan(tmp_path))
    now = datetime(2026, 12, 2, tzinfo=UTC)
    ok = Verdict("web", "gcp", "ab" * 32, True)
    bad = Verdict("web", "rackspace", "ab" * 32, False, ("boot-mode: UEFI only",))
    stale = Verdict("web", "gcp", "cd" * 32, False, ("old image",))
    report = summarize(plan, [StoreListing("main", error="x")], VerifiedRecord({}), now)
    assert report.guests == ()  # no image: nothing of it is judged
    # Verdicts count only for the image that is newest now.
    from imagekit.plans.status import RoleStatus, StatusReport

    row = RoleStatus("web", "main", 1e9, image_id="ab" * 32, age=1.0, verified="sample")
    full = StatusReport("shop", now, (row,), None, (ok, bad))
    assert not full.ok and StatusReport("shop", now, (row,), None, (ok,)).ok
    text = render(full)
    assert f"guest web on rackspace ({'ab' * 6}): BLOCKED: boot-mode: UEFI only" in text
    assert f"guest web on gcp ({'ab' * 6}): bootable" in text
    figures = metrics.RunFigures("shop", 0.0, 1.0, True, 0, None, {}, {})
    prom = metrics.render(figures, full)
    assert 'imagekit_guest_bootable{plan="shop",role="web",target="rackspace"} 0' in prom
    assert 'imagekit_guest_bootable{plan="shop",role="web",target="gcp"} 1' in prom
    assert stale not in full.guests
    assert Verdict.from_dict(bad.as_dict()) == bad


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_run_export_finds_the_blocker_the_night_it_appears(
    aws: MotoAWS,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    guest = debian_guest("ec2-uefi")
    if guest.missing():
        pytest.skip("the Debian guests are built as root (`make debian-images`)")
    for key, value in aws.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("IMAGEKIT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("IMAGEKIT_PASSPHRASE", PASSPHRASE)
    with open_backend(str(tmp_path / "stores" / "main")) as backend:
        Repository.init(backend, passphrase=PASSPHRASE)
    seed_guest_ami(aws.client("ebs"), aws.client("ec2"), guest)
    plan = write_plan(tmp_path)
    inspected: list[str] = []
    real = preflight.inspect_image

    def counting(repo: Any, image: Any, *args: Any) -> Any:
        inspected.append(image.id)
        return real(repo, image, *args)

    monkeypatch.setattr(preflight, "inspect_image", counting)

    assert main(["run-export", "--plan", str(plan), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    (failure,) = report["run"]["failures"]
    assert (failure["step"], failure["subject"]) == ("preflight", "web")
    assert "not bootable on rackspace: boot-mode:" in failure["message"]
    guests = {g["target"]: g for g in report["status"]["guests"]}
    assert guests["gcp"]["bootable"] is True and guests["rackspace"]["bootable"] is False
    assert set(guests) == {"gcp", "rackspace"} and len(inspected) == 1
    prom = (tmp_path / "state" / "plans" / "shop" / "metrics.prom").read_text()
    assert 'imagekit_guest_bootable{plan="shop",role="web",target="rackspace"} 0' in prom

    # status reads the verdicts without inspecting anything; exit 1: the objectives fail.
    assert main(["status", "--plan", str(plan)]) == 1
    assert "guest web on rackspace" in capsys.readouterr().out

    # The next night: the same image, judged already.
    assert main(["run-export", "--plan", str(plan), "--json"]) == 1
    again = json.loads(capsys.readouterr().out)
    assert len(inspected) == 1
    assert [f["step"] for f in again["run"]["failures"]] == ["preflight"]


def test_a_write_only_host_says_it_skipped(tmp_path: Path) -> None:
    from imagekit.plans.preflight import preflight as run_preflight

    plan = load_plan(write_plan(tmp_path))
    reader, writer = Identity.generate(), Identity.generate()
    with open_backend(str(tmp_path / "store")) as backend:
        Repository.init(backend, recipients=[reader.recipient], writers=[writer.recipient])
        repo = Repository.open(backend, identity=writer)
        warnings: list[str] = []
        assert run_preflight(plan, repo, [], tmp_path, warnings) == []
    assert len(warnings) == 1 and "write-only key" in warnings[0]
