"""``rehearse --twin`` end to end: a GCE target's stack rehearsed here, from a real store.

A real Debian 12 guest configured as Debian's EC2 image (it trusts only the EC2 datasource) is
ingested into a local store; the plan's target is `gcp` (a cloud no test can reach).
`rehearse --twin` must adapt the restored copy for GCE (the guest stage, timed as the `adapt`
stage and listed in the report), boot its stack on `gcp-twin`, prove it healthy with an SSH
login, tear it down and report it as `gcp-twin`, asking for none of the target's credentials
and making no AWS or cloud call.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import imagekit.cli.dr_cmds  # noqa: F401  (registers the commands on the CLI)
from imagekit.cli.app import main
from imagekit.store.backends.registry import open_backend
from imagekit.store.ingest import ingest
from imagekit.store.repository import Repository
from imagekit.store.sources import open_disk
from tests.providers.twins.conftest import debian_disk, imagekit_namespaces

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

PASSPHRASE = "twin rehearsal passphrase"
PLAN = """\
version: 1
name: shop
aws: {region: us-east-1}
sources:
  web: {tags: {role: web}, instance_type: t3.small}
stores:
  primary: {name: primary, url: stores/primary}
objectives: {rpo: 1000d, rto: 30m}
targets:
  gcp:
    provider: gcp
    settings: {project: shop-dr, zone: europe-west1-b, bucket: shop-dr-import}
    credentials: {env: [IMAGEKIT_TEST_GCP_KEY_NEVER_SET]}
    stack:
      web: {size: e2-small, ports: [22], health: ["ssh:true"], health_timeout: 300s}
"""


def test_rehearse_twin_runs_the_gcp_stack_on_gcp_twin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    disk = debian_disk("ec2")  # configured as Debian's EC2 AMI: only adapted does it come up
    monkeypatch.setenv("IMAGEKIT_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("IMAGEKIT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("IMAGEKIT_TEST_GCP_KEY_NEVER_SET", raising=False)
    with open_backend(str(tmp_path / "stores" / "primary")) as backend:
        repo = Repository.init(backend, passphrase=PASSPHRASE)
        with open_disk(disk) as opened:
            ingest(repo, [opened], name="web", source="debian-ec2", metadata={"role": "web"})
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)

    # Without --twin the target needs its cloud's credentials: a usage error, nothing booted.
    assert main(["rehearse", "--plan", str(plan), "--target", "gcp", "--json"]) == 2
    assert "needs IMAGEKIT_TEST_GCP_KEY_NEVER_SET" in capsys.readouterr().err

    before = imagekit_namespaces()
    args = ["rehearse", "--plan", str(plan), "--target", "gcp", "--twin"]
    code = main([*args, "--report-dir", str(tmp_path / "reports"), "--json"])
    captured = capsys.readouterr()
    assert captured.out, captured.err
    report = json.loads(captured.out)
    assert code == 0, report.get("error")
    assert report["healthy"] is True and report["target"] == "gcp-twin"
    assert report["torn_down"] is True
    # The guest stage adapted the restored copy (the EC2 image trusts only the EC2 datasource)
    # and its time is a stage of the RTO.
    stages = {s["name"]: s["seconds"] for s in report["stages"]}
    assert stages["adapt"] > 0
    (role,) = report["roles"]
    assert any("99zz-imagekit-datasource.cfg" in change for change in role["adapted"]), role
    assert imagekit_namespaces() == before
    assert not list((tmp_path / "state").glob("twins/*/nodes/*"))
