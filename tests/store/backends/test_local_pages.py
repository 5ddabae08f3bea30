"""A local store drops the cached pages of what it wrote (see ``fsutil.drop_cached_pages``)."""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
from pathlib import Path

import pytest

from imagekit.store.backends.local import LocalBackend

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mincore is Linux's")


def resident_pages(path: Path) -> int:
    """Pages of ``path`` in the page cache, asked of the kernel with mincore(2)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    size = path.stat().st_size
    vec = ctypes.create_string_buffer(-(-size // mmap.PAGESIZE))
    # A private mapping: writable, so ctypes can take its address; nothing is ever written, so
    # every page mincore sees is the file's page-cache page.
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_COPY) as mm:
        first = ctypes.c_char.from_buffer(mm)
        try:
            if libc.mincore(ctypes.addressof(first), size, vec) != 0:
                raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        finally:
            del first  # the mapping cannot close while ctypes holds a view of it
    return sum(b & 1 for b in vec.raw)


def test_written_object_leaves_no_pages_cached(tmp_path: Path) -> None:
    data = os.urandom(4 << 20)
    plain = tmp_path / "plain"
    plain.write_bytes(data)  # the control: an ordinary write stays cached
    assert resident_pages(plain) > 0

    backend = LocalBackend(tmp_path / "store")
    backend.write("packs/ab/pack", data)
    assert resident_pages(tmp_path / "store" / "packs" / "ab" / "pack") == 0
    assert backend.read("packs/ab/pack") == data
