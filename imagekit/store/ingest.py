"""Ingest: volumes from ``VolumeSource``s into a repository as one new image.

Pipeline (one session = one data key): the caller's thread reads chunks from the source and hands
them to a pool of workers in batches; a worker drops zero chunks, computes chunk ids, skips chunks
the index already has, compresses and encrypts the rest (BLAKE3, zstd and AES-GCM release the
GIL, so the pool uses every core); the caller's thread appends blobs to a pack in source order;
one uploader thread writes full packs while the next one fills. At most ``2 × workers`` batches
and two packs are in memory at once.

Write order (``docs/format.md`` § Write order): packs, then one index object, then the manifest.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from imagekit.errors import InputError
from imagekit.progress import NullProgress, Progress
from imagekit.store.crypto import BlobCodec
from imagekit.store.format import CHUNK_SIZE, PACK_TARGET_SIZE
from imagekit.store.index import Index, PackRecord
from imagekit.store.manifest import ImageManifest, StoredImage, VolumeManifest
from imagekit.store.memory import reuse_freed_buffers
from imagekit.store.pack import PackBuilder
from imagekit.store.repository import Repository
from imagekit.store.sources import VolumeSource

_ZERO = bytes(CHUNK_SIZE)

#: Chunks handed to a worker at once (4 MiB): a task costs a future and two thread switches,
#: ~30 µs, against ~0.1 ms to hash an unchanged chunk, so per-chunk tasks would spend a fifth of
#: an incremental ingest on handing work around.
BATCH_CHUNKS = 8

#: (chunk index, chunk id or None for a zero chunk, blob or None when already stored, length)
_Processed = tuple[int, bytes | None, bytes | None, int]
_Batch = list[tuple[int, bytes]]


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


class _Session:
    """One writer session: a data key, a pack builder, and the packs written so far."""

    def __init__(self, repo: Repository, index: Index, pack_size: int, workers: int):
        self.repo = repo
        self.index = index
        self.pack_size = pack_size
        data_key, sealed = repo.new_sealed_data_key()
        self.codec = BlobCodec(repo.chunk_id_key, data_key)
        self.builder = PackBuilder(repo.meta, sealed)
        self.new: dict[bytes, int] = {}  # chunk id → blob length, chunks stored this session
        self.records: list[PackRecord] = []
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="ingest")
        self.uploader = ThreadPoolExecutor(1, thread_name_prefix="upload")
        self.upload: Future[None] | None = None
        self.max_inflight = 2 * workers
        self.bytes_read = 0
        self.bytes_uploaded = 0
        self.reused = 0

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.uploader.shutdown(wait=True, cancel_futures=True)

    # Runs on the worker threads.
    def _process(self, batch: _Batch) -> list[_Processed]:
        done: list[_Processed] = []
        for index, data in batch:
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
        self, batch: list[_Processed], chunks: dict[int, bytes], progress: Progress
    ) -> None:
        for index, cid, blob, n in batch:
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
        progress.advance(sum(d[3] for d in batch))

    def volume(self, source: VolumeSource, progress: Progress) -> VolumeManifest:
        size = source.virtual_size
        count = -(-size // CHUNK_SIZE)
        base = source.base
        chunks: dict[int, bytes] = {}
        if base is not None:
            chunks = {i: c for i, c in base.chunks if i < count}
        progress.start(f"ingest {source.name}", None)
        inflight: deque[Future[list[_Processed]]] = deque()
        batch: _Batch = []
        for index, data in source.iter_chunks():
            if not 0 <= index < count:
                raise InputError(f"{source.name}: chunk index {index} outside the volume")
            self.bytes_read += len(data)
            batch.append((index, data))
            if len(batch) < BATCH_CHUNKS:
                continue
            inflight.append(self.pool.submit(self._process, batch))
            batch = []
            if len(inflight) >= self.max_inflight:
                self._collect(inflight.popleft().result(), chunks, progress)
        if batch:
            inflight.append(self.pool.submit(self._process, batch))
        while inflight:
            self._collect(inflight.popleft().result(), chunks, progress)
        progress.finish()
        stored = 0
        for cid in set(chunks.values()):
            loc = self.index.get(cid)
            stored += loc.length if loc is not None else self.new[cid]
        return VolumeManifest(source.name, size, tuple(sorted(chunks.items())), stored)

    def flush(self) -> None:
        """Hand the current pack to the uploader (waiting for the previous upload first)."""
        if self.builder.count == 0:
            return
        # Wait before joining the new pack: the previous pack's bytes are freed first, so at most
        # two packs' worth of blobs are alive, not three.
        if self.upload is not None:
            self.upload.result()
            self.upload = None
        data, header = self.builder.finish()
        self.upload = self.uploader.submit(
            self._upload, data, header.sealed_data_key, header.entries
        )

    def _upload(self, data: bytes, sealed: bytes, entries: Any) -> None:
        pack_id = self.repo.write_pack(data)
        self.records.append(PackRecord(pack_id, sealed, entries))
        self.bytes_uploaded += len(data)

    def finish(self) -> None:
        """Upload the last pack, then the index for this session's packs."""
        self.flush()
        if self.upload is not None:
            self.upload.result()
        if self.records:
            _, size = self.repo.write_index(self.records)
            self.bytes_uploaded += size


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
) -> IngestResult:
    """Store ``sources`` as one image called ``name``; the manifest is written last."""
    if not sources:
        raise InputError("nothing to ingest: no volumes")
    if not name or "/" in name:
        raise InputError(f"invalid image name {name!r}")
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise InputError(f"volume names repeat: {names}")
    bar = progress or NullProgress()
    reuse_freed_buffers()
    with repo.lock(exclusive=False):
        index = repo.load_index()
        recovered = repo.index_unindexed_packs(index)
        session = _Session(repo, index, pack_size, workers or os.cpu_count() or 1)
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
