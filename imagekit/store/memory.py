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
"""

from __future__ import annotations

import ctypes
import sys
import threading

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


__all__ = ["MMAP_THRESHOLD", "reuse_freed_buffers"]
