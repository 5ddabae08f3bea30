"""Ingest → restore round trips: byte-identical, sparse, multi-volume, incremental, dedup."""

from __future__ import annotations

import filecmp
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagekit.store.format import CHUNK_SIZE
from imagekit.store.ingest import ingest
from imagekit.store.manifest import VolumeManifest
from imagekit.store.repository import Repository
from imagekit.store.restore import restore
from imagekit.store.sources import RawFileSource
from tests.store.helpers import MemoryBackend, allocated, make_disk

SIZE = 8 << 20


def test_restore_is_byte_identical_and_sparse(repo: Repository, tmp_path: Path) -> None:
    disk = make_disk(tmp_path / "disk.raw", SIZE, data_chunks=9)
    result = ingest(repo, [RawFileSource(disk)], name="web", source=str(disk))
    out = tmp_path / "out.raw"
    restore(repo, result.image, out)
    assert filecmp.cmp(disk, out, shallow=False)
    assert out.stat().st_size == SIZE
    # Written zeros in the source are holes in the output: never more allocated than the source.
    assert allocated(out) <= allocated(disk)
    # Only the allocated extents were read, not the 8 MiB virtual size.
    assert result.bytes_read <= allocated(disk) + 2 * CHUNK_SIZE
    assert result.bytes_read < SIZE


def test_duplicate_and_zero_chunks_are_not_stored(repo: Repository, tmp_path: Path) -> None:
    disk = tmp_path / "d.raw"
    chunk = b"x" * CHUNK_SIZE
    disk.write_bytes(chunk + bytes(CHUNK_SIZE) + chunk + chunk)
    result = ingest(repo, [RawFileSource(disk)], name="d", source="d")
    volume = result.image.manifest.volumes[0]
    assert [i for i, _ in volume.chunks] == [0, 2, 3]
    assert result.chunks_new == 1
    assert result.chunks_reused == 2


def test_second_ingest_of_same_disk_uploads_only_metadata(repo: Repository, tmp_path: Path) -> None:
    disk = make_disk(tmp_path / "disk.raw", SIZE)
    first = ingest(repo, [RawFileSource(disk)], name="web", source="a")
    second = ingest(repo, [RawFileSource(disk)], name="web", source="a")
    assert second.chunks_new == 0
    assert second.bytes_uploaded < 4096 < first.bytes_uploaded


def test_multi_volume_restores_into_directory(repo: Repository, tmp_path: Path) -> None:
    a = make_disk(tmp_path / "a.raw", SIZE, seed=2)
    b = make_disk(tmp_path / "b.raw", 3 * CHUNK_SIZE + 4096, seed=3, data_chunks=2)
    result = ingest(
        repo,
        [RawFileSource(a, "/dev/xvda"), RawFileSource(b, "/dev/xvdb")],
        name="db",
        source="two disks",
    )
    out = tmp_path / "restored"
    written = restore(repo, result.image, out)
    assert [w["path"] for w in written] == [str(out / "dev_xvda.raw"), str(out / "dev_xvdb.raw")]
    assert filecmp.cmp(a, out / "dev_xvda.raw", shallow=False)
    assert filecmp.cmp(b, out / "dev_xvdb.raw", shallow=False)


class _ChangedChunks:
    """A source yielding only some chunks, the rest coming from a base volume (incremental)."""

    def __init__(self, path: Path, changed: list[int], base: VolumeManifest):
        self._raw = RawFileSource(path)
        self.name = "disk0"
        self.changed = changed
        self.base = base

    @property
    def virtual_size(self) -> int:
        return self._raw.virtual_size

    def iter_chunks(self) -> Iterator[tuple[int, bytes]]:
        with open(self._raw.path, "rb") as f:
            for i in self.changed:
                f.seek(i * CHUNK_SIZE)
                yield i, f.read(CHUNK_SIZE)


def test_incremental_source_takes_unyielded_chunks_from_base(
    repo: Repository, tmp_path: Path
) -> None:
    disk = make_disk(tmp_path / "disk.raw", SIZE, seed=4, data_chunks=8)
    day1 = ingest(repo, [RawFileSource(disk)], name="web", source="day1")
    base = day1.image.manifest.volumes[0]
    # Day 2: chunk 3 rewritten, the first data chunk zeroed (TRIM), everything else unchanged.
    zeroed = base.chunks[0][0]
    with open(disk, "r+b") as f:
        f.seek(3 * CHUNK_SIZE)
        f.write(b"day two " * (CHUNK_SIZE // 8))
        f.seek(zeroed * CHUNK_SIZE)
        f.write(bytes(CHUNK_SIZE))
    source = _ChangedChunks(disk, [3, zeroed], base)
    day2 = ingest(repo, [source], name="web", source="day2", parent=day1.image.id)
    assert day2.bytes_read == 2 * CHUNK_SIZE
    assert day2.chunks_new == 1
    out = tmp_path / "day2.raw"
    restore(repo, day2.image, out)
    assert filecmp.cmp(disk, out, shallow=False)
    assert day2.image.manifest.parent == day1.image.id


def test_multi_pack_session(backend: MemoryBackend, repo: Repository, tmp_path: Path) -> None:
    disk = make_disk(tmp_path / "disk.raw", SIZE, data_chunks=12)
    result = ingest(repo, [RawFileSource(disk)], name="web", source="s", pack_size=CHUNK_SIZE)
    assert len(backend.names("data/")) >= 4
    assert len(backend.names("index/")) == 1
    out = tmp_path / "out.raw"
    restore(repo, result.image, out, workers=3)
    assert filecmp.cmp(disk, out, shallow=False)


def test_restore_refuses_to_overwrite(repo: Repository, tmp_path: Path) -> None:
    disk = make_disk(tmp_path / "disk.raw", SIZE)
    result = ingest(repo, [RawFileSource(disk)], name="web", source="s")
    from imagekit.errors import UsageError

    with pytest.raises(UsageError, match="exists"):
        restore(repo, result.image, disk)


def test_restore_keeps_holes_inside_a_chunk(repo: Repository, tmp_path: Path) -> None:
    disk = tmp_path / "d.raw"
    with open(disk, "wb") as f:
        f.truncate(4 * CHUNK_SIZE)
        f.seek(CHUNK_SIZE + 8192)
        f.write(b"\x01" * 4096)  # one lone 4 KiB block: its chunk is 99 % hole
    result = ingest(repo, [RawFileSource(disk)], name="d", source="d")
    out = tmp_path / "out.raw"
    restore(repo, result.image, out)
    assert filecmp.cmp(disk, out, shallow=False)
    assert allocated(out) <= max(allocated(disk), 8192)
