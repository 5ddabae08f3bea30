"""Locks against wrong clocks, failed refreshes and planted lock objects (``docs/format.md``
§ Locks)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from imagekit.errors import LockError, ObjectNotFound, UsageError
from imagekit.store.crypto import MetaCipher
from imagekit.store.format import IMAGES_PREFIX, KIND_LOCK, LOCK_STALE_AFTER
from imagekit.store.ingest import ingest
from imagekit.store.locks import LOCK_TRUST_FOR, RepositoryLock, remove_lock
from imagekit.store.repository import Repository
from imagekit.store.sources import RawFileSource
from tests.store.attackers import BucketAttacker
from tests.store.helpers import MemoryBackend, make_disk


class FailingLocks(MemoryBackend):
    """Shares the objects of ``inner``; lock writes fail once ``broken`` is set."""

    def __init__(self, inner: MemoryBackend):
        super().__init__(inner.url)
        self.objects = inner.objects
        self.broken = False

    def write(self, name: str, data: bytes) -> None:
        if self.broken and name.startswith("locks/"):
            from imagekit.errors import StoreError

            raise StoreError(f"{self.url}: write {name}: connection reset", transient=True)
        super().write(name, data)


def test_a_holder_whose_refresh_failed_stops_before_committing(
    backend: MemoryBackend, repo: Repository
) -> None:
    now = [1000.0]
    flaky = FailingLocks(backend)
    lock = RepositoryLock(flaky, repo.meta, exclusive=False, clock=lambda: now[0])
    lock.acquire()
    try:
        flaky.broken = True
        now[0] += LOCK_TRUST_FOR / 2
        assert not lock.refresh_once()
        lock.check()  # not yet: others still count it fresh
        now[0] += LOCK_TRUST_FOR / 2 + 1
        assert not lock.refresh_once()
        with pytest.raises(LockError, match="not refreshed"):
            lock.check()
        flaky.broken = False
        assert lock.refresh_once()
        lock.check()  # refreshed again: fresh in everyone's eyes
    finally:
        lock.release()


def test_ingest_writes_no_manifest_once_its_lock_may_be_stale(
    backend: MemoryBackend, repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = make_disk(tmp_path / "d.raw", 2 << 20, data_chunks=2)
    # The process was suspended (or its refreshes failed) for longer than a lock is trusted.
    real_check = RepositoryLock.check

    def late(self: RepositoryLock) -> None:
        self._written -= LOCK_STALE_AFTER
        real_check(self)

    monkeypatch.setattr(RepositoryLock, "check", late)
    with pytest.raises(LockError):
        ingest(repo, [RawFileSource(disk)], name="web", source="s")
    assert not backend.names(IMAGES_PREFIX)


def test_staleness_follows_the_storage_clock_not_the_holders(
    backend: MemoryBackend, repo: Repository
) -> None:
    storage = [time.time()]
    backend.clock = lambda: storage[0]
    # A live holder whose own clock is an hour slow: by its "time" the lock looks long stale.
    slow = RepositoryLock(backend, repo.meta, exclusive=False, clock=lambda: time.time() - 3600)
    slow._write()
    with pytest.raises(LockError, match="shared lock"):
        RepositoryLock(backend, repo.meta, exclusive=True).acquire()
    # By the storage's clock it is stale only once it really was not rewritten for 30 minutes.
    storage[0] += LOCK_STALE_AFTER + 60
    with repo.lock(exclusive=True):
        pass
    assert slow.name not in backend.objects  # removed as stale


def test_an_undecryptable_lock_goes_stale_by_the_storage_clock(
    backend: MemoryBackend, repo: Repository
) -> None:
    storage = [time.time()]
    backend.clock = lambda: storage[0]
    attacker = BucketAttacker(backend)
    attacker.plant_object(
        "locks/" + os.urandom(16).hex(), MetaCipher(bytes(32)).encrypt(KIND_LOCK, b"{}")
    )
    with pytest.raises(LockError, match="unreadable lock"):
        RepositoryLock(backend, repo.meta, exclusive=False).acquire()
    storage[0] += LOCK_STALE_AFTER + 60
    with repo.lock(exclusive=False):
        pass


def test_an_undecryptable_lock_has_a_checked_removal(
    backend: MemoryBackend, repo: Repository
) -> None:
    planted = "locks/" + os.urandom(16).hex()
    BucketAttacker(backend).plant_object(planted, b"not a lock")
    with pytest.raises(LockError, match="store unlock") as err:
        RepositoryLock(backend, repo.meta, exclusive=True).acquire()
    assert planted in str(err.value)
    # A live, readable lock is refused; the planted one goes.
    live = RepositoryLock(backend, repo.meta, exclusive=False)
    live._write()
    with pytest.raises(UsageError, match="fresh"):
        remove_lock(backend, repo.meta, live.name)
    assert "unreadable" in remove_lock(backend, repo.meta, planted)
    assert planted not in backend.objects and live.name in backend.objects
    backend.delete(live.name)
    with pytest.raises(ObjectNotFound):
        remove_lock(backend, repo.meta, planted)
    with repo.lock(exclusive=True):
        pass


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-01T02:00:00.000Z",  # S3, GCS listings
        "Wed, 01 May 2024 02:00:00 GMT",  # headers, Azure listings
        "2024-05-01T02:00:00.000000",  # Swift's JSON listing: UTC without a zone
    ],
)
def test_storage_timestamps_are_read_from_every_drivers_format(text: str) -> None:
    from imagekit.store.backends.cloud import modified_time

    assert modified_time({"last_modified": text}) == 1714528800.0


def test_a_storage_without_timestamps_gives_none() -> None:
    from imagekit.store.backends.cloud import modified_time

    assert modified_time({}) is None and modified_time(None) is None
    assert modified_time({"last_modified": "yesterday"}) is None
