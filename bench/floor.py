"""What day 2 must add at the least with fixed 512 KiB chunks, measured on the benchmark disks.

A chunk of day 2 that matches no chunk of day 1 must be stored, whatever the tool does with the
rest; the best it can do is compress it. This reads both disks' data extents, finds those chunks,
and compresses each with zstd -19 (far slower than any backup would run, so a lower bound for any
level) or stores it raw when that is smaller, which is imagekit's blob rule.
"""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import blake3
import zstandard

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from imagekit.store.format import CHUNK_SIZE  # noqa: E402
from imagekit.store.sources import chunk_indexes, data_extents  # noqa: E402

#: The best zstd level short of --ultra (whose windows exceed a chunk anyway).
BEST_LEVEL = 19


@dataclass(frozen=True)
class Floor:
    chunks: int  # day-2 chunks (not all zero) that match no day-1 chunk
    raw_bytes: int  # their size
    best_bytes: int  # what they take at best: zstd -19 or raw, whichever is smaller
    incompressible: int  # how many of them zstd cannot shrink at all
    day2_read: int  # bytes of the chunks that overlap day 2's data: what an ingest reads


def _chunks(path: Path) -> tuple[dict[bytes, bytes], int]:
    """Digest → data of every chunk of ``path`` that is not all zeros, and the bytes read."""
    out: dict[bytes, bytes] = {}
    read = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        for index in chunk_indexes(data_extents(fd, size)):
            data = os.pread(fd, min(CHUNK_SIZE, size - index * CHUNK_SIZE), index * CHUNK_SIZE)
            read += len(data)
            if data.count(0) != len(data):
                out[blake3.blake3(data).digest()] = data
    finally:
        os.close(fd)
    return out, read


def day2_floor(day1: Path, day2: Path) -> Floor:
    old = _chunks(day1)[0].keys()
    chunks, read = _chunks(day2)
    new = [data for digest, data in chunks.items() if digest not in old]
    local = threading.local()

    def packed(data: bytes) -> int:
        if not hasattr(local, "zstd"):
            local.zstd = zstandard.ZstdCompressor(level=BEST_LEVEL)  # not thread-safe: one each
        return len(local.zstd.compress(data))

    with ThreadPoolExecutor(os.cpu_count()) as pool:  # zstd releases the GIL
        sizes = list(pool.map(packed, new))
    best = sum(min(p, len(d)) + 1 for p, d in zip(sizes, new, strict=True))  # + the type byte
    incompressible = sum(p >= len(d) for p, d in zip(sizes, new, strict=True))
    return Floor(len(new), sum(map(len, new)), best, incompressible, read)


__all__ = ["Floor", "day2_floor"]
