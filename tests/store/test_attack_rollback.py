"""Rollback and withholding: a provider serving an older state of the bucket, or hiding the newest
manifests, is detected by a host that saw newer (``imagekit.store.trust``)."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

from imagekit.store.ingest import ingest
from imagekit.store.manifest import ImageManifest, StoredImage, VolumeManifest, format_time
from imagekit.store.prune import RetentionPolicy, prune
from imagekit.store.repository import Repository
from imagekit.store.sources import RawFileSource
from imagekit.store.trust import SEEN_IMAGES, Seen, SeenImages, advance, rollbacks
from imagekit.store.verify import verify
from tests.store.helpers import MemoryBackend, make_disk

T0 = datetime(2026, 1, 1, 2, 0, tzinfo=UTC)


def _image(name: str, hours: int, ident: str) -> StoredImage:
    m = ImageManifest(name, T0 + timedelta(hours=hours), "s", (VolumeManifest("d", 0),))
    return StoredImage(ident * 64, m)


def test_rollbacks_is_pure_and_names_lineage_ids_and_times() -> None:
    seen = {"web": Seen("b" * 64, T0 + timedelta(hours=1))}
    older = [_image("web", 0, "a")]
    (found,) = rollbacks("s3://b/p", seen, older)
    text = str(found)
    assert "'web'" in text and "b" * 12 in text and "a" * 12 in text
    assert format_time(T0 + timedelta(hours=1)) in text and format_time(T0) in text
    (gone,) = rollbacks("s3://b/p", seen, [])
    assert "holds no image" in str(gone)
    # Same time or newer, even under another id: no rollback (a re-export, a copy).
    assert rollbacks("s3://b/p", seen, [_image("web", 1, "c")]) == []
    assert rollbacks("s3://b/p", seen, [_image("web", 5, "c")]) == []
    # Only the lineages asked about.
    assert rollbacks("s3://b/p", seen, older, lineages=["db"]) == []


def test_the_record_only_moves_forward() -> None:
    seen = {"web": Seen("b" * 64, T0 + timedelta(hours=1))}
    assert advance(seen, [_image("web", 0, "a")]) == seen
    moved = advance(seen, [_image("web", 2, "c"), _image("db", 0, "d")])
    assert moved["web"].image_id == "c" * 64 and moved["db"].image_id == "d" * 64


def _export(repo: Repository, tmp_path: Path, hours: int, seed: int) -> StoredImage:
    disk = make_disk(tmp_path / f"d{seed}.raw", 2 << 20, seed=seed, data_chunks=2)
    return ingest(
        repo, [RawFileSource(disk)], name="web", source="s", created=T0 + timedelta(hours=hours)
    ).image


def test_a_bucket_served_from_an_older_snapshot_is_detected(
    backend: MemoryBackend, repo: Repository, tmp_path: Path, state_dir: Path
) -> None:
    seen = SeenImages(state_dir)
    _export(repo, tmp_path, 0, 1)
    snapshot = dict(backend.objects)  # the provider keeps this state
    newer = _export(repo, tmp_path, 24, 2)
    assert verify(repo, seen=seen).ok  # this host sees the newest: recorded
    backend.objects.clear()
    backend.objects.update(snapshot)  # ...and serves the old one: consistent, authentic, old
    report = verify(repo, seen=seen)
    assert not report.ok
    (problem,) = report.problems
    assert "rolled back" in problem and newer.id[:12] in problem and "'web'" in problem
    # The alarm repeats until someone looks: the record is not lowered by what was served.
    assert not verify(repo, seen=seen).ok
    assert stat.S_IMODE(os.stat(state_dir / SEEN_IMAGES).st_mode) == 0o600


def _two_seen(repo: Repository, tmp_path: Path, state_dir: Path) -> tuple[SeenImages, str]:
    """Two exports a day apart, both seen by this host; the newest one's id."""
    seen = SeenImages(state_dir)
    _export(repo, tmp_path, 0, 1)
    newest = _export(repo, tmp_path, 24, 2)
    seen.check(repo.url, repo.list_images())
    return seen, newest.id


def test_a_withheld_newest_manifest_is_detected(
    backend: MemoryBackend, repo: Repository, tmp_path: Path, state_dir: Path
) -> None:
    seen, newest_id = _two_seen(repo, tmp_path, state_dir)
    del backend.objects[f"images/{newest_id}"]
    (found,) = seen.check(repo.url, repo.list_images())
    assert found.seen.image_id == newest_id


def test_what_this_host_pruned_is_no_rollback(
    backend: MemoryBackend, repo: Repository, tmp_path: Path, state_dir: Path
) -> None:
    seen, newest_id = _two_seen(repo, tmp_path, state_dir)
    # This host prunes the older image and forgets it: its absence is no alarm.
    report = prune(repo, RetentionPolicy(keep_last=1))
    assert [i.id for i in report.plan.keep] == [newest_id]
    seen.forget(repo.url, [i.id for i in report.plan.drop], report.plan.keep)
    assert seen.check(repo.url, repo.list_images()) == []
    # Even when the newest itself goes: the record falls back to what is kept.
    repo.delete_image(newest_id)
    seen.forget(repo.url, [newest_id], repo.list_images())
    assert seen.get(repo.url) == {}


def test_records_are_per_store(tmp_path: Path, state_dir: Path) -> None:
    seen = SeenImages(state_dir)
    seen.check("s3://a/x", [_image("web", 5, "a")])
    assert seen.check("s3://b/x", [_image("web", 0, "b")]) == []
    assert len(seen.check("s3://a/x", [_image("web", 0, "b")])) == 1
