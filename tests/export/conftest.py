"""Fixtures of the export tests: a local store opened as an export host opens it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from imagekit.store.backends.registry import open_backend
from imagekit.store.identity import Identity
from imagekit.store.repository import Repository


@pytest.fixture
def reader() -> Identity:
    return Identity.generate()


@pytest.fixture
def store(tmp_path: Path, reader: Identity) -> Iterator[tuple[str, Repository]]:
    """A local store: the export host opens it with a write-only identity, as in production."""
    url = str(tmp_path / "store")
    writer = Identity.generate()
    with open_backend(url) as backend:
        Repository.init(backend, recipients=[reader.recipient], writers=[writer.recipient])
        yield url, Repository.open(backend, identity=writer)
