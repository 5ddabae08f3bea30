"""Run records on disk: atomic, listable, found again by id, removed whole."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from imagekit.errors import ExitCode, InputError, UsageError
from imagekit.providers.base import Endpoint, NodeInfo, Resource
from imagekit.providers.runs import RunStore, state_dir


def test_state_dir_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IMAGEKIT_STATE_DIR", str(tmp_path / "s"))
    assert state_dir() == tmp_path / "s"
    monkeypatch.delenv("IMAGEKIT_STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "x"))
    assert state_dir() == tmp_path / "x" / "imagekit"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert state_dir() == tmp_path / "home" / ".local" / "state" / "imagekit"


def test_a_run_journal_round_trips_through_disk(tmp_path: Path) -> None:
    runs = RunStore(tmp_path)
    run = runs.create("null", image={"id": "abc", "name": "web"}, settings={"zone": "z1"})
    assert run.run_id.startswith("null-")
    assert stat.S_IMODE(run.dir.stat().st_mode) == 0o700
    node = Resource("node", "n-1", "web-1", {"zone": "z1"})
    run.add_resource(Resource("image", "i-1"))
    run.add_resource(node)
    run.add_node(NodeInfo("n-1", "web-1", (Endpoint(22, "127.0.0.1", 2222),), "small"))
    with run.stage("prepare"):
        pass
    again = runs.open(run.run_id).record
    assert again == run.record
    assert [r.id for r in again.resources] == ["i-1", "n-1"]
    run.forget_resource(node)
    assert [r.id for r in runs.open(run.run_id).record.resources] == ["i-1"]
    # Every write went through a temporary file renamed into place: none is left over.
    assert sorted(p.name for p in run.dir.iterdir()) == ["run.json"]


def test_stage_time_is_recorded_even_when_it_fails(tmp_path: Path) -> None:
    run = RunStore(tmp_path).create("null")
    with pytest.raises(RuntimeError), run.stage("upload"):
        raise RuntimeError("boom")
    assert "upload" in RunStore(tmp_path).open(run.run_id).record.stages


def test_list_and_remove(tmp_path: Path) -> None:
    runs = RunStore(tmp_path)
    assert runs.list() == []
    first, second = runs.create("local"), runs.create("null")
    assert [r.run_id for r in runs.list()] == sorted(
        [first.run_id, second.run_id], key=lambda i: (runs.open(i).record.created, i)
    )
    runs.remove(first)
    assert [r.run_id for r in runs.list()] == [second.run_id]


@pytest.mark.parametrize("run_id", ["../etc", "a/b", "", "UPPER", "x" * 70])
def test_run_ids_cannot_escape_the_state_dir(tmp_path: Path, run_id: str) -> None:
    with pytest.raises(UsageError, match="invalid run id"):
        RunStore(tmp_path).open(run_id)


def test_unknown_and_damaged_records(tmp_path: Path) -> None:
    runs = RunStore(tmp_path)
    with pytest.raises(UsageError, match="no run 'local-x'") as info:
        runs.open("local-x")
    assert info.value.exit_code == ExitCode.USAGE
    run = runs.create("local")
    (run.dir / "run.json").write_text('{"version": 99}')
    with pytest.raises(InputError, match="malformed run record"):
        runs.open(run.run_id)
    assert runs.list() == []  # a damaged record does not break the listing
    os.unlink(run.dir / "run.json")
