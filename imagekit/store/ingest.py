"""Ingest: volumes from ``VolumeSource``s into a repository as one new image.

Pipeline (one session = one data key): the caller's thread hands read tasks to a pool of workers;
a worker runs the task (reads a few chunks from the disk, or fetches a block from EBS), drops
zero chunks, computes chunk ids, skips chunks the index already has, compresses and encrypts the
rest (reads, BLAKE3, zstd and AES-GCM release the GIL, so the pool uses every core, reads
included: no single reader thread bounds an incremental ingest, which mostly reads and hashes);
the caller's thread takes the results in source order and appends blobs to a pack; ``UPLOADS``
uploader threads seal and write full packs while the next one fills. A source that cannot hand
out tasks (not a ``ParallelSource``) is read on the caller's thread and its chunks are handed over
in batches. At most ``workers`` + one task per core and ``UPLOADS + 1`` packs are in memory.

Write order (``docs/format.md`` § Write order): packs, then one index object, then the manifest.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from imagekit.errors import InputError, IntegrityError
from imagekit.progress import NullProgress, Progress
from imagekit.store.crypto import BlobCodec
from imagekit.store.format import CHUNK_SIZE, PACK_TARGET_SIZE
from imagekit.store.index import Index, PackRecord
from imagekit.store.manifest import ImageManifest, StoredImage, VolumeManifest
from imagekit.store.memory import reuse_freed_buffers
from imagekit.store.pack import PackBuilder
from imagekit.store.repository import Repository
from imagekit.store.sources import ChunkObserver, ParallelSource, ReadTask, VolumeSource

_ZERO = bytes(CHUNK_SIZE)

#: Chunks handed to a worker at once when the source only iterates (4 MiB): a task costs a
#: future and two thread switches, ~30 µs, against ~0.1 ms to hash an unchanged chunk, so
#: per-chunk tasks would spend a fifth of an incremental ingest on handing work around.
BATCH_CHUNKS = 8

#: Packs being written at once. Two: a pack's write and fsync (~0.1 s for 32 MiB on a local
#: disk) then overlaps the next one's instead of stopping the pipeline while it fills; memory
#: holds at most three packs (two written, one filling).
UPLOADS = 2

#: (chunk index, chunk id or None for a zero chunk, blob or None when already stored, length)
_Processed = tuple[int, bytes | None, bytes | bytearray | None, int]


@dataclass(frozen=True)
class IngestResult:
    image: StoredImage
    bytes_read: int
    bytes_uploaded: int
    chunks_new: int
    chunks_reused: int
    packs_recovered: int

    def as_dict(self) -> dict[str, Any]:
        m = self.image.manifest
        return {
            "id": self.image.id,
            "name": m.name,
            "created": self.image.summary()["created"],
            "volumes": [
                {"name": v.name, "virtual_size": v.virtual_size, "stored_size": v.stored_size}
                for v in m.volumes
            ],
            "bytes_read": self.bytes_read,
            "bytes_uploaded": self.bytes_uploaded,
            "chunks_new": self.chunks_new,
            "chunks_reused": self.chunks_reused,
        }


def _given(chunks: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    return chunks


@contextlib.contextmanager
def _tasks(source: VolumeSource) -> Iterator[Iterator[ReadTask]]:
    """The source's read tasks, or its chunks read here and handed over in batches."""
    if isinstance(source, ParallelSource):
        with source.reads() as tasks:
            yield tasks
        return
    chunks = source.iter_chunks()

    def batches() -> Iterator[ReadTask]:
        batch: list[tuple[int, bytes]] = []
        for item in chunks:
            batch.append(item)
            if len(batch) == BATCH_CHUNKS:
                yield partial(_given, batch)
                batch = []
        if batch:
            yield partial(_given, batch)

    try:
        yield batches()
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()  # a generator's own clean-up (its reader thread, its file) runs now


class _Session:
    """One writer session: a data key, a pack builder, and the packs written so far."""

    def __init__(self, repo: Repository, index: Index, pack_size: int, workers: int):
        self.repo = repo
        self.index = index
        self.pack_size = pack_size
        data_key, self.sealed = repo.new_sealed_data_key()
        self.codec = BlobCodec(repo.chunk_id_key, data_key)
        self.builder = PackBuilder(repo.meta, self.sealed)
        self.new: dict[bytes, int] = {}  # chunk id → blob length, chunks stored this session
        self.records: list[PackRecord] = []
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="ingest")
        self.uploader = ThreadPoolExecutor(UPLOADS, thread_name_prefix="upload")
        self.uploads: deque[Future[tuple[PackRecord, int]]] = deque()
        # Every worker busy, and as many finished tasks as cores waiting to be taken in order:
        # enough slack that one slow task does not idle the pool. (Twice the workers, as for a
        # disk, would hold 68 blocks at an export's 32 requests, for no speed-up.)
        self.max_inflight = workers + (os.cpu_count() or 1)
        self.bytes_read = 0
        self.bytes_uploaded = 0
        self.reused = 0

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.uploader.shutdown(wait=True, cancel_futures=True)

    # Runs on the worker threads.
    def _process(self, task: ReadTask) -> list[_Processed]:
        done: list[_Processed] = []
        for index, data in task():
            n = len(data)
            if data == (_ZERO if n == CHUNK_SIZE else bytes(n)):
                done.append((index, None, None, n))
                continue
            cid = self.codec.chunk_id(data)
            if cid in self.index or cid in self.new:
                done.append((index, cid, None, n))
            else:
                done.append((index, cid, self.codec.encode(cid, data), n))
        return done

    def _collect(
        self,
        batch: list[_Processed],
        source: VolumeSource,
        count: int,
        chunks: dict[int, bytes],
        progress: Progress,
    ) -> None:
        for index, _, _, _ in batch:
            if not 0 <= index < count:
                raise InputError(f"{source.name}: chunk index {index} outside the volume")
        if isinstance(source, ChunkObserver):
            # Before the blobs join a pack: whatever reaches the store has been noted first.
            source.chunks_ingested([(index, cid) for index, cid, _, _ in batch])
        read = 0
        for index, cid, blob, n in batch:
            read += n
            if cid is None:
                chunks.pop(index, None)  # zero now, whatever the base held
                continue
            chunks[index] = cid
            if cid in self.index or cid in self.new:
                self.reused += 1
                continue
            if blob is None:  # stored by this session after the worker looked; cannot happen twice
                raise AssertionError("chunk neither known nor encoded")
            self.builder.add(cid, blob, n)
            self.new[cid] = len(blob)
            if self.builder.size >= self.pack_size:
                self.flush()
        self.bytes_read += read
        progress.advance(read)

    def volume(self, source: VolumeSource, progress: Progress) -> VolumeManifest:
        size = source.virtual_size
        count = -(-size // CHUNK_SIZE)
        base = source.base
        chunks: dict[int, bytes] = {}
        if base is not None:
            chunks = {i: c for i, c in base.chunks if i < count}
            missing = sum(1 for c in set(chunks.values()) if c not in self.index)
            if missing:
                # A manifest built on them could not be restored: refuse before reading.
                raise IntegrityError(
                    f"{self.repo.url}: the base of volume {source.name} names {missing} chunks "
                    "that are in no index",
                    hint="run `imagekit store verify`; a full read does not need the base",
                )
        progress.start(f"ingest {source.name}", None)
        inflight: deque[Future[list[_Processed]]] = deque()

        def collect_one() -> None:
            self._collect(inflight.popleft().result(), source, count, chunks, progress)

        with _tasks(source) as tasks:
            try:
                for task in tasks:
                    inflight.append(self.pool.submit(self._process, task))
                    if len(inflight) >= self.max_inflight:
                        collect_one()
                    # Take what is already done too: fewer waits, and packs fill sooner.
                    while inflight and inflight[0].done():
                        collect_one()
                while inflight:
                    collect_one()
            finally:
                # Leave no task running on what the source closes when the context ends.
                for future in inflight:
                    future.cancel()
                wait(inflight)
        progress.finish()
        stored = 0
        for cid in set(chunks.values()):
            loc = self.index.get(cid)
            stored += loc.length if loc is not None else self.new[cid]
        return VolumeManifest(source.name, size, tuple(sorted(chunks.items())), stored)

    def _reap(self, keep: int) -> None:
        """Wait until at most ``keep`` uploads are pending; note the finished ones' packs."""
        while len(self.uploads) > keep:
            record, size = self.uploads.popleft().result()
            self.records.append(record)
            self.bytes_uploaded += size

    def flush(self) -> None:
        """Hand the current pack to an uploader (waiting first if all of them are busy)."""
        if self.builder.count == 0:
            return
        # Wait before handing over the new pack, so that no more than UPLOADS packs are alive
        # besides the one filling.
        self._reap(UPLOADS - 1)
        full, self.builder = self.builder, PackBuilder(self.repo.meta, self.sealed)
        self.uploads.append(self.uploader.submit(self._upload, full))

    # Runs on an uploader thread: sealing the header and joining the blobs (a 32 MiB copy)
    # happen here, not on the thread that keeps the workers fed.
    def _upload(self, builder: PackBuilder) -> tuple[PackRecord, int]:
        parts, header = builder.seal()
        pack_id, size = self.repo.write_pack(parts)
        return PackRecord(pack_id, header.sealed_data_key, header.entries), size

    def finish(self) -> None:
        """Upload the last pack, then the index for this session's packs."""
        self.flush()
        self._reap(0)
        if self.records:
            _, size = self.repo.write_index(self.records)
            self.bytes_uploaded += size


def _pool_size(sources: Sequence[VolumeSource], workers: int | None) -> int:
    """One worker per core, or more when a source asks for more (reads waiting on a network)."""
    size = workers or os.cpu_count() or 1
    wanted = [s.read_workers for s in sources if isinstance(s, ParallelSource)]
    return max(size, *wanted) if wanted else size


def ingest(
    repo: Repository,
    sources: Sequence[VolumeSource],
    *,
    name: str,
    source: str,
    metadata: Mapping[str, Any] | None = None,
    parent: str | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
    pack_size: int = PACK_TARGET_SIZE,
    created: datetime | None = None,
    index: Index | None = None,
) -> IngestResult:
    """Store ``sources`` as one image called ``name``; the manifest is written last.

    ``index``: the repository's index with its unindexed packs added, from a caller that has
    held a shared lock since it loaded it (an export plans against it); else loaded here.
    """
    if not sources:
        raise InputError("nothing to ingest: no volumes")
    if not name or "/" in name:
        raise InputError(f"invalid image name {name!r}")
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise InputError(f"volume names repeat: {names}")
    bar = progress or NullProgress()
    reuse_freed_buffers()
    with repo.lock(exclusive=False) as held:
        recovered = []
        if index is None:
            index = repo.load_index()
            recovered = repo.index_unindexed_packs(index)
        session = _Session(repo, index, pack_size, _pool_size(sources, workers))
        try:
            volumes = tuple(session.volume(s, bar) for s in sources)
            session.finish()
        finally:
            session.close()
        manifest = ImageManifest(
            name=name,
            created=created or datetime.now(UTC),
            source=source,
            volumes=volumes,
            parent=parent,
            metadata=dict(metadata or {}),
            bytes_read=session.bytes_read,
            bytes_uploaded=session.bytes_uploaded,
        )
        held.check()  # no manifest once our lock may look stale: a prune may have run meanwhile
        image, size = repo.write_image(manifest)
    return IngestResult(
        image=image,
        bytes_read=session.bytes_read,
        bytes_uploaded=session.bytes_uploaded + size,
        chunks_new=len(session.new),
        chunks_reused=session.reused,
        packs_recovered=len(recovered),
    )


__all__ = ["IngestResult", "ingest"]
