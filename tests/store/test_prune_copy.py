"""Prune (retention + garbage collection) and copy (only missing chunks uploaded)."""

from __future__ import annotations

import filecmp
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from imagekit.store.copy import copy_images
from imagekit.store.format import CHUNK_SIZE
from imagekit.store.identity import Identity
from imagekit.store.ingest import IngestResult, ingest
from imagekit.store.prune import PACK_GRACE, RetentionPolicy, prune
from imagekit.store.repository import Repository
from imagekit.store.restore import restore
from imagekit.store.sources import RawFileSource
from imagekit.store.verify import verify
from tests.store.helpers import MemoryBackend

SIZE = 4 << 20
DAY0 = datetime(2024, 3, 1, 2, 0, tzinfo=UTC)


def _history(repo: Repository, tmp_path: Path, days: int) -> list[tuple[Path, IngestResult]]:
    """One image a day: chunk 0 the same every day, chunks 2-4 new random data each day.

    Each ingest writes one pack; day 0's pack also holds the shared chunk.
    """
    rng = random.Random(7)
    out = []
    for d in range(days):
        disk = tmp_path / f"day{d}.raw"
        with open(disk, "wb") as f:
            f.truncate(SIZE)
            f.write(b"shared boot block " * (CHUNK_SIZE // 18))
            f.seek(2 * CHUNK_SIZE)
            f.write(rng.randbytes(3 * CHUNK_SIZE))
        result = ingest(
            repo,
            [RawFileSource(disk)],
            name="web",
            source=f"day {d}",
            created=DAY0 + timedelta(days=d),
        )
        out.append((disk, result))
    return out


def test_prune_keeps_what_policy_says_and_deletes_unreferenced_packs(
    backend: MemoryBackend, repo: Repository, tmp_path: Path
) -> None:
    history = _history(repo, tmp_path, 4)
    packs_before = backend.names("data/")
    assert len(packs_before) == 4

    dry = prune(repo, RetentionPolicy(keep_last=2), dry_run=True)
    # Day 1's pack goes; day 0's stays for the shared chunk the kept days reference.
    assert dry.packs_deleted == 1 and backend.names("data/") == packs_before
    assert len(repo.list_images()) == 4

    report = prune(repo, RetentionPolicy(keep_last=2))
    kept = {i.id for i in repo.list_images()}
    assert kept == {history[2][1].image.id, history[3][1].image.id}
    assert report.packs_deleted == 1 and len(backend.names("data/")) == 3
    assert len(backend.names("index/")) == 1
    assert not backend.names("locks/")
    # The kept images still restore, and the shared chunk (first written on day 0) survived.
    for disk, result in history[2:]:
        out = tmp_path / f"{disk.stem}.out"
        restore(repo, result.image, out)
        assert filecmp.cmp(disk, out, shallow=False)
    assert verify(repo, read_data=True).ok


def test_prune_removes_packs_of_crashed_writers(
    backend: MemoryBackend, repo: Repository, tmp_path: Path
) -> None:
    _history(repo, tmp_path, 1)
    now = [time.time()]
    backend.clock = lambda: now[0]
    old, young = "data/ab/" + "ab" * 32, "data/cd/" + "cd" * 32
    backend.write(old, b"leftover of a crash")
    now[0] += PACK_GRACE - 60
    backend.write(young, b"a live writer's pack, its lock missed")
    now[0] += 120
    report = prune(repo, RetentionPolicy(keep_last=5))
    # Older than the grace period by the storage's clock: a crash's. Younger: may be live.
    assert old not in backend.objects and young in backend.objects
    assert report.packs_young == 1 and len(backend.names("data/")) == 2


def test_prune_keeps_unindexed_packs_of_unknown_age(
    backend: MemoryBackend, repo: Repository, tmp_path: Path
) -> None:
    _history(repo, tmp_path, 1)
    backend.write("data/ab/" + "ab" * 32, b"no timestamp: cannot tell a crash from a live writer")
    assert prune(repo, RetentionPolicy(keep_last=5)).packs_young == 1
    assert "data/ab/" + "ab" * 32 in backend.objects


def test_prune_never_deletes_by_a_name_that_is_not_a_pack(
    backend: MemoryBackend, repo: Repository, tmp_path: Path
) -> None:
    _history(repo, tmp_path, 1)
    backend.clock = lambda: 0.0  # everything "old"
    stray = ["data/zz/notes.txt", "data/ab/" + "cd" * 32, "data/" + "ef" * 32, "index/README"]
    for name in stray:
        backend.write(name, b"stray")
    before = set(backend.objects)
    backend.deletes.clear()
    prune(repo, RetentionPolicy(keep_last=5))
    # Stray names are never deleted, nor anything derived from them ("data/zz/notes.txt" once
    # became a delete of "data/no/notes.txt"): only objects that exist, and no pack.
    assert set(stray) <= set(backend.objects)
    deleted = [n for n in backend.deletes if not n.startswith("locks/")]
    assert deleted and all(n in before and n.startswith("index/") for n in deleted)


def test_copy_uploads_only_missing_chunks(
    repo: Repository, reader: Identity, tmp_path: Path
) -> None:
    history = _history(repo, tmp_path, 2)
    dst_backend = MemoryBackend("memory://dst")
    dst = Repository.init(dst_backend, recipients=[Identity.generate().recipient])

    first = copy_images(repo, dst, [history[0][1].image.id])
    assert len(first.copied) == 1
    second = copy_images(repo, dst)  # everything: day 0 is skipped, day 1 copied
    assert [i.id for i in second.skipped] == [history[0][1].image.id]
    (copied,) = second.copied
    # Day 1 shares chunk 0 with day 0: it is not uploaded again.
    assert copied.chunks_reused >= 1
    assert copied.chunks_new == history[1][1].chunks_new == 3  # exactly what day 0 lacked
    images = dst.list_images()
    assert [i.manifest.created for i in images] == [DAY0, DAY0 + timedelta(days=1)]
    # Re-encrypted for the destination's keys: the source's reader cannot open it.
    assert dst.key.repository_id != repo.key.repository_id
    out = tmp_path / "copied.raw"
    restore(dst, images[1], out)
    assert filecmp.cmp(history[1][0], out, shallow=False)
    assert copy_images(repo, dst).copied == ()


def test_prune_removes_old_partial_writes_of_a_directory_store(tmp_path: Path) -> None:
    import os
    import time

    from imagekit.store.backends.local import LocalBackend
    from imagekit.store.prune import LEFTOVER_AGE

    root = tmp_path / "store"
    local = LocalBackend(root)
    repo = Repository.init(local, passphrase="pw")
    _history(repo, tmp_path, 1)
    pack = next(root.glob("data/*/*"))
    old = pack.parent / f".{pack.name}.x1.tmp"  # a writer killed mid-write, long ago
    young = root / "locks" / ".lock-abc.x2.tmp"  # a writer taking a lock right now
    for path, age in ((old, LEFTOVER_AGE + 60), (young, 5)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
        os.utime(path, (time.time() - age, time.time() - age))

    assert prune(repo, RetentionPolicy(keep_last=5), dry_run=True).leftovers_removed == 0
    assert old.exists()
    report = prune(repo, RetentionPolicy(keep_last=5))
    assert report.leftovers_removed == 1 and report.as_dict()["leftovers_removed"] == 1
    assert not old.exists() and young.exists() and pack.exists()
    assert verify(repo, read_data=True).ok
