"""Store fixtures: a fresh in-memory repository with a reader and a write-only identity."""

from __future__ import annotations

import pytest

from imagekit.store.identity import Identity
from imagekit.store.repository import Repository
from tests.store.helpers import MemoryBackend


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
