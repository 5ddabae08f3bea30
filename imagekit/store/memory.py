"""Let the C allocator reuse freed chunk-sized buffers instead of returning them to the kernel.

Ingest and restore allocate a few buffers of 512 KiB to 32 MiB per chunk (reads, zstd output,
ciphertext, pack bytes), each freed soon after. glibc serves allocations above its mmap
threshold (128 KiB by default) with a fresh ``mmap`` and unmaps them on free, so every buffer
costs one page fault per 4 KiB page plus the kernel zeroing it: measured here, 0.5 ms for a
512 KiB copy that takes 25 µs in reused memory, and half of a full ingest's CPU time. Raising
the mmap and trim thresholds above the largest buffer (a pack) keeps freed buffers in the heap,
where the next one of the same size lands; peak memory is unchanged, since those buffers are
alive at the same time anyway.

Process-wide and glibc-specific: elsewhere (musl, macOS) this does nothing, which is correct,
just slower.

``PageBuffers`` keeps page-aligned buffers for packs that a directory store writes with
``O_DIRECT`` (``backends/local.py``), reused for the same reason.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import sys
import threading
from collections.abc import Iterator

#: mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Above a pack (32 MiB plus one blob and its header), so pack buffers are reused too.
MMAP_THRESHOLD = 64 << 20
#: glibc's own rule when it raises the threshold itself: trim at twice the mmap threshold.
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD

_lock = threading.Lock()
_done = False


def reuse_freed_buffers() -> bool:
    """Tune the allocator once per process; True when it took effect."""
    global _done
    with _lock:
        if _done:
            return True
        if not sys.platform.startswith("linux"):
            return False
        try:
            mallopt = ctypes.CDLL(None).mallopt
        except (OSError, AttributeError):
            return False
        mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        mallopt.restype = ctypes.c_int
        # Trim first: setting either turns off glibc's dynamic adjustment of both.
        _done = bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(
            mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        )
        return _done


#: Buffer sizes are rounded up to this, so that packs of slightly different sizes (a pack closes
#: at the first blob past its target) fit the same buffer.
BUFFER_GRAIN = 1 << 20


class PageBuffers:
    """Page-aligned buffers (anonymous maps), handed out one at a time and kept for reuse.

    A fresh map costs a page fault and a zeroed page per 4 KiB on first touch, as much CPU as
    the copy into it; kept, the same pages serve every pack. As many buffers exist as were ever
    in use at once (ingest: one per pack being written).
    """

    def __init__(self) -> None:
        self._free: list[mmap.mmap] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def take(self, size: int) -> Iterator[memoryview]:
        """A writable view of ``size`` bytes at a page boundary, valid inside the block."""
        with self._lock:
            fits = [b for b in self._free if len(b) >= size]
            buf = min(fits, key=len) if fits else None
            if buf is not None:
                self._free.remove(buf)
        if buf is None:
            buf = mmap.mmap(-1, max(BUFFER_GRAIN, -(-size // BUFFER_GRAIN) * BUFFER_GRAIN))
        view = memoryview(buf)[:size]
        try:
            yield view
        finally:
            view.release()  # a caller that kept the view gets an error, not the next pack's bytes
            with self._lock:
                self._free.append(buf)


def page_aligned(data: object) -> bool:
    """True when ``data`` is a writable buffer that starts at a page boundary."""
    try:
        address = ctypes.addressof(ctypes.c_char.from_buffer(data))  # type: ignore[arg-type]
    except (TypeError, ValueError):  # read-only (bytes) or empty
        return False
    return address % mmap.PAGESIZE == 0


__all__ = ["MMAP_THRESHOLD", "PageBuffers", "page_aligned", "reuse_freed_buffers"]
