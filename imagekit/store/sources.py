"""Where ingest reads volumes from: the ``VolumeSource`` protocol and local disk images.

The AWS exporter implements the same protocol over EBS direct APIs (changed blocks of a snapshot
with the previous image's volume as ``base``), so ingest has one code path for both.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from imagekit.errors import InputError
from imagekit.store.format import CHUNK_SIZE
from imagekit.store.manifest import VolumeManifest

#: Chunks per read request of ``RawFileSource``'s reader thread (4 MiB)...
READ_BATCH = 8
#: ...and how many such requests it runs ahead of the consumer (at most 12 MiB held).
READ_AHEAD = 2


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
    last = -1
    for start, end in extents:
        for index in range(max(start // CHUNK_SIZE, last + 1), -(-end // CHUNK_SIZE)):
            yield index
            last = index


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

    def iter_chunks(self) -> Iterator[tuple[int, bytes]]:
        size = self.virtual_size
        fd = os.open(self.path, os.O_RDONLY)
        try:
            with contextlib.suppress(AttributeError, OSError):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
            # A reader thread keeps READ_AHEAD batches ahead: the caller's thread (which hands
            # chunks to ingest's workers) then never waits on the disk or the page-cache copy.
            with ThreadPoolExecutor(1, thread_name_prefix="read") as reader:
                pending: deque[Future[list[tuple[int, bytes]]]] = deque()
                for batch in _batches(chunk_indexes(data_extents(fd, size)), READ_BATCH):
                    pending.append(reader.submit(self._read, fd, size, batch))
                    if len(pending) > READ_AHEAD:
                        yield from pending.popleft().result()
                while pending:
                    yield from pending.popleft().result()
        finally:
            os.close(fd)

    def _read(self, fd: int, size: int, indexes: list[int]) -> list[tuple[int, bytes]]:
        out = []
        for index in indexes:
            offset = index * CHUNK_SIZE
            want = min(CHUNK_SIZE, size - offset)
            data = os.pread(fd, want, offset)
            if len(data) != want:
                raise InputError(f"{self.path}: short read at offset {offset} (file shrank?)")
            out.append((index, data))
        return out


def _batches(items: Iterator[int], size: int) -> Iterator[list[int]]:
    batch: list[int] = []
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
        qemu_img.convert(path, raw, src_format=info.format, dst_format="raw")
        yield RawFileSource(raw, name)


__all__ = ["RawFileSource", "VolumeSource", "chunk_indexes", "data_extents", "open_disk"]
