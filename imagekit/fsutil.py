"""Filesystem edges shared by every writer: outputs appear whole or not at all."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from imagekit.errors import UsageError


@contextmanager
def staging_dir(dst: Path) -> Iterator[Path]:
    """A private directory beside ``dst`` (same filesystem, so renames are atomic), always removed.

    Work happens inside it; the caller renames its finished file onto ``dst`` with ``publish``.
    A crash or Ctrl-C leaves at worst a hidden ``.NAME.*`` folder, never a partial ``dst``.
    """
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".partial", dir=dst.parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish(src: Path, dst: Path) -> None:
    """Atomically rename ``src`` onto ``dst`` and make the rename durable."""
    with open(src, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(src, dst)
    fd = os.open(dst.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_output_path(dst: Path, *, force: bool) -> None:
    """Refuse to clobber an existing output unless told to; the folder must exist."""
    if not dst.parent.is_dir():
        raise UsageError(f"{dst.parent}: output folder does not exist")
    if dst.exists() and not force:
        raise UsageError(f"{dst}: already exists", hint="pass --force to replace it")


def check_free_space(folder: Path, needed: int) -> None:
    """Fail before long work when ``folder``'s filesystem cannot hold ``needed`` more bytes."""
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise UsageError(
            f"{folder}: {free / 2**20:.0f} MiB free, about {needed / 2**20:.0f} MiB needed",
            hint="free space or write the output elsewhere",
        )


def allocated_bytes(path: Path) -> int:
    """Bytes the file occupies on disk (a sparse file's holes are free)."""
    return os.stat(path).st_blocks * 512
