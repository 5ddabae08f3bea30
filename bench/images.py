"""The benchmark's disk images, built from a fixed seed (same layout on every run).

Day 1: a 4 GiB sparse raw disk holding ~1 GiB of mixed data — slices of a tar of /usr (real
binaries and text, compressible), random data (incompressible), written zeros (allocated but
empty), holes, and small "metadata" blocks spread over the whole disk.
Day 2: a copy with ~1 % of the data rewritten at ~100 scattered offsets and ~50 MiB appended.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

MiB = 1 << 20
GiB = 1 << 30
DISK_SIZE = 4 * GiB
SEED = 20261125
#: Bumped whenever the layout changes, so cached images are rebuilt.
LAYOUT_VERSION = 1


def _usr_tar(limit: int) -> bytes:
    """The first ``limit`` bytes of a tar of /usr (sorted names, so the same on one machine)."""
    proc = subprocess.Popen(
        ["tar", "-c", "--sort=name", "-f", "-", "/usr/lib", "/usr/share"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    data = proc.stdout.read(limit)
    proc.kill()
    proc.wait()
    return data


def build_day1(path: Path) -> None:
    rng = random.Random(SEED)
    usr = _usr_tar(600 * MiB)
    pieces: list[tuple[str, int]] = []
    pieces += [("usr", rng.randint(1, 16) * MiB) for _ in range(70)]
    pieces += [("random", rng.randint(1, 8) * MiB) for _ in range(55)]
    pieces += [("zeros", rng.randint(1, 8) * MiB) for _ in range(22)]
    rng.shuffle(pieces)
    total = sum(size for _, size in pieces)
    gap = (DISK_SIZE - total - 256 * MiB) // len(pieces)
    usr_at = 0
    tmp = path.with_suffix(".partial")
    with tmp.open("wb") as out:
        out.truncate(DISK_SIZE)
        offset = 0
        for kind, size in pieces:
            offset += rng.randrange(0, gap, 4096)
            out.seek(offset)
            if kind == "usr":
                chunk = usr[usr_at : usr_at + size]
                usr_at = (usr_at + size) % max(1, len(usr) - 16 * MiB)
                out.write(chunk)
            elif kind == "random":
                out.write(rng.randbytes(size))
            else:
                out.write(bytes(size))
            offset += size
        # Small metadata blocks (inode tables, journals, superblock copies) all over the disk.
        for _ in range(2000):
            out.seek(rng.randrange(0, DISK_SIZE - 65536, 4096))
            out.write(rng.randbytes(rng.choice((4096, 8192, 16384, 65536))))
    tmp.rename(path)


def data_extents(path: Path) -> list[tuple[int, int]]:
    """(offset, length) of the file's data, by SEEK_DATA/SEEK_HOLE."""
    import os

    extents = []
    with path.open("rb") as handle:
        fd, end, pos = handle.fileno(), os.fstat(handle.fileno()).st_size, 0
        while pos < end:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            stop = os.lseek(fd, start, os.SEEK_HOLE)
            extents.append((start, stop - start))
            pos = stop
    return extents


def build_day2(day1: Path, path: Path) -> None:
    rng = random.Random(SEED + 2)
    tmp = path.with_suffix(".partial")
    # Copy extent by extent: cp would turn day 1's written zeros into holes.
    with day1.open("rb") as src, tmp.open("wb") as dst:
        dst.truncate(DISK_SIZE)
        for start, length in data_extents(day1):
            src.seek(start)
            dst.seek(start)
            for off in range(0, length, 16 * MiB):
                dst.write(src.read(min(16 * MiB, length - off)))
    extents = [e for e in data_extents(day1) if e[1] >= 256 * 1024]
    data = sum(length for _, length in extents)
    per_write = max(4096, (data // 100) // 100 // 4096 * 4096)  # 1 % of data over 100 writes
    with tmp.open("r+b") as out:
        for _ in range(100):
            start, length = rng.choice(extents)
            out.seek(start + rng.randrange(0, max(1, length - per_write), 4096))
            out.write(rng.randbytes(per_write))
        out.seek(DISK_SIZE)
        out.write(rng.randbytes(50 * MiB))
    tmp.rename(path)


def ensure_images(folder: Path) -> tuple[Path, Path]:
    """Build (or reuse) day-1 and day-2 images in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / "layout"
    day1, day2 = folder / "day1.raw", folder / "day2.raw"
    if not (
        stamp.exists()
        and stamp.read_text() == str(LAYOUT_VERSION)
        and day1.exists()
        and day2.exists()
    ):
        for stale in (day1, day2):
            stale.unlink(missing_ok=True)
        build_day1(day1)
        build_day2(day1, day2)
        stamp.write_text(str(LAYOUT_VERSION))
    return day1, day2


if __name__ == "__main__":
    import sys

    d1, d2 = ensure_images(Path(sys.argv[1] if len(sys.argv) > 1 else "build/bench/images"))
    for p in (d1, d2):
        print(p, p.stat().st_size, sum(length for _, length in data_extents(p)))
    shutil.disk_usage(d1.parent)
