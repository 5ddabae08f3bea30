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
