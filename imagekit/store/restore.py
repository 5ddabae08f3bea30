"""Restore: an image's volumes back to disk files, sparse, byte-identical.

Raw output is written in place: a temporary file beside the output is sized to the volume, only
non-zero chunks are written (zero chunks stay holes), then it is flushed and renamed. Blobs are
fetched by range reads that merge neighbouring blobs of one pack; a pool of workers fetches,
decrypts, decompresses, checks and writes them (``os.pwrite`` at the chunk's offset).

Other formats: the raw volume is restored into a sparse temporary file in the output's directory
and ``imagekit.convert.convert_image`` converts it; the temporary file takes about the image's
data size on disk until the conversion finishes.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import tempfile
from collections import defaultdict, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagekit.errors import ImagekitError, IntegrityError, UsageError
from imagekit.fsutil import check_free_space
from imagekit.progress import NullProgress, Progress
from imagekit.store.format import CHUNK_SIZE
from imagekit.store.index import Index, Location
from imagekit.store.manifest import StoredImage, VolumeManifest
from imagekit.store.memory import reuse_freed_buffers
from imagekit.store.pack import pack_name
from imagekit.store.repository import Repository
from imagekit.timing import CONVERT, DECRYPT_BUSY, FETCH_BUSY, RESTORE, Stopwatch

#: Merge blobs of one pack into one range read while the gap between them is below this...
MAX_READ_GAP = 256 << 10
#: ...and the read stays below this: large reads amortise request latency, small keep memory low.
MAX_READ_SIZE = 8 << 20

#: Holes are kept at this granularity: the page size, what filesystems allocate.
SPARSE_PAGE = 4096
_ZERO_PAGE = bytes(SPARSE_PAGE)

FORMAT_SUFFIX = {
    "raw": ".raw",
    "qcow2": ".qcow2",
    "vmdk": ".vmdk",
    "vhd-azure": ".vhd",
    "vhdx": ".vhdx",
    "gce": ".tar.gz",
}


#: The largest disk each output format holds, checked before a restore starts (a fixed VHD above
#: qemu-img's limit used to fail only after the whole volume was restored). VHD: 2040 GiB, the
#: most qemu-img's ``vpc`` writes (and the VHD format's CHS-era ceiling); VHDX: 64 TiB (its
#: specification). The other formats hold more than EBS's 64 TiB volumes.
TARGET_MAX_SIZE = {"vhd-azure": 2040 << 30, "vhdx": 64 << 40}


def check_target_sizes(image: StoredImage, fmt: str) -> None:
    """``UsageError`` naming the first volume too large for ``fmt`` (pure)."""
    limit = TARGET_MAX_SIZE.get(fmt)
    if limit is None:
        return
    for v in image.manifest.volumes:
        if v.virtual_size > limit:
            raise UsageError(
                f"volume {v.name} of image {image.id[:12]} is {v.virtual_size >> 30} GiB; "
                f"{fmt} holds at most {limit >> 30} GiB",
                hint="restore it as raw or qcow2",
            )


@dataclass(frozen=True)
class _Run:
    """One range read of a pack and the blobs inside it."""

    pack_id: str
    start: int
    end: int
    blobs: tuple[tuple[bytes, Location, tuple[int, ...]], ...]  # chunk id, where, chunk indexes


def plan_reads(volume: VolumeManifest, index: Index, where: str) -> list[_Run]:
    """Group the volume's chunks into range reads (pure, given the index)."""
    targets: dict[bytes, list[int]] = defaultdict(list)
    for chunk_index, cid in volume.chunks:
        targets[cid].append(chunk_index)
    by_pack: dict[str, list[tuple[bytes, Location]]] = defaultdict(list)
    for cid, indexes in targets.items():
        loc = index.get(cid)
        if loc is None:
            raise IntegrityError(f"{where}: chunk {cid.hex()[:16]} is in no index")
        # Never write past the volume's end: decode_blob holds each chunk to raw_length.
        if max(indexes) * CHUNK_SIZE + loc.raw_length > volume.virtual_size:
            raise IntegrityError(
                f"{where}: chunk {cid.hex()[:16]} ({loc.raw_length} bytes at chunk index "
                f"{max(indexes)}) would end past volume {volume.name}'s {volume.virtual_size} bytes"
            )
        by_pack[loc.pack_id].append((cid, loc))
    runs: list[_Run] = []
    for pack_id, blobs in by_pack.items():
        blobs.sort(key=lambda b: b[1].offset)
        current: list[tuple[bytes, Location, tuple[int, ...]]] = []
        start = end = 0
        for cid, loc in blobs:
            if current and (
                loc.offset - end > MAX_READ_GAP or loc.offset + loc.length - start > MAX_READ_SIZE
            ):
                runs.append(_Run(pack_id, start, end, tuple(current)))
                current = []
            if not current:
                start = loc.offset
            current.append((cid, loc, tuple(targets[cid])))
            end = max(end, loc.offset + loc.length)
        runs.append(_Run(pack_id, start, end, tuple(current)))
    return runs


def _read_run(
    repo: Repository, run: _Run, clock: Stopwatch
) -> Iterator[tuple[bytes, tuple[int, ...]]]:
    """The decrypted, checked chunks of one run with the chunk indexes they fill."""
    name = pack_name(run.pack_id)
    with clock.time(FETCH_BUSY):
        data = repo.backend.read(name, run.start, run.end - run.start)
    if len(data) != run.end - run.start:
        raise IntegrityError(f"{repo.where(name)}: truncated read")
    view = memoryview(data)
    for cid, loc, indexes in run.blobs:
        offset = loc.offset - run.start
        with clock.time(DECRYPT_BUSY):
            chunk = repo.decode_blob(loc, cid, view[offset : offset + loc.length])
        yield chunk, indexes


def write_sparse(fd: int, chunk: bytes, offset: int) -> None:
    """Write ``chunk`` at ``offset`` leaving its all-zero pages as holes.

    A chunk is 512 KiB but the source's allocation is finer (a 4 KiB metadata block alone in a
    chunk); writing whole chunks would allocate up to 128x what the source did.
    """
    if chunk.find(_ZERO_PAGE) < 0:  # fast path: no zero page anywhere (C speed)
        os.pwrite(fd, chunk, offset)
        return
    view = memoryview(chunk)
    start = None
    for pos in range(0, len(chunk), SPARSE_PAGE):
        # Slicing the bytes (a 4 KiB copy, then memcmp) is ~40x faster than comparing a
        # memoryview slice, which CPython compares item by item.
        page = chunk[pos : pos + SPARSE_PAGE]
        zero = page == _ZERO_PAGE[: len(page)]
        if not zero and start is None:
            start = pos
        elif zero and start is not None:
            os.pwrite(fd, view[start:pos], offset + start)
            start = None
    if start is not None:
        os.pwrite(fd, view[start:], offset + start)


def _fetch(repo: Repository, run: _Run, fd: int, clock: Stopwatch) -> int:
    written = 0
    for chunk, indexes in _read_run(repo, run, clock):
        # Writing the plaintext is counted with decrypting: both are the CPU side of a restore.
        with clock.time(DECRYPT_BUSY):
            for i in indexes:
                write_sparse(fd, chunk, i * CHUNK_SIZE)
                written += len(chunk)
    return written


def iter_volume(
    repo: Repository, index: Index, volume: VolumeManifest, *, workers: int = 2
) -> Iterator[tuple[int, bytes]]:
    """(chunk index, data) of every non-zero chunk, fetched ``workers`` runs ahead (for copy)."""
    runs = plan_reads(volume, index, repo.url)
    clock = Stopwatch()  # copy reports no stages
    with ThreadPoolExecutor(workers) as pool:
        pending: deque[Future[list[tuple[bytes, tuple[int, ...]]]]] = deque()
        for run in runs:
            pending.append(pool.submit(lambda r: list(_read_run(repo, r, clock)), run))
            if len(pending) > workers:
                yield from _spread(pending.popleft().result())
        while pending:
            yield from _spread(pending.popleft().result())


def _spread(chunks: list[tuple[bytes, tuple[int, ...]]]) -> Iterator[tuple[int, bytes]]:
    for chunk, indexes in chunks:
        for i in indexes:
            yield i, chunk


def restore_volume_raw(
    repo: Repository,
    index: Index,
    volume: VolumeManifest,
    out: Path,
    *,
    progress: Progress | None = None,
    workers: int | None = None,
    clock: Stopwatch | None = None,
) -> Path:
    """Write ``volume`` as a sparse raw file at ``out`` (temporary name, then rename)."""
    bar = progress or NullProgress()
    clock = clock or Stopwatch()
    runs = plan_reads(volume, index, repo.url)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, volume.virtual_size)
        bar.start(f"restore {volume.name}", float(len(volume.chunks) * CHUNK_SIZE))
        with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
            for written in pool.map(lambda r: _fetch(repo, r, fd, clock), runs):
                bar.advance(written)
        bar.finish()
        os.fsync(fd)
    except BaseException as exc:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _write_failed(out, exc) from exc
        raise
    os.close(fd)
    # Left 0600 (as created): a disk image holds whatever secrets the machine had; widen it
    # deliberately if others must read it.
    os.replace(tmp, out)
    return out


def _write_failed(out: Path, exc: OSError) -> ImagekitError:
    """A failed write of the output: a full disk is the user's to fix (as the free-space
    check before the work says), anything else a failed restore."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return UsageError(
            f"{out}: no space left while restoring ({exc.strerror})",
            hint="free space or restore elsewhere; nothing was left behind",
        )
    return ImagekitError(f"{out}: cannot write ({exc.strerror})")


def _space_needed(image: StoredImage, fmt: str) -> int:
    """At most what a restore writes: every stored chunk whole, and for a converted format
    the raw copy and the converted one side by side until the rename."""
    data = sum(len(v.chunks) for v in image.manifest.volumes) * CHUNK_SIZE
    return data if fmt == "raw" else 2 * data


def _safe(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return cleaned or "volume"


def output_paths(image: StoredImage, out: Path, fmt: str) -> list[Path]:
    """One file for a single-volume image; ``out/<volume><suffix>`` for several."""
    volumes = image.manifest.volumes
    if len(volumes) == 1:
        return [out]
    names = [_safe(v.name) for v in volumes]
    if len(set(names)) != len(names):
        names = [f"{i}-{n}" for i, n in enumerate(names)]
    return [out / f"{n}{FORMAT_SUFFIX[fmt]}" for n in names]


@contextmanager
def _staging(directory: Path) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=".imagekit-restore-", dir=directory) as tmp:
        yield Path(tmp)


def restore(
    repo: Repository,
    image: StoredImage,
    out: Path,
    *,
    fmt: str = "raw",
    force: bool = False,
    progress: Progress | None = None,
    workers: int | None = None,
    clock: Stopwatch | None = None,
) -> list[dict[str, Any]]:
    """Restore every volume of ``image``; return one record per written file.

    ``clock`` (``imagekit.timing``) receives where the time went: fetch, decrypt, convert.
    """
    clock = clock or Stopwatch()
    if fmt not in FORMAT_SUFFIX:
        raise UsageError(f"unknown format {fmt!r} (one of {', '.join(FORMAT_SUFFIX)})")
    check_target_sizes(image, fmt)
    paths = output_paths(image, out, fmt)
    if len(paths) > 1:
        if out.exists() and not out.is_dir():
            raise UsageError(f"{out}: a multi-volume image restores into a directory")
        out.mkdir(parents=True, exist_ok=True)
    for p in paths:
        if p.exists() and not force:
            raise UsageError(f"{p}: exists (use --force to replace it)")
    if not paths[0].parent.is_dir():
        raise UsageError(f"{paths[0].parent}: no such directory")
    check_free_space(paths[0].parent, _space_needed(image, fmt))
    results = []
    reuse_freed_buffers()
    with repo.lock(exclusive=False):
        index = repo.load_index()
        for volume, path in zip(image.manifest.volumes, paths, strict=True):
            restore_raw = functools.partial(
                restore_volume_raw, repo, index, volume, progress=progress, workers=workers
            )
            if fmt == "raw":
                with clock.time(RESTORE):
                    restore_raw(path, clock=clock)
            else:
                from imagekit.convert import convert_image

                with _staging(path.parent) as stage:
                    with clock.time(RESTORE):
                        raw = restore_raw(stage / "disk.raw", clock=clock)
                    with clock.time(CONVERT):
                        # Converted inside the staging folder (0700), made 0600 there, then
                        # renamed into place: qemu-img and tar create files by the umask
                        # (0644 usually), and a disk image is never to be readable by others.
                        converted = stage / f"converted{FORMAT_SUFFIX[fmt]}"
                        convert_image(raw, converted, fmt, source_format="raw", progress=progress)
                        os.chmod(converted, 0o600)
                        os.replace(converted, path)
            results.append(
                {
                    "volume": volume.name,
                    "path": str(path),
                    "format": fmt,
                    "virtual_size": volume.virtual_size,
                }
            )
    return results


__all__ = [
    "FORMAT_SUFFIX",
    "TARGET_MAX_SIZE",
    "check_target_sizes",
    "iter_volume",
    "output_paths",
    "plan_reads",
    "restore",
    "restore_volume_raw",
    "write_sparse",
]
