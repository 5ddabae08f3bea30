"""Plan fixtures: each test gets its own state directory, so the trust-on-first-use and
rollback records of one test never reach another (or the user's)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _own_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEKIT_STATE_DIR", str(tmp_path / "state"))
