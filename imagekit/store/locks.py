"""Repository locks (``docs/format.md`` § Locks): shared for ingest/restore, exclusive for prune.

A lock is an object ``locks/<random id>``; holders rewrite it every ``LOCK_REFRESH_INTERVAL`` from
a daemon thread, so a crashed holder's lock goes stale after ``LOCK_STALE_AFTER`` and stops
blocking others.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from imagekit.errors import LockError, ObjectNotFound, StoreError
from imagekit.store.backends.base import Backend
from imagekit.store.crypto import InvalidTag, MetaCipher
from imagekit.store.format import (
    KIND_LOCK,
    LOCK_REFRESH_INTERVAL,
    LOCK_STALE_AFTER,
    LOCKS_PREFIX,
)


@dataclass(frozen=True)
class LockInfo:
    name: str
    exclusive: bool
    host: str
    pid: int
    time: float

    def stale(self, now: float) -> bool:
        return now - self.time > LOCK_STALE_AFTER

    def describe(self) -> str:
        kind = "exclusive" if self.exclusive else "shared"
        age = time.time() - self.time
        return f"{kind} lock {self.name} held by {self.host} pid {self.pid} ({age:.0f} s old)"


def _encode(exclusive: bool, now: float) -> bytes:
    doc = {"exclusive": exclusive, "host": socket.gethostname(), "pid": os.getpid(), "time": now}
    return json.dumps(doc, sort_keys=True).encode("utf-8")


def read_locks(backend: Backend, meta: MetaCipher) -> list[LockInfo]:
    locks = []
    for info in backend.list(LOCKS_PREFIX):
        try:
            data = backend.read(info.name)
            doc = json.loads(meta.decrypt(KIND_LOCK, data))
            locks.append(
                LockInfo(
                    info.name,
                    bool(doc["exclusive"]),
                    str(doc["host"]),
                    int(doc["pid"]),
                    float(doc["time"]),
                )
            )
        except ObjectNotFound:
            continue  # released between list and read
        except (InvalidTag, ValueError, KeyError, TypeError):
            # Unreadable: count it as a fresh exclusive lock, the safe reading.
            locks.append(LockInfo(info.name, True, "?", 0, time.time()))
    return locks


class RepositoryLock:
    """Context manager holding one lock object; refreshes it until released."""

    def __init__(
        self,
        backend: Backend,
        meta: MetaCipher,
        *,
        exclusive: bool,
        clock: Callable[[], float] = time.time,
    ):
        self._backend = backend
        self._meta = meta
        self.exclusive = exclusive
        self._clock = clock
        self.name = f"{LOCKS_PREFIX}{os.urandom(16).hex()}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _conflicts(self) -> list[LockInfo]:
        now = self._clock()
        return [
            lock
            for lock in read_locks(self._backend, self._meta)
            if lock.name != self.name and not lock.stale(now) and (self.exclusive or lock.exclusive)
        ]

    def acquire(self) -> None:
        found = self._conflicts()
        if found:
            raise LockError(
                f"{self._backend.url}: locked ({found[0].describe()})",
                hint="wait for it to finish; a crashed holder's lock expires after 30 minutes",
            )
        self._write()
        found = self._conflicts()
        if found:
            self._backend.delete(self.name)
            raise LockError(f"{self._backend.url}: locked meanwhile ({found[0].describe()})")
        if self.exclusive:
            self._remove_stale()
        self._thread = threading.Thread(target=self._refresh, name="lock-refresh", daemon=True)
        self._thread.start()

    def _write(self) -> None:
        self._backend.write(
            self.name, self._meta.encrypt(KIND_LOCK, _encode(self.exclusive, self._clock()))
        )

    def _remove_stale(self) -> None:
        now = self._clock()
        for lock in read_locks(self._backend, self._meta):
            if lock.name != self.name and lock.stale(now):
                self._backend.delete(lock.name)

    def _refresh(self) -> None:
        while not self._stop.wait(LOCK_REFRESH_INTERVAL):
            # A failed refresh is retried at the next tick; the lock only goes stale after 30 min.
            with contextlib.suppress(StoreError):
                self._write()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._backend.delete(self.name)

    def __enter__(self) -> RepositoryLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


__all__ = ["LockInfo", "RepositoryLock", "read_locks"]
