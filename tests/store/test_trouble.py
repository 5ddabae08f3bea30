"""Behaviour under trouble: tampering, truncation, missing objects, crashes, concurrency, locks."""

from __future__ import annotations

import filecmp
import threading
import time
from pathlib import Path

import pytest

from imagekit.errors import IntegrityError, LockError, ObjectNotFound
from imagekit.store.crypto import MetaCipher
from imagekit.store.format import KIND_LOCK, LOCK_STALE_AFTER
from imagekit.store.ingest import IngestResult, ingest
from imagekit.store.locks import RepositoryLock
from imagekit.store.repository import Repository
from imagekit.store.restore import restore
from imagekit.store.sources import RawFileSource
from imagekit.store.verify import verify
from tests.store.helpers import Crash, FaultyBackend, MemoryBackend, make_disk

SIZE = 4 << 20


@pytest.fixture
def stored(repo: Repository, tmp_path: Path) -> IngestResult:
    disk = make_disk(tmp_path / "disk.raw", SIZE)
    return ingest(repo, [RawFileSource(disk)], name="web", source="s")


def _one(backend: MemoryBackend, prefix: str) -> str:
    (name,) = backend.names(prefix)
    return name


def test_flipped_byte_in_pack_names_the_pack(
    backend: MemoryBackend, repo: Repository, stored: IngestResult, tmp_path: Path
) -> None:
    pack = _one(backend, "data/")
    data = bytearray(backend.objects[pack])
    data[100] ^= 1
    backend.objects[pack] = bytes(data)
    with pytest.raises(IntegrityError, match=pack):
        restore(repo, stored.image, tmp_path / "out.raw")
    assert not (tmp_path / "out.raw").exists()
    report = verify(repo, read_data=True)
    assert not report.ok and any(pack in p for p in report.problems)


def test_truncated_pack_is_detected(
    backend: MemoryBackend, repo: Repository, stored: IngestResult, tmp_path: Path
) -> None:
    pack = _one(backend, "data/")
    backend.objects[pack] = backend.objects[pack][: len(backend.objects[pack]) // 2]
    with pytest.raises(IntegrityError, match="truncated"):
        restore(repo, stored.image, tmp_path / "out.raw")
    assert any("truncated" in p for p in verify(repo).problems)


def test_missing_pack_and_missing_image(
    backend: MemoryBackend, repo: Repository, stored: IngestResult, tmp_path: Path
) -> None:
    del backend.objects[_one(backend, "data/")]
    with pytest.raises(ObjectNotFound):
        restore(repo, stored.image, tmp_path / "out.raw")
    assert any("missing" in p for p in verify(repo).problems)
    with pytest.raises(ObjectNotFound, match="nope"):
        repo.resolve("nope")


def test_tampered_manifest_and_index(
    backend: MemoryBackend, repo: Repository, stored: IngestResult
) -> None:
    image = _one(backend, "images/")
    data = bytearray(backend.objects[image])
    data[-1] ^= 1
    backend.objects[image] = bytes(data)
    with pytest.raises(IntegrityError, match=image):
        repo.load_image(image.removeprefix("images/"))
    # Listing skips it (whoever can write the bucket could otherwise stop every listing) and
    # verify reports it.
    assert repo.list_images() == []
    assert any(image in p for p in verify(repo).problems)
    # Re-encrypted under a key of the attacker's choosing, renamed to match its hash: still fails.
    forged = MetaCipher(bytes(32)).encrypt(b"I", b"\x00\x00\x00\x00")
    from imagekit.store.pack import object_id

    del backend.objects[_one(backend, "index/")]
    backend.objects[f"index/{object_id(forged)}"] = forged
    with pytest.raises(IntegrityError, match="authentication"):
        repo.read_index(f"index/{object_id(forged)}")
    assert len(repo.load_index()) == 0
    assert any("authentication" in p for p in verify(repo).problems)


def test_crash_before_manifest_lists_nothing_and_rerun_reuses_packs(
    backend: MemoryBackend, repo: Repository, tmp_path: Path
) -> None:
    disk = make_disk(tmp_path / "disk.raw", SIZE, data_chunks=8)
    crashing = Repository(FaultyBackend(backend, "images/"), repo.config, repo.key)
    with pytest.raises(Crash):
        ingest(crashing, [RawFileSource(disk)], name="web", source="s", pack_size=1 << 20)
    assert repo.list_images() == []  # nothing listed that cannot be restored
    packs = backend.names("data/")
    assert packs and backend.names("index/")
    rerun = ingest(repo, [RawFileSource(disk)], name="web", source="s", pack_size=1 << 20)
    assert rerun.chunks_new == 0 and backend.names("data/") == packs
    restore(repo, rerun.image, tmp_path / "out.raw")
    assert filecmp.cmp(disk, tmp_path / "out.raw", shallow=False)


def test_crash_before_index_rerun_indexes_uploaded_packs(
    backend: MemoryBackend, repo: Repository, tmp_path: Path
) -> None:
    disk = make_disk(tmp_path / "disk.raw", SIZE, data_chunks=8)
    crashing = Repository(FaultyBackend(backend, "index/"), repo.config, repo.key)
    with pytest.raises(Crash):
        ingest(crashing, [RawFileSource(disk)], name="web", source="s", pack_size=1 << 20)
    packs = backend.names("data/")
    assert packs and not backend.names("index/") and not backend.names("images/")
    rerun = ingest(repo, [RawFileSource(disk)], name="web", source="s", pack_size=1 << 20)
    assert rerun.packs_recovered == len(packs)
    assert rerun.chunks_new == 0 and backend.names("data/") == packs
    assert verify(repo, read_data=True).ok


def test_two_concurrent_ingests_both_succeed(
    backend: MemoryBackend, repo: Repository, tmp_path: Path
) -> None:
    disks = [make_disk(tmp_path / f"d{i}.raw", SIZE, seed=10 + i) for i in range(2)]
    results: dict[int, IngestResult] = {}
    barrier = threading.Barrier(2)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = ingest(repo, [RawFileSource(disks[i])], name=f"vm{i}", source="s")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [0, 1]
    assert len(repo.list_images()) == 2
    for i, result in results.items():
        restore(repo, result.image, tmp_path / f"out{i}.raw")
        assert filecmp.cmp(disks[i], tmp_path / f"out{i}.raw", shallow=False)
    assert not backend.names("locks/")


def test_exclusive_lock_blocks_and_stale_lock_does_not(
    backend: MemoryBackend, repo: Repository
) -> None:
    with repo.lock(exclusive=False), pytest.raises(LockError, match="shared lock"):
        RepositoryLock(backend, repo.meta, exclusive=True).acquire()
    with repo.lock(exclusive=True), pytest.raises(LockError, match="exclusive"):
        RepositoryLock(backend, repo.meta, exclusive=False).acquire()
    # A lock whose holder died long ago: ignored, and removed by the next exclusive locker.
    old = time.time() - LOCK_STALE_AFTER - 60
    dead = RepositoryLock(backend, repo.meta, exclusive=True, clock=lambda: old)
    dead._write()
    with repo.lock(exclusive=True):
        pass
    assert not backend.names("locks/")
    # An undecryptable lock counts as a fresh exclusive one.
    backend.write("locks/garbage", MetaCipher(bytes(32)).encrypt(KIND_LOCK, b"{}"))
    with pytest.raises(LockError):
        RepositoryLock(backend, repo.meta, exclusive=False).acquire()
