"""The EBS source's fast path without an emulator: ingest's workers fetch the blocks, requests in
flight stay at ``--concurrency``, and the journal takes ingest's chunk ids instead of hashing."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import threading
import time
from pathlib import Path
from typing import Any

from imagekit.export.blocks import EBS_BLOCK_SIZE, BlockRef
from imagekit.export.source import EbsVolumeSource, Journal, VolumeStats
from imagekit.store.crypto import chunk_id
from imagekit.store.identity import Identity
from imagekit.store.ingest import ingest
from imagekit.store.repository import Repository
from imagekit.store.sources import ChunkObserver, ParallelSource
from tests.store.helpers import MemoryBackend

BLOCK = EBS_BLOCK_SIZE


class FakeEbs:
    """GetSnapshotBlock over a dict of blocks, counting the requests in flight."""

    def __init__(self, blocks: dict[int, bytes], delay: float = 0.0):
        self.blocks = blocks
        self.delay = delay
        self.now = 0
        self.peak = 0
        self.calls = 0
        self._lock = threading.Lock()

    def get_snapshot_block(self, SnapshotId: str, BlockIndex: int, BlockToken: str) -> Any:
        with self._lock:
            self.now += 1
            self.calls += 1
            self.peak = max(self.peak, self.now)
        try:
            time.sleep(self.delay)
            data = self.blocks[BlockIndex]
            digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
            return {
                "BlockData": io.BytesIO(data),
                "Checksum": digest,
                "ChecksumAlgorithm": "SHA256",
            }
        finally:
            with self._lock:
                self.now -= 1


def _repo() -> Repository:
    reader, writer = Identity.generate(), Identity.generate()
    backend = MemoryBackend()
    Repository.init(backend, recipients=[reader.recipient], writers=[writer.recipient])
    return Repository.open(backend, identity=writer)


def _source(ebs: FakeEbs, journal: Journal | None, concurrency: int) -> EbsVolumeSource:
    refs = [BlockRef(i, f"t{i}") for i in sorted(ebs.blocks)] + [BlockRef(99, None)]
    return EbsVolumeSource(
        ebs=ebs,
        name="xvda",
        virtual_size=128 * BLOCK,
        refs=refs,
        stats=VolumeStats("snap-1", 128 * BLOCK, "full"),
        journal=journal,
        concurrency=concurrency,
    )


def test_requests_in_flight_stay_at_the_concurrency(tmp_path: Path) -> None:
    blocks = {i: os.urandom(BLOCK) for i in range(24)}
    ebs = FakeEbs(blocks, delay=0.02)
    repo = _repo()
    journal = Journal(tmp_path / "j.journal", repo.chunk_id_key)
    source = _source(ebs, journal, concurrency=3)
    assert isinstance(source, ParallelSource) and isinstance(source, ChunkObserver)
    assert source.read_workers > 3  # spare workers hash and compress while three requests wait
    result = ingest(repo, [source], name="ami", source="test")
    assert ebs.calls == 24
    assert ebs.peak == 3
    assert source.stats.blocks_read == 25  # the gone block (no token) counts, as a zero block
    stored = dict(result.image.manifest.volumes[0].chunks)
    assert stored == {i: chunk_id(repo.chunk_id_key, d) for i, d in blocks.items()}
    # The journal holds ingest's ids, the zero block as "0", and was closed (fsynced).
    assert journal.load() == {**stored, 99: None}


def test_one_request_at_a_time_at_concurrency_one() -> None:
    ebs = FakeEbs({i: os.urandom(BLOCK) for i in range(8)}, delay=0.01)
    ingest(_repo(), [_source(ebs, None, concurrency=1)], name="ami", source="test")
    assert ebs.peak == 1


def test_journal_record_ids_and_record_agree(tmp_path: Path) -> None:
    key = bytes(range(32))
    data = os.urandom(BLOCK)
    one = Journal(tmp_path / "a", key)
    one.record(1, data)
    one.record(2, bytes(BLOCK))
    one.close()
    two = Journal(tmp_path / "b", key)
    two.record_ids([(1, chunk_id(key, data)), (2, None)])
    two.close()
    assert (tmp_path / "a").read_text() == (tmp_path / "b").read_text()
    assert two.load() == {1: chunk_id(key, data), 2: None}


def test_the_journal_is_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        journal = Journal(tmp_path / "j", bytes(32))
        journal.record(0, os.urandom(BLOCK))
        journal.close()
    finally:
        os.umask(old)
    assert (tmp_path / "j").stat().st_mode & 0o777 == 0o600
