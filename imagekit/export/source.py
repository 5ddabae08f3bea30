"""An EBS snapshot as a store ``VolumeSource``, and the journal that makes exports resumable.

The source yields the blocks a plan chose (all written blocks, or the changed ones) as verified
512 KiB chunks; chunks it does not yield come from ``base`` — the previous image's volume for an
incremental export — exactly as ingest expects.

Resume: every block fetched is noted in a journal beside the export (block index → chunk id, or
"zero"). After a crash or Ctrl-C, the entries whose chunk already sits in an uploaded pack of the
store are folded into ``base`` and not fetched again; everything else is read once more.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagekit.export.blocks import EBS_BLOCK_SIZE, BlockRef, fetch_blocks
from imagekit.progress import NullProgress, Progress
from imagekit.store.crypto import chunk_id
from imagekit.store.format import CHUNK_SIZE
from imagekit.store.manifest import VolumeManifest

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
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Line-buffered: a killed process loses at most the block it was writing.
            self._handle = self.path.open("a", buffering=1)
        value = ZERO_MARK if data == _ZERO else chunk_id(self._key, data).hex()
        self._handle.write(f"{index} {value}\n")

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
    """One AMI volume read through the EBS direct APIs (implements ``VolumeSource``)."""

    ebs: Any
    name: str
    virtual_size: int
    refs: Iterable[BlockRef]
    stats: VolumeStats
    base: VolumeManifest | None = None
    journal: Journal | None = None
    concurrency: int = 8
    progress: Progress = field(default_factory=NullProgress)

    def iter_chunks(self) -> Iterator[tuple[int, bytes]]:
        self.progress.start(f"{self.name} ({self.stats.snapshot})", None)
        try:
            for index, data in fetch_blocks(
                self.ebs, self.stats.snapshot, self.refs, concurrency=self.concurrency
            ):
                self.stats.blocks_read += 1
                if self.journal is not None:
                    self.journal.record(index, data)
                self.progress.advance(len(data))
                yield index, data
        finally:
            if self.journal is not None:
                self.journal.close()
            self.progress.finish()
