"""A directory as a store: a plain path or ``file:///path`` (the embedded default).

Written on the filesystem directly rather than on libcloud's ``LocalStorageDriver``, which
breaks the contract: its stream upload opens the object in place (``open(path, "wb")``), so a
crash leaves a truncated object, and it neither fsyncs nor renames; it also needs the
``fasteners`` package and leaves lock files in the system temp directory.

Writes go to a temporary file beside the object, are fsynced, renamed over the name, and the
directory is fsynced: after ``write`` returns the object survives a crash, and a failure leaves at
worst a hidden ``.NAME.*.tmp`` file that ``list`` does not show and ``prune`` removes once it
is an hour old.

Packs arrive in page-aligned buffers (``Repository.write_pack``) and go to the disk with
``O_DIRECT``, past the page cache: a pack is read back only by a restore, days later, and the
kernel's copy into cached pages, then dropping them again, cost ~0.3 CPU-seconds per GiB written
(measured in an export). The last partial 4 KiB block, and everything on a filesystem that
refuses ``O_DIRECT`` (tmpfs before Linux 6.6, some FUSE mounts), is written through the cache.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from imagekit.errors import ObjectNotFound, StoreError
from imagekit.fsutil import drop_cached_pages
from imagekit.store.backends.base import Backend, ObjectInfo
from imagekit.store.backends.names import check_name
from imagekit.store.memory import page_aligned

_TEMP_SUFFIX = ".tmp"

#: Linux's (and FreeBSD's) flag; 0 where the platform has none, and every write is cached.
_O_DIRECT = getattr(os, "O_DIRECT", 0)

#: ``O_DIRECT`` moves whole blocks at block-aligned offsets: 4 KiB suits disks of 512-byte and
#: of 4 KiB sectors; a filesystem that wants more answers EINVAL and gets a cached write.
DIRECT_BLOCK = 4096
#: Smaller objects (keys, indexes, manifests) are not worth switching the mode for.
DIRECT_MIN = 1 << 20

#: Out of space or quota: the user must act; everything else local is treated as permanent too
#: (a disk does not heal between retries).
_FULL = (errno.ENOSPC, errno.EDQUOT)


def _write_all(fd: int, data: memoryview) -> None:
    done = 0
    while done < len(data):
        done += os.write(fd, data[done:])


def _write_direct(fd: int, data: memoryview) -> int:
    """Write the whole blocks at the start of ``data`` past the page cache; how many bytes.

    0 when the memory is not page-aligned or the filesystem refuses ``O_DIRECT``; after an
    EINVAL mid-way, what was written (the caller writes the rest through the cache).
    """
    cut = len(data) - len(data) % DIRECT_BLOCK
    if not _O_DIRECT or cut < DIRECT_MIN or not page_aligned(data):
        return 0
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | _O_DIRECT)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        return 0
    done = 0
    try:
        while done < cut:
            done += os.write(fd, data[done:cut])
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        # EINVAL writes nothing, so the file ends at ``done``, where the cached write resumes.
    finally:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags)
    return done


class LocalBackend(Backend):
    aligned_writes = True

    def __init__(self, root: Path, url: str | None = None):
        self.root = root
        self.url = url or str(root)

    def _path(self, name: str) -> Path:
        return self.root / check_name(name)

    def _error(self, operation: str, name: str, exc: OSError) -> StoreError:
        where = f"{self.url}: {operation} {name}"
        if isinstance(exc, FileNotFoundError | NotADirectoryError | IsADirectoryError):
            return ObjectNotFound(f"{where}: no such object")
        hint = "free space on the store's filesystem" if exc.errno in _FULL else None
        return StoreError(f"{where}: {exc.strerror or type(exc).__name__}", hint=hint)

    def write(self, name: str, data: bytes) -> None:
        self.write_from(name, memoryview(data))

    def write_from(self, name: str, view: memoryview) -> None:
        path = self._path(name)
        tmp: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(
                prefix=f".{path.name}.", suffix=_TEMP_SUFFIX, dir=path.parent
            )
            try:
                _write_all(fd, view[_write_direct(fd, view) :])
                os.fsync(fd)
                drop_cached_pages(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            tmp = None
            _fsync_dir(path.parent)
        except OSError as exc:
            raise self._error("write", name, exc) from exc
        finally:
            if tmp is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        path = self._path(name)
        if offset < 0 or (length is not None and length < 0):
            raise ValueError(f"invalid range offset={offset} length={length}")
        try:
            with open(path, "rb") as handle:
                handle.seek(offset)
                return handle.read(-1 if length is None else length)
        except OSError as exc:
            raise self._error("read", name, exc) from exc

    def stat(self, name: str) -> ObjectInfo:
        try:
            info = self._path(name).stat()
        except OSError as exc:
            raise self._error("stat", name, exc) from exc
        if not os.path.isfile(self._path(name)):
            raise ObjectNotFound(f"{self.url}: stat {name}: no such object")
        return ObjectInfo(name=name, size=info.st_size, modified=info.st_mtime)

    def remove_leftovers(self, older_than: float) -> int:
        # Only old ones: a young temporary file may be a live writer's (a lock being taken).
        cutoff = time.time() - older_than
        removed = 0
        for dirpath, _dirnames, filenames in os.walk(self.root):
            for filename in filenames:
                if not (filename.startswith(".") and filename.endswith(_TEMP_SUFFIX)):
                    continue
                path = os.path.join(dirpath, filename)
                with contextlib.suppress(FileNotFoundError):
                    if os.stat(path).st_mtime < cutoff:
                        os.unlink(path)
                        removed += 1
        return removed

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        # Walk only below the deepest folder the prefix names, not the whole store.
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root / folder if folder else self.root
        try:
            for dirpath, _dirnames, filenames in os.walk(start, onerror=_raise):
                rel_dir = os.path.relpath(dirpath, self.root)
                for filename in filenames:
                    if filename.startswith(".") and filename.endswith(_TEMP_SUFFIX):
                        continue  # an unfinished write, not an object
                    name = filename if rel_dir == "." else f"{rel_dir}/{filename}"
                    if not name.startswith(prefix):
                        continue
                    try:
                        st = os.stat(os.path.join(dirpath, filename))
                    except FileNotFoundError:
                        continue  # deleted while we listed
                    yield ObjectInfo(name=name, size=st.st_size, modified=st.st_mtime)
        except FileNotFoundError:
            return  # no folder yet: nothing written under this prefix
        except OSError as exc:
            raise self._error("list", prefix, exc) from exc

    def delete(self, name: str) -> None:
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path(name))
        except OSError as exc:
            raise self._error("delete", name, exc) from exc


def _raise(exc: OSError) -> None:
    raise exc


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
