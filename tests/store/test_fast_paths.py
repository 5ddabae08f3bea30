"""The speed-motivated paths keep their promises: allocator tuning, read-ahead, sparse writes."""

from __future__ import annotations

import os
import resource
import threading
from collections.abc import Generator
from pathlib import Path

import pytest

from imagekit.store.format import CHUNK_SIZE
from imagekit.store.memory import reuse_freed_buffers
from imagekit.store.restore import SPARSE_PAGE, write_sparse
from imagekit.store.sources import READ_AHEAD, READ_BATCH, RawFileSource
from tests.store.helpers import allocated


def test_freed_chunk_buffers_are_reused_without_page_faults() -> None:
    if not reuse_freed_buffers():
        pytest.skip("not glibc: the allocator is left alone")
    assert reuse_freed_buffers()  # idempotent
    data = os.urandom(CHUNK_SIZE)
    rounds = 200
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        # A fresh chunk-sized buffer each round, freed at once: the ingest pattern.
        del_me = b"\x01" + data
        del del_me
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    # Untuned, every round maps a fresh 512 KiB: 128 faults a round.
    assert faults < rounds * 4


def test_read_ahead_yields_every_data_chunk_in_order(tmp_path: Path) -> None:
    count = READ_BATCH * (READ_AHEAD + 2) + 3  # more than the read-ahead holds, plus a tail
    disk = tmp_path / "disk.raw"
    with disk.open("wb") as f:
        f.truncate(2 * count * CHUNK_SIZE + 4096)
        for i in range(count):  # every other chunk holds data, the rest are holes
            f.seek(2 * i * CHUNK_SIZE)
            f.write(i.to_bytes(4, "little") * (CHUNK_SIZE // 4))
        f.seek(2 * count * CHUNK_SIZE)
        f.write(b"t" * 4096)  # a short last chunk
    got = list(RawFileSource(disk).iter_chunks())
    assert [i for i, _ in got] == [2 * i for i in range(count)] + [2 * count]
    assert all(
        d == i.to_bytes(4, "little") * (CHUNK_SIZE // 4) for i, (_, d) in enumerate(got[:-1])
    )
    assert got[-1][1] == b"t" * 4096


def test_abandoned_read_ahead_stops_its_thread(tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    disk.write_bytes(os.urandom(CHUNK_SIZE) * (READ_BATCH * (READ_AHEAD + 3)))
    chunks = RawFileSource(disk).iter_chunks()
    assert isinstance(chunks, Generator)
    next(chunks)
    chunks.close()  # what ingest's failure path does to the generator
    assert not [t for t in threading.enumerate() if t.name.startswith("read")]


def test_write_sparse_writes_data_pages_and_leaves_zero_pages_as_holes(tmp_path: Path) -> None:
    page = SPARSE_PAGE
    chunk = bytearray(CHUNK_SIZE)
    chunk[0:page] = b"a" * page  # data at the start
    chunk[10 * page : 10 * page + 1] = b"b"  # one byte makes a page data
    chunk[-100:] = b"c" * 100  # data ending the chunk
    out = tmp_path / "out.raw"
    fd = os.open(out, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.ftruncate(fd, 2 * CHUNK_SIZE)
        write_sparse(fd, bytes(chunk), CHUNK_SIZE)
        os.fsync(fd)
    finally:
        os.close(fd)
    data = out.read_bytes()
    assert data[CHUNK_SIZE:] == bytes(chunk)
    assert data[:CHUNK_SIZE] == bytes(CHUNK_SIZE)
    assert allocated(out) <= 3 * page  # three data pages; the 125 zero pages stay holes
