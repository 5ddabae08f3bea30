"""Repository locks (``docs/format.md`` § Locks): shared for ingest/restore, exclusive for prune.

A lock is an object ``locks/<random id>``; holders rewrite it every ``LOCK_REFRESH_INTERVAL`` from
a daemon thread, so a crashed holder's lock goes stale after ``LOCK_STALE_AFTER`` and stops
blocking others.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from imagekit.errors import LockError, ObjectNotFound, StoreError, UsageError
from imagekit.store.backends.base import Backend
from imagekit.store.crypto import InvalidTag, MetaCipher
from imagekit.store.format import (
    KIND_LOCK,
    LOCK_REFRESH_INTERVAL,
    LOCK_STALE_AFTER,
    LOCKS_PREFIX,
)
from imagekit.store.jsondoc import integer, load_object, number

log = logging.getLogger(__name__)

#: After a failed refresh, try again this soon rather than at the next interval.
LOCK_RETRY_INTERVAL = 30.0
#: A holder that has not rewritten its lock for this long stops before committing anything:
#: others may already count the lock stale (one refresh interval of margin for clock drift).
LOCK_TRUST_FOR = LOCK_STALE_AFTER - LOCK_REFRESH_INTERVAL


@dataclass(frozen=True)
class LockInfo:
    name: str
    exclusive: bool
    host: str
    pid: int
    time: float  # the holder's clock at its last rewrite
    modified: float | None = None  # the storage's clock at the last rewrite, where known
    readable: bool = True  # False: it does not decrypt with this repository's keys

    def holder_gone(self) -> bool:
        """Held by a process of this host that no longer runs (killed, or the host rebooted
        since): what ``store unlock`` may remove at once rather than 30 minutes later. Only for
        that explicit command: hosts that share a name (containers) could not tell each
        other's processes apart, so staleness itself never relies on it."""
        if not self.readable or self.host != socket.gethostname() or self.pid <= 0:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # alive, another user's
        return False

    def stale(self, now: float, storage_now: float | None = None) -> bool:
        """Not rewritten for ``LOCK_STALE_AFTER``: by the storage's clock where the backend
        timestamps objects (``storage_now``: the time of the reader's own fresh lock), else by
        the holder's clock against ours."""
        if self.modified is not None and storage_now is not None:
            return storage_now - self.modified > LOCK_STALE_AFTER
        return now - self.time > LOCK_STALE_AFTER

    def describe(self) -> str:
        if not self.readable:
            return (
                f"unreadable lock {self.name}: it does not decrypt with this repository's keys "
                f"(planted or corrupt; counted as exclusive; `imagekit store unlock STORE "
                f"{self.name}`)"
            )
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
            doc = load_object(meta.decrypt(KIND_LOCK, data), "lock")
            locks.append(
                LockInfo(
                    info.name,
                    bool(doc["exclusive"]),
                    str(doc["host"]),
                    integer(doc["pid"], "pid"),
                    number(doc["time"], "time"),
                    info.modified,
                )
            )
        except ObjectNotFound:
            continue  # released between list and read
        except (InvalidTag, ValueError, KeyError, TypeError):
            # Unreadable: an exclusive lock written now (the safe reading) that, where the
            # storage timestamps it, goes stale like any other; `store unlock` removes it.
            locks.append(LockInfo(info.name, True, "?", 0, time.time(), info.modified, False))
    return locks


def remove_lock(backend: Backend, meta: MetaCipher, name: str, *, now: float | None = None) -> str:
    """Delete lock ``name`` if no live holder can own it: unreadable, stale, or held by a
    process of this host that is gone. Its description.

    A readable fresh lock of a live (or another host's) holder is refused: it may be alive (or
    was less than ``LOCK_STALE_AFTER`` ago) and removing it could let a prune delete what it
    writes.
    """
    if not name.startswith(LOCKS_PREFIX):
        name = f"{LOCKS_PREFIX}{name}"
    found = [lock for lock in read_locks(backend, meta) if lock.name == name]
    if not found:
        raise ObjectNotFound(f"{backend.url}: no lock {name}")
    lock = found[0]
    clock = time.time() if now is None else now
    if lock.readable and not lock.stale(clock) and not lock.holder_gone():
        raise UsageError(
            f"{backend.url}: {lock.describe()} is fresh; refusing to remove it",
            hint="wait for its holder to finish; a crashed holder's lock expires after 30 minutes",
        )
    backend.delete(name)
    return lock.describe()


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
        self._written = 0.0  # our clock at the last successful write of the lock
        self.storage_now: float | None = None  # the storage's clock then, where it has one

    def _conflicts(self) -> list[LockInfo]:
        now = self._clock()
        locks = read_locks(self._backend, self._meta)
        own = [lock.modified for lock in locks if lock.name == self.name]
        if own and own[0] is not None:
            self.storage_now = own[0]
        return [
            lock
            for lock in locks
            if lock.name != self.name
            and not lock.stale(now, self.storage_now)
            and (self.exclusive or lock.exclusive)
        ]

    def acquire(self) -> None:
        # Write first, then look: the listing then carries our own lock's storage timestamp,
        # the storage's "now" that other locks' ages are measured against. Two lockers racing
        # both see each other and both back off; never both proceed.
        self._write()
        found = self._conflicts()
        if found:
            self._backend.delete(self.name)
            first = found[0]
            hint = (
                "wait for it to finish; a crashed holder's lock expires after 30 minutes"
                if first.readable
                else "it goes stale 30 minutes after it was written where the storage "
                "timestamps objects; `imagekit store unlock` removes it at once"
            )
            raise LockError(f"{self._backend.url}: locked ({first.describe()})", hint=hint)
        if self.exclusive:
            self._remove_stale()
        self._thread = threading.Thread(target=self._refresh, name="lock-refresh", daemon=True)
        self._thread.start()

    def _write(self) -> None:
        now = self._clock()
        self._backend.write(self.name, self._meta.encrypt(KIND_LOCK, _encode(self.exclusive, now)))
        self._written = now

    def _remove_stale(self) -> None:
        now = self._clock()
        for lock in read_locks(self._backend, self._meta):
            if lock.name != self.name and lock.stale(now, self.storage_now):
                self._backend.delete(lock.name)

    def refresh_once(self) -> bool:
        """Rewrite the lock; False (and a warning) when that failed."""
        try:
            self._write()
        except StoreError as exc:
            log.warning("%s: refreshing lock %s failed: %s", self._backend.url, self.name, exc)
            return False
        return True

    def _refresh(self) -> None:
        interval = LOCK_REFRESH_INTERVAL
        while not self._stop.wait(interval):
            interval = LOCK_REFRESH_INTERVAL if self.refresh_once() else LOCK_RETRY_INTERVAL

    def check(self) -> None:
        """``LockError`` when the lock may have gone stale in others' eyes (its refreshes
        failed, or the process was suspended): committing now could race a prune that
        ignored it. Holders call this right before they commit (a manifest, a deletion)."""
        unrefreshed = self._clock() - self._written
        if unrefreshed > LOCK_TRUST_FOR:
            raise LockError(
                f"{self._backend.url}: lock {self.name} not refreshed for {unrefreshed:.0f} s; "
                "stopping before committing, as others may count it stale",
                hint="check the store's reachability and run again (uploaded packs are reused)",
            )

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


__all__ = ["LockInfo", "RepositoryLock", "read_locks", "remove_lock"]
