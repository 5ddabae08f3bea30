"""Limit: a thin wrapper bounding how many operations run against a backend at once.

Transfers beyond what the link or the store sustains only add throttling and timeouts, so every
operation takes one of ``connections`` slots. Put it *inside* the retry wrapper
(``RetryBackend(LimitBackend(...))``) so that a backoff sleep does not hold a slot.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from imagekit.store.backends.base import Backend, ObjectInfo

#: 8 transfers: enough to fill a link to a cloud store with pack-sized objects (restic's
#: default is 5, coldsnap's 8), few enough not to be throttled.
DEFAULT_CONNECTIONS = 8


class LimitBackend(Backend):
    def __init__(self, inner: Backend, connections: int = DEFAULT_CONNECTIONS):
        if connections < 1:
            raise ValueError("connections must be at least 1")
        self.inner = inner
        self.url = inner.url
        self.aligned_writes = inner.aligned_writes
        self.connections = connections
        self._slots = threading.BoundedSemaphore(connections)

    def write(self, name: str, data: bytes) -> None:
        with self._slots:
            self.inner.write(name, data)

    def write_from(self, name: str, view: memoryview) -> None:
        with self._slots:
            self.inner.write_from(name, view)

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        with self._slots:
            return self.inner.read(name, offset, length)

    def stat(self, name: str) -> ObjectInfo:
        with self._slots:
            return self.inner.stat(name)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        # Collected under the slot: a caller pausing mid-iteration must not hold it.
        with self._slots:
            return iter([*self.inner.list(prefix)])

    def delete(self, name: str) -> None:
        with self._slots:
            self.inner.delete(name)

    def close(self) -> None:
        self.inner.close()
