"""Store test helpers: an in-memory backend keeping the backend contract, a crash injector,
and a sparse test-disk maker.

``MemoryBackend`` is a second implementation of ``imagekit.store.backends.base.Backend`` (not a
mock of any HTTP API): the store layer is tested against the contract.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from imagekit.errors import IntegrityError, ObjectNotFound, StoreError
from imagekit.store.backends.base import Backend, ObjectInfo
from imagekit.store.format import CHUNK_SIZE


class MemoryBackend(Backend):
    def __init__(self, url: str = "memory://test"):
        self.url = url
        self.objects: dict[str, bytes] = {}
        self.writes: list[str] = []
        self.deletes: list[str] = []
        #: Set it to give objects the storage's timestamps (``ObjectInfo.modified``); None: a
        #: backend that reports none.
        self.clock: Callable[[], float] | None = None
        self.times: dict[str, float] = {}
        self._lock = threading.Lock()

    def write(self, name: str, data: bytes) -> None:
        with self._lock:
            self.objects[name] = bytes(data)
            self.writes.append(name)
            if self.clock is not None:
                self.times[name] = self.clock()

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        with self._lock:
            if name not in self.objects:
                raise ObjectNotFound(f"{self.url}/{name}: not found")
            data = self.objects[name]
        end = len(data) if length is None else offset + length
        return data[offset:end]

    def stat(self, name: str) -> ObjectInfo:
        with self._lock:
            if name not in self.objects:
                raise ObjectNotFound(f"{self.url}/{name}: not found")
            return ObjectInfo(name, len(self.objects[name]), self.times.get(name))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        with self._lock:
            items = [
                ObjectInfo(n, len(d), self.times.get(n))
                for n, d in self.objects.items()
                if n.startswith(prefix)
            ]
        return iter(items)

    def delete(self, name: str) -> None:
        with self._lock:
            self.objects.pop(name, None)
            self.deletes.append(name)

    def names(self, prefix: str) -> set[str]:
        return {n for n in self.objects if n.startswith(prefix)}


class Crash(StoreError):
    """What the fault-injecting backend raises: the process 'dies' at this write."""


class FaultyBackend(MemoryBackend):
    """Fails every write whose name starts with ``fail_prefix`` (a crash at that point)."""

    def __init__(self, inner: MemoryBackend, fail_prefix: str):
        super().__init__(inner.url)
        self.objects = inner.objects
        self.fail_prefix = fail_prefix

    def write(self, name: str, data: bytes) -> None:
        if name.startswith(self.fail_prefix):
            raise Crash(f"injected crash before writing {name}")
        super().write(name, data)


def downgrade_slots(backend: MemoryBackend) -> None:
    """Rewrite every key slot as the release before slot MACs wrote it (version 1)."""
    from dataclasses import replace

    from imagekit.store.keys import KeySlot

    for name in sorted(backend.names("keys/")):
        slot = KeySlot.decode(backend.objects[name])
        backend.objects[name] = replace(slot, mac=None).encode()


def make_disk(
    path: Path,
    size: int,
    *,
    seed: int = 1,
    data_chunks: int = 6,
    extra: Callable[[int], None] | None = None,
) -> Path:
    """A sparse raw disk: holes, random chunks, compressible chunks, written zeros, a duplicate."""
    rng = random.Random(seed)
    with open(path, "w+b") as f:
        f.truncate(size)
        chunks = size // CHUNK_SIZE
        picks = rng.sample(range(chunks), min(data_chunks, chunks))
        for n, i in enumerate(picks):
            f.seek(i * CHUNK_SIZE)
            if n % 3 == 0:
                f.write(rng.randbytes(CHUNK_SIZE))
            elif n % 3 == 1:
                f.write((b"imagekit text %d " % n) * (CHUNK_SIZE // 20))
            else:
                f.write(bytes(CHUNK_SIZE))  # written zeros: allocated, but must not be stored
        # Unaligned small write (a metadata block) and a duplicate of the first data chunk.
        f.seek(rng.randrange(size - 4096))
        f.write(rng.randbytes(700))
        if picks:
            f.seek(picks[0] * CHUNK_SIZE)
            first = f.read(CHUNK_SIZE)
            f.seek(size - CHUNK_SIZE)
            f.write(first)
    return path


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


__all__ = [
    "Crash",
    "FaultyBackend",
    "IntegrityError",
    "MemoryBackend",
    "allocated",
    "downgrade_slots",
    "make_disk",
]
