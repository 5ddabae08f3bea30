"""The boot commands' argument handling and listings (no boots: see test_local.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import imagekit.cli.boot_cmds  # noqa: F401  (registers the commands on the root group)
from imagekit.cli.app import main


def test_providers_lists_what_each_needs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["providers", "--json"]) == 0
    found = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert {"local", "null"} <= set(found)
    assert found["local"]["disk_format"] == "qcow2"
    assert found["local"]["needs"][0]["env"] == "IMAGEKIT_QEMU_ACCEL"
    assert main(["providers"]) == 0
    assert "IMAGEKIT_QEMU_ACCEL" in capsys.readouterr().out


def test_runs_on_an_empty_state_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "--state-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == "no runs"
    assert main(["runs", "--json", "--state-dir", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out) == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--health", "htp:80/"], "unknown kind 'htp'"),
        (["--count", "0"], "at least one node"),
        (["--provider", "nowhere"], "unknown provider 'nowhere'"),
        (["--provider", "null", "--setting", "region=x"], "unknown settings"),
    ],
)
def test_boot_refuses_bad_arguments_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    state = tmp_path / "state"
    argv = ["boot", "web", "--store", str(tmp_path / "none"), "--state-dir", str(state), *extra]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not state.exists()  # no run was recorded


def test_boot_dry_run_lists_calls_and_touches_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The store does not exist and no credentials are set: a dry run must not need either.
    for var in ("GOOGLE_APPLICATION_CREDENTIALS", "GCP_CREDENTIALS_FILE"):
        monkeypatch.delenv(var, raising=False)
    missing_store = tmp_path / "no-store"
    args = ["boot", "web", "--store", str(missing_store), "--provider", "gcp", "--dry-run"]
    args += ["--setting", "project=p1", "--setting", "zone=europe-west1-b"]
    args += ["--setting", "bucket=b1", "--count", "2", "--size", "e2-small", "--json"]
    args += ["--state-dir", str(tmp_path / "state")]
    assert main(args) == 0
    calls = json.loads(capsys.readouterr().out)["calls"]
    assert calls[0].startswith("restore web")
    assert calls[1] == "inspect the guest and adapt it for gcp"  # on by default for clouds
    assert "storage.googleapis.com/b1/" in calls[2]
    assert [c for c in calls if "/instances" in c and "e2-small" in c][1:]  # one per node
    assert calls[-1].startswith("wait healthy")
    assert not missing_store.exists() and not (tmp_path / "state" / "runs").exists()
