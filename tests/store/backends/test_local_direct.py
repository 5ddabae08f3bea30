"""A local store writes packs from page-aligned buffers with O_DIRECT, and falls back cleanly.

The real filesystem under ``tmp_path`` takes the direct writes. The fallbacks (a filesystem that
refuses O_DIRECT, an EINVAL half-way, a full disk) are forced by wrapping the two system calls
the backend makes, ``fcntl`` and ``write``, around the real ones: what the kernel would answer
there cannot be arranged on one filesystem.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imagekit.errors import StoreError
from imagekit.store.backends import local
from imagekit.store.backends.local import DIRECT_BLOCK, LocalBackend
from imagekit.store.memory import PageBuffers, page_aligned
from imagekit.store.pack import object_id, pack_name
from imagekit.store.repository import Repository
from tests.store.helpers import MemoryBackend

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="O_DIRECT is Linux's")

SIZE = (3 << 20) + 1234  # three whole MiB and a tail that O_DIRECT cannot write


class Calls:
    """Records the writes made while O_DIRECT is on; optional faults on top of the real calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.direct_writes: list[int] = []
        self.cached_writes: list[int] = []
        self.refuse_direct = False
        self.on_direct_write: Callable[[int, memoryview], int] | None = None
        real_fcntl, real_write = fcntl.fcntl, os.write

        def spy_fcntl(fd: int, cmd: int, arg: int = 0) -> Any:
            if cmd == fcntl.F_SETFL and arg & os.O_DIRECT and self.refuse_direct:
                raise OSError(errno.EINVAL, "Invalid argument")
            return real_fcntl(fd, cmd, arg)

        def spy_write(fd: int, data: Any) -> int:
            if real_fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
                if self.on_direct_write is not None:
                    return self.on_direct_write(fd, memoryview(data))
                self.direct_writes.append(len(data))
            else:
                self.cached_writes.append(len(data))
            return real_write(fd, data)

        self.real_write = real_write
        monkeypatch.setattr(local.fcntl, "fcntl", spy_fcntl)
        monkeypatch.setattr(local.os, "write", spy_write)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    return Calls(monkeypatch)


def test_an_aligned_view_goes_past_the_cache_and_its_tail_through_it(
    tmp_path: Path, calls: Calls
) -> None:
    data = os.urandom(SIZE)
    with PageBuffers().take(SIZE) as view:
        view[:] = data
        assert page_aligned(view)
        LocalBackend(tmp_path).write_from("data/ab/pack", view)
    assert (tmp_path / "data" / "ab" / "pack").read_bytes() == data
    assert calls.direct_writes == [SIZE - SIZE % DIRECT_BLOCK]
    assert calls.cached_writes == [SIZE % DIRECT_BLOCK]
    assert not [p for p in (tmp_path / "data" / "ab").iterdir() if p.name.startswith(".")]


def test_bytes_and_small_objects_are_written_through_the_cache(
    tmp_path: Path, calls: Calls
) -> None:
    backend = LocalBackend(tmp_path)
    data = os.urandom(SIZE)
    backend.write("data/ab/bytes", data)  # bytes: not page-aligned memory
    with PageBuffers().take(64 << 10) as view:
        view[:] = data[: 64 << 10]
        backend.write_from("data/ab/small", view)
    assert calls.direct_writes == []
    assert backend.read("data/ab/bytes") == data
    assert backend.read("data/ab/small") == data[: 64 << 10]


def test_a_filesystem_that_refuses_o_direct_gets_a_cached_write(
    tmp_path: Path, calls: Calls
) -> None:
    calls.refuse_direct = True  # tmpfs before Linux 6.6 answers F_SETFL with EINVAL
    data = os.urandom(SIZE)
    with PageBuffers().take(SIZE) as view:
        view[:] = data
        LocalBackend(tmp_path).write_from("data/ab/pack", view)
    assert calls.direct_writes == []
    assert (tmp_path / "data" / "ab" / "pack").read_bytes() == data


def test_einval_half_way_resumes_through_the_cache_where_it_stopped(
    tmp_path: Path, calls: Calls
) -> None:
    answers: list[str] = []

    def short_then_einval(fd: int, view: memoryview) -> int:
        if not answers:  # a short write of one MiB, then a refusal (larger alignment wanted)
            answers.append("short")
            return calls.real_write(fd, view[: 1 << 20])
        answers.append("einval")
        raise OSError(errno.EINVAL, "Invalid argument")

    calls.on_direct_write = short_then_einval
    data = os.urandom(SIZE)
    with PageBuffers().take(SIZE) as view:
        view[:] = data
        LocalBackend(tmp_path).write_from("data/ab/pack", view)
    assert answers == ["short", "einval"]
    assert calls.cached_writes == [SIZE - (1 << 20)]
    assert (tmp_path / "data" / "ab" / "pack").read_bytes() == data


def test_a_full_disk_during_a_direct_write_is_one_error_and_leaves_nothing(
    tmp_path: Path, calls: Calls
) -> None:
    def full(fd: int, view: memoryview) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    calls.on_direct_write = full
    with PageBuffers().take(SIZE) as view, pytest.raises(StoreError) as caught:
        LocalBackend(tmp_path).write_from("data/ab/pack", view)
    assert "No space left on device" in str(caught.value)
    assert caught.value.hint is not None and "free space" in caught.value.hint
    assert list((tmp_path / "data" / "ab").iterdir()) == []  # no object, no temporary file


def test_page_buffers_are_aligned_reused_and_views_die_with_the_block() -> None:
    buffers = PageBuffers()
    with buffers.take(5 << 20) as first:
        assert page_aligned(first) and len(first) == 5 << 20
        first_address = _address(first)
    with pytest.raises(ValueError):
        first[0]  # released: a late reader cannot see the next pack's bytes
    with buffers.take(4 << 20) as second:  # fits the freed buffer: the same pages again
        assert _address(second) == first_address
        with buffers.take(4 << 20) as third:  # both at once: a second buffer
            assert _address(third) != first_address


def _address(view: memoryview) -> int:
    import ctypes

    return ctypes.addressof(ctypes.c_char.from_buffer(view))


@pytest.mark.parametrize("make", [MemoryBackend, None], ids=["joined-bytes", "aligned-direct"])
def test_write_pack_names_and_writes_the_same_bytes_either_way(
    tmp_path: Path, make: Callable[[], MemoryBackend] | None
) -> None:
    from imagekit.store.identity import Identity

    backend = make() if make is not None else LocalBackend(tmp_path)
    repo = Repository.init(backend, recipients=[Identity.generate().recipient])
    parts = [
        os.urandom(700_000),
        bytearray(os.urandom(900_000)),
        os.urandom(5),
        b"\x05\x00\x00\x00",
    ]
    joined = b"".join(parts)
    pack_id, size = repo.write_pack(parts)
    assert (pack_id, size) == (object_id(joined), len(joined))
    assert backend.read(pack_name(pack_id)) == joined
