"""Store fixtures: a fresh in-memory repository with a reader and a write-only identity."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagekit.store.identity import Identity
from imagekit.store.repository import Repository
from tests.store.helpers import MemoryBackend


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test its own state directory: trust-on-first-use and rollback records start empty
    and never touch the user's."""
    state = tmp_path / "state"
    monkeypatch.setenv("IMAGEKIT_STATE_DIR", str(state))
    return state


@pytest.fixture
def backend() -> MemoryBackend:
    return MemoryBackend()


@pytest.fixture(scope="session")
def reader() -> Identity:
    return Identity.generate()


@pytest.fixture(scope="session")
def writer() -> Identity:
    return Identity.generate()


@pytest.fixture
def repo(backend: MemoryBackend, reader: Identity, writer: Identity) -> Repository:
    return Repository.init(backend, recipients=[reader.recipient], writers=[writer.recipient])
