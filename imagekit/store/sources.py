"""Where ingest reads volumes from: the ``VolumeSource`` protocol and local disk images.

The AWS exporter implements the same protocol over EBS direct APIs (changed blocks of a snapshot
with the previous image's volume as ``base``), so ingest has one code path for both.

Both also implement ``ParallelSource``: they hand ingest independent read tasks, which ingest runs
on its own workers right before hashing and compressing what they return, so reads use every
core and no reader thread hands the bytes over. A raw file's chunks that are partly holes are
read piece by piece (``chunk_pieces``): only the data is copied out of the page cache.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable

from imagekit.errors import ConvertError, InputError
from imagekit.store.format import CHUNK_SIZE
from imagekit.store.manifest import VolumeManifest

T = TypeVar("T")

#: Chunks per read task of ``RawFileSource`` (4 MiB): a task costs a future and two thread
#: switches, ~30 µs, against ~0.1 ms to read and hash an unchanged chunk...
READ_BATCH = 8
#: ...and how many tasks ``iter_chunks``' reader thread runs ahead of its consumer (12 MiB held).
READ_AHEAD = 2

#: One read of a source: ``(chunk index, data)`` pairs under the rules of
#: ``VolumeSource.iter_chunks``. Tasks share no file position or connection, so any thread may run
#: any number of them at once.
ReadTask = Callable[[], list[tuple[int, bytes]]]


class VolumeSource(Protocol):
    """One volume to ingest.

    ``iter_chunks`` yields ``(chunk index, data)`` for chunks that may hold data (allocated, or
    changed since ``base``), in any order, each index at most once; ``data`` is ``CHUNK_SIZE``
    bytes, or less for the last chunk of a volume whose size is not a multiple. Chunks it does
    not yield are taken from ``base`` when there is one (incremental) and are zero otherwise.
    """

    @property
    def name(self) -> str: ...

    @property
    def virtual_size(self) -> int: ...

    @property
    def base(self) -> VolumeManifest | None: ...

    def iter_chunks(self) -> Iterator[tuple[int, bytes]]: ...


@runtime_checkable
class ParallelSource(Protocol):
    """A ``VolumeSource`` that also offers its reads as tasks for ingest's workers (optional).

    ``reads`` is entered once per ingest of the volume and yields the tasks lazily, in chunk
    order; ingest has finished or abandoned every task it started before it leaves the context,
    so the context may own what the tasks share (an open file). ``read_workers`` is how many
    tasks the source wants running at once: 0 leaves it to ingest (one per core); a network
    source asks for more, to keep its requests in flight while other workers compress.
    """

    @property
    def read_workers(self) -> int: ...

    def reads(self) -> AbstractContextManager[Iterator[ReadTask]]: ...


@runtime_checkable
class ChunkObserver(Protocol):
    """A ``VolumeSource`` that wants to know each chunk's id once ingest has computed it (optional).

    Ingest calls ``chunks_ingested`` on its own thread, in source order, with ``(chunk index,
    chunk id)`` pairs (``None`` for a zero chunk), before any of those chunks goes into a pack that
    is uploaded. The export journal records them from here instead of hashing each block twice.
    """

    def chunks_ingested(self, chunks: Sequence[tuple[int, bytes | None]]) -> None: ...


def data_extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, end) of the data regions of a file, by SEEK_DATA/SEEK_HOLE.

    Filesystems without hole reporting answer with one extent covering the file, which is
    correct, just slower (zero chunks are then read and dropped by ingest).
    """
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no data after pos
                return
            raise
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, min(end, size)
        pos = end


def chunk_indexes(extents: Iterator[tuple[int, int]]) -> Iterator[int]:
    """The chunk indexes that overlap any extent, ascending, each once."""
    for index, _ in chunk_pieces(extents):
        yield index


#: Where a chunk's data lies: (start, end) offsets inside the chunk, ascending, not touching.
Pieces = list[tuple[int, int]]


def chunk_pieces(extents: Iterator[tuple[int, int]]) -> Iterator[tuple[int, Pieces]]:
    """Each chunk that overlaps an extent, ascending, with the parts of it the extents cover."""
    index, pieces = -1, Pieces()
    for start, end in extents:
        while start < end:
            i = start // CHUNK_SIZE
            if i != index:
                if pieces:
                    yield index, pieces
                index, pieces = i, []
            stop = min(end, (i + 1) * CHUNK_SIZE)
            a, b = start - i * CHUNK_SIZE, stop - i * CHUNK_SIZE
            if pieces and pieces[-1][1] == a:
                pieces[-1] = (pieces[-1][0], b)  # extents that touch make one piece
            else:
                pieces.append((a, b))
            start = stop
    if pieces:
        yield index, pieces


@dataclass(frozen=True)
class RawFileSource:
    """A raw disk image file (or block device): only its data extents are read."""

    path: Path
    name: str = "disk0"
    base: VolumeManifest | None = None

    @property
    def virtual_size(self) -> int:
        with open(self.path, "rb") as f:
            return f.seek(0, os.SEEK_END)

    @property
    def read_workers(self) -> int:
        return 0

    @contextlib.contextmanager
    def reads(self) -> Iterator[Iterator[ReadTask]]:
        size = self.virtual_size
        fd = os.open(self.path, os.O_RDONLY)
        try:
            with contextlib.suppress(AttributeError, OSError):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
            # pread has no shared file position: every task may use the one descriptor.
            yield (
                partial(self._read, fd, size, batch)
                for batch in _batches(chunk_pieces(data_extents(fd, size)), READ_BATCH)
            )
        finally:
            os.close(fd)

    def iter_chunks(self) -> Iterator[tuple[int, bytes]]:
        # A reader thread keeps READ_AHEAD tasks ahead, so the consumer never waits on the disk
        # or the page-cache copy. (Ingest does not come here: it runs ``reads`` on its workers.)
        with self.reads() as tasks, ThreadPoolExecutor(1, thread_name_prefix="read") as reader:
            pending: deque[Future[list[tuple[int, bytes]]]] = deque()
            for task in tasks:
                pending.append(reader.submit(task))
                if len(pending) > READ_AHEAD:
                    yield from pending.popleft().result()
            while pending:
                yield from pending.popleft().result()

    def _read(
        self, fd: int, size: int, chunks: list[tuple[int, Pieces]]
    ) -> list[tuple[int, bytes]]:
        out = []
        for index, pieces in chunks:
            offset = index * CHUNK_SIZE
            want = min(CHUNK_SIZE, size - offset)
            if pieces == [(0, want)]:
                data = self._pread(fd, want, offset)
            else:
                # Read only the data; the holes between are zeros already. A chunk that holds a
                # 4 KiB inode table costs a 4 KiB read, not a 512 KiB copy of zeroed pages.
                parts: list[bytes | memoryview] = []
                at = 0
                for start, end in pieces:
                    end = min(end, want)
                    if start >= end:
                        continue
                    parts += (_ZEROS[: start - at], self._pread(fd, end - start, offset + start))
                    at = end
                parts.append(_ZEROS[: want - at])
                data = b"".join(parts)
            out.append((index, data))
        return out

    def _pread(self, fd: int, length: int, offset: int) -> bytes:
        data = os.pread(fd, length, offset)
        if len(data) != length:
            raise InputError(f"{self.path}: short read at offset {offset} (file shrank?)")
        return data


_ZEROS = memoryview(bytes(CHUNK_SIZE))


def _batches(items: Iterator[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@contextlib.contextmanager
def open_disk(
    path: Path, *, name: str = "disk0", source_format: str | None = None
) -> Iterator[VolumeSource]:
    """A ``VolumeSource`` for any qemu-readable disk image.

    Raw images are read in place. Other formats are first converted by qemu-img into a sparse
    raw file in the system temporary directory (it occupies about the image's data size) and read
    from there; the temporary file is removed on exit.
    """
    from imagekit.convert import qemu_img
    from imagekit.convert.pipeline import inspect_source

    info = inspect_source(path, source_format)
    if info.format == "raw":
        yield RawFileSource(path, name)
        return
    with tempfile.TemporaryDirectory(prefix="imagekit-ingest-") as tmp:
        raw = Path(tmp) / "disk.raw"
        try:
            qemu_img.convert(path, raw, src_format=info.format, dst_format="raw")
        except qemu_img.QemuImgFailed as exc:
            # Named by the input, not the temporary file the user never asked for.
            raise ConvertError(
                f"{path}: cannot read it as raw ({info.virtual_size} bytes virtual): {exc}",
                hint=f"it is converted to a sparse raw file in {Path(tmp).parent} first",
            ) from exc
        yield RawFileSource(raw, name)


__all__ = [
    "ChunkObserver",
    "ParallelSource",
    "RawFileSource",
    "ReadTask",
    "VolumeSource",
    "chunk_indexes",
    "chunk_pieces",
    "data_extents",
    "open_disk",
]
