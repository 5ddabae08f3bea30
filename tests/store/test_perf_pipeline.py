"""Ingest's fast paths keep their promises: reads on the workers, sparse chunk reads, the chunk-id
hook, bounded uploads, and nothing left running on a closed source after a failure."""

from __future__ import annotations

import contextlib
import filecmp
import os
import threading
import time
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path

import pytest

from imagekit.store.crypto import chunk_id
from imagekit.store.format import CHUNK_SIZE
from imagekit.store.identity import Identity
from imagekit.store.ingest import UPLOADS, ingest
from imagekit.store.manifest import VolumeManifest
from imagekit.store.repository import Repository
from imagekit.store.restore import restore
from imagekit.store.sources import (
    ChunkObserver,
    ParallelSource,
    RawFileSource,
    ReadTask,
    chunk_indexes,
    chunk_pieces,
)
from tests.store.helpers import MemoryBackend, make_disk

CHUNK = CHUNK_SIZE


def test_chunk_pieces_split_at_chunk_boundaries_and_merge_touching_extents() -> None:
    extents = [
        (0, 10),
        (10, 20),
        (CHUNK - 5, CHUNK + 5),
        (3 * CHUNK, 4 * CHUNK),
        (4 * CHUNK, 4 * CHUNK + 1),
    ]
    assert list(chunk_pieces(iter(extents))) == [
        (0, [(0, 20), (CHUNK - 5, CHUNK)]),
        (1, [(0, 5)]),
        (3, [(0, CHUNK)]),
        (4, [(0, 1)]),
    ]
    assert list(chunk_indexes(iter(extents))) == [0, 1, 3, 4]


def test_sparse_chunks_read_back_exactly(tmp_path: Path) -> None:
    """Chunks mixing data and holes are read piece by piece; the bytes are the file's."""
    disk = tmp_path / "disk.raw"
    size = 6 * CHUNK + 1000  # a short last chunk too
    with disk.open("wb") as f:
        f.truncate(size)
        for offset, length in (
            (4096, 4096),
            (3 * 65536, 70000),
            (CHUNK - 4096, 8192),
            (5 * CHUNK + 3 * 4096, 4096),
            (6 * CHUNK, 1000),
        ):
            f.seek(offset)
            f.write(os.urandom(length))
    source = RawFileSource(disk)
    assert isinstance(source, ParallelSource)
    with source.reads() as tasks:
        got = [pair for task in tasks for pair in task()]
    raw = disk.read_bytes()
    assert [i for i, _ in got] == [0, 1, 5, 6]
    for index, data in got:
        assert data == raw[index * CHUNK : (index + 1) * CHUNK]
    assert list(source.iter_chunks()) == got


class _Observed:
    """A raw file source that records the hook's calls and the threads its reads ran on."""

    def __init__(self, path: Path, workers: int = 0):
        self.inner = RawFileSource(path)
        self.name = self.inner.name
        self.virtual_size = self.inner.virtual_size
        self.base: VolumeManifest | None = None
        self.read_workers = workers
        self.threads: set[str] = set()
        self.seen: list[tuple[int, bytes | None]] = []

    @contextlib.contextmanager
    def reads(self) -> Iterator[Iterator[ReadTask]]:
        with self.inner.reads() as tasks:
            yield (partial(self._run, task) for task in tasks)

    def _run(self, task: ReadTask) -> list[tuple[int, bytes]]:
        self.threads.add(threading.current_thread().name)
        return task()

    def iter_chunks(self) -> Iterator[tuple[int, bytes]]:
        return self.inner.iter_chunks()

    def chunks_ingested(self, chunks: Sequence[tuple[int, bytes | None]]) -> None:
        self.seen.extend(chunks)


def test_reads_run_on_ingest_workers_and_the_hook_gets_every_chunk_id(
    repo: Repository, tmp_path: Path
) -> None:
    disk = make_disk(tmp_path / "disk.raw", 16 << 20, data_chunks=20)
    source = _Observed(disk, workers=3)
    assert isinstance(source, ParallelSource) and isinstance(source, ChunkObserver)
    result = ingest(repo, [source], name="web", source="test")
    assert source.threads and all(t.startswith("ingest") for t in source.threads)
    raw = disk.read_bytes()
    expected = []
    for index, data in source.inner.iter_chunks():
        zero = raw[index * CHUNK : (index + 1) * CHUNK] == bytes(len(data))
        expected.append((index, None if zero else chunk_id(repo.chunk_id_key, data)))
    assert source.seen == expected  # in order, zero chunks as None, ids as ingest stored them
    stored = dict(result.image.manifest.volumes[0].chunks)
    assert stored == {i: c for i, c in expected if c is not None}
    out = tmp_path / "out.raw"
    restore(repo, result.image, out)
    assert filecmp.cmp(disk, out, shallow=False)


def test_a_source_asking_for_more_workers_gets_them(repo: Repository, tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    disk.write_bytes(os.urandom(CHUNK) * 64)
    state = {"now": 0, "peak": 0}
    lock = threading.Lock()

    class Wide(_Observed):
        def _run(self, task: ReadTask) -> list[tuple[int, bytes]]:
            with lock:
                state["now"] += 1
                state["peak"] = max(state["peak"], state["now"])
            time.sleep(0.2)  # a read waiting on the network
            with lock:
                state["now"] -= 1
            return super()._run(task)

    ingest(repo, [Wide(disk, workers=5)], name="wide", source="test", workers=1)
    assert state["peak"] >= 4  # far more than the one worker asked for, or the two cores


def test_hook_sees_chunks_before_their_pack_is_written(
    tmp_path: Path, reader: Identity, writer: Identity
) -> None:
    noted_at_write: dict[str, set[bytes]] = {}

    class Recording(MemoryBackend):
        def write(self, name: str, data: bytes) -> None:
            if name.startswith("data/"):
                noted_at_write[name.rsplit("/", 1)[-1]] = {c for _, c in source.seen if c}
            super().write(name, data)

    repo = Repository.init(Recording(), recipients=[reader.recipient], writers=[writer.recipient])
    disk = tmp_path / "disk.raw"
    disk.write_bytes(os.urandom(12 * CHUNK))
    source = _Observed(disk)
    ingest(repo, [source], name="p", source="test", pack_size=2 * CHUNK)
    packs = repo.load_index().packs
    assert len(packs) == 6
    for pack_id, record in packs.items():
        assert {e.chunk_id for e in record.entries} <= noted_at_write[pack_id]


def test_uploads_overlap_but_stay_bounded(
    tmp_path: Path, reader: Identity, writer: Identity
) -> None:
    state = {"now": 0, "peak": 0}
    lock = threading.Lock()

    class Slow(MemoryBackend):
        def write(self, name: str, data: bytes) -> None:
            if name.startswith("data/"):
                with lock:
                    state["now"] += 1
                    state["peak"] = max(state["peak"], state["now"])
                time.sleep(0.05)
                with lock:
                    state["now"] -= 1
            super().write(name, data)

    repo = Repository.init(Slow(), recipients=[reader.recipient], writers=[writer.recipient])
    disk = tmp_path / "disk.raw"
    disk.write_bytes(os.urandom(16 * CHUNK))
    result = ingest(repo, [RawFileSource(disk)], name="u", source="test", pack_size=CHUNK)
    assert result.chunks_new == 16
    assert state["peak"] == UPLOADS


def test_a_failing_read_stops_ingest_with_no_task_left_running(
    repo: Repository, tmp_path: Path
) -> None:
    disk = tmp_path / "disk.raw"
    disk.write_bytes(os.urandom(CHUNK) * 40)
    running = {"now": 0, "at_close": -1}
    lock = threading.Lock()

    class Failing(_Observed):
        @contextlib.contextmanager
        def reads(self) -> Iterator[Iterator[ReadTask]]:
            with super().reads() as tasks:
                try:
                    yield tasks
                finally:
                    running["at_close"] = running["now"]  # what closing the file would race

        def _run(self, task: ReadTask) -> list[tuple[int, bytes]]:
            with lock:
                running["now"] += 1
            try:
                chunks = task()
                time.sleep(0.01)
                if chunks[0][0] >= 16:
                    raise OSError("disk fell off")
                return chunks
            finally:
                with lock:
                    running["now"] -= 1

    with pytest.raises(OSError, match="fell off"):
        ingest(repo, [Failing(disk, workers=4)], name="f", source="test")
    assert running["at_close"] == 0
    assert repo.list_images() == []
