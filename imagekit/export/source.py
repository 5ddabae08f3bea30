"""An EBS snapshot as a store ``VolumeSource``, and the journal that makes exports resumable.

The source yields the blocks a plan chose (all written blocks, or the changed ones) as verified
512 KiB chunks; chunks it does not yield come from ``base`` — the previous image's volume for an
incremental export — exactly as ingest expects.

Ingest fetches the blocks itself (``ParallelSource``): each of its workers fetches one block,
verifies it, and hashes, compresses and encrypts it on the same thread, while the lean reader's
limit (or, for a boto3 client, a semaphore) keeps the requests in flight at ``concurrency``. No
thread stands between the fetch and the store.

Resume: every block ingest has taken is noted in a journal beside the export (block index → chunk
id, or "zero"), from the chunk id ingest computed (``ChunkObserver``), before the block goes into a
pack. After a crash or Ctrl-C, the entries whose chunk already sits in an uploaded pack of the
store are folded into ``base`` and not fetched again; everything else is read once more.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from imagekit.export.blocks import EBS_BLOCK_SIZE, BlockRef, fetch_block, fetch_blocks
from imagekit.export.dataplane import BlockReader
from imagekit.progress import NullProgress, Progress
from imagekit.store.crypto import chunk_id
from imagekit.store.format import CHUNK_SIZE
from imagekit.store.manifest import VolumeManifest
from imagekit.store.sources import ReadTask

#: The design rests on this: one EBS block is one store chunk, so changed-block lists map 1:1.
assert EBS_BLOCK_SIZE == CHUNK_SIZE

_ZERO = bytes(CHUNK_SIZE)
#: Journal line for a block that reads as zeros (no chunk id).
ZERO_MARK = "0"


class Journal:
    """Append-only ``INDEX CHUNK_ID_HEX`` lines; one file per (store, snapshot)."""

    def __init__(self, path: Path, chunk_id_key: bytes):
        self.path = path
        self._key = chunk_id_key
        self._handle: Any = None

    def load(self) -> dict[int, bytes | None]:
        """What an earlier, interrupted run fetched; a torn last line is ignored."""
        entries: dict[int, bytes | None] = {}
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return entries
        for line in text.splitlines():
            parts = line.split()
            if len(parts) != 2 or not parts[0].isdigit():
                continue
            index, value = int(parts[0]), parts[1]
            if value == ZERO_MARK:
                entries[index] = None
            elif len(value) == 64:
                try:
                    entries[index] = bytes.fromhex(value)
                except ValueError:
                    continue
        return entries

    def record(self, index: int, data: bytes) -> None:
        """Note a block from its data (hashes it: ``record_ids`` is for callers that know ids)."""
        self.record_ids([(index, None if data == _ZERO else chunk_id(self._key, data))])

    def record_ids(self, entries: Sequence[tuple[int, bytes | None]]) -> None:
        """Note blocks by chunk id (None: reads as zeros), all in one write."""
        if not entries:
            return
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Line-buffered, written a batch at a time: a killed process loses at most the
            # batch it was writing, and those blocks are fetched again. 0600: which blocks an
            # image has, by keyed chunk id, is the operator's business only.
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._handle = os.fdopen(fd, "a", buffering=1)
        self._handle.write(
            "".join(
                f"{index} {ZERO_MARK if cid is None else cid.hex()}\n" for index, cid in entries
            )
        )

    def close(self) -> None:
        if self._handle is not None:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
            self._handle = None

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


def overlay(
    name: str,
    virtual_size: int,
    base: VolumeManifest | None,
    done: dict[int, bytes | None],
) -> VolumeManifest | None:
    """``base`` with journaled blocks laid over it (zeros remove a chunk); None when both empty."""
    if not done:
        return base
    chunks = dict(base.chunks) if base is not None else {}
    for index, cid in done.items():
        if cid is None:
            chunks.pop(index, None)
        else:
            chunks[index] = cid
    return VolumeManifest(name, virtual_size, tuple(sorted(chunks.items())))


@dataclass
class VolumeStats:
    snapshot: str
    virtual_size: int
    mode: str  # "full", "incremental" or "unchanged"
    blocks_read: int = 0
    blocks_changed: int | None = None  # blocks ListChangedBlocks named (incremental only)
    blocks_resumed: int = 0
    previous_snapshot: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "snapshot": self.snapshot,
            "virtual_size": self.virtual_size,
            "mode": self.mode,
            "blocks_read": self.blocks_read,
            "blocks_changed": self.blocks_changed,
            "blocks_resumed": self.blocks_resumed,
            "previous_snapshot": self.previous_snapshot,
        }


@dataclass
class EbsVolumeSource:
    """One AMI volume read through the EBS direct APIs.

    Implements ``VolumeSource``, ``ParallelSource`` and ``ChunkObserver``: the block count, the
    journal and the progress follow the chunks ingest has taken, whichever way it read them.
    """

    ebs: Any
    name: str
    virtual_size: int
    refs: Iterable[BlockRef]
    stats: VolumeStats
    base: VolumeManifest | None = None
    journal: Journal | None = None
    concurrency: int = 8
    progress: Progress = field(default_factory=NullProgress)
    total_blocks: int | None = None  # blocks to read, when counted beforehand (for an ETA)

    @property
    def read_workers(self) -> int:
        # ``concurrency`` requests in flight, and one more worker per core to verify, hash,
        # compress and encrypt a block while the others wait on the network.
        return max(1, self.concurrency) + (os.cpu_count() or 1)

    @contextlib.contextmanager
    def reads(self) -> Iterator[Iterator[ReadTask]]:
        # The lean reader bounds its own requests in flight (and lowers the bound when
        # throttled); a boto3 client gets a semaphore here.
        gate: AbstractContextManager[Any] | None = (
            None
            if isinstance(self.ebs, BlockReader)
            else threading.BoundedSemaphore(max(1, self.concurrency))
        )
        with self._reporting():
            yield (partial(self._read, gate, ref) for ref in self.refs)

    def _read(
        self, gate: AbstractContextManager[Any] | None, ref: BlockRef
    ) -> list[tuple[int, bytes]]:
        return [(ref.index, fetch_block(self.ebs, self.stats.snapshot, ref, gate=gate))]

    def iter_chunks(self) -> Iterator[tuple[int, bytes]]:
        with self._reporting():
            yield from fetch_blocks(
                self.ebs, self.stats.snapshot, self.refs, concurrency=self.concurrency
            )

    def chunks_ingested(self, chunks: Sequence[tuple[int, bytes | None]]) -> None:
        self.stats.blocks_read += len(chunks)
        if self.journal is not None:
            self.journal.record_ids(chunks)
        self.progress.advance(len(chunks) * EBS_BLOCK_SIZE)

    @contextlib.contextmanager
    def _reporting(self) -> Iterator[None]:
        total = None if self.total_blocks is None else self.total_blocks * EBS_BLOCK_SIZE
        counted = "" if self.total_blocks is None else f", {self.total_blocks:,} blocks"
        self.progress.start(f"{self.name} ({self.stats.snapshot}{counted})", total)
        try:
            yield
        finally:
            if self.journal is not None:
                self.journal.close()
            self.progress.finish()
