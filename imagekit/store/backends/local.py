"""A directory as a store: a plain path or ``file:///path`` (the embedded default).

Written on the filesystem directly rather than on libcloud's ``LocalStorageDriver``, which
breaks the contract: its stream upload opens the object in place (``open(path, "wb")``), so a
crash leaves a truncated object, and it neither fsyncs nor renames; it also needs the
``fasteners`` package and leaves lock files in the system temp directory.

Writes go to a temporary file beside the object, are fsynced, renamed over the name, and the
directory is fsynced: after ``write`` returns the object survives a crash, and a failure leaves at
worst a hidden ``.NAME.*.tmp`` file that ``list`` does not show and ``prune`` removes once it
is an hour old.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from imagekit.errors import ObjectNotFound, StoreError
from imagekit.fsutil import drop_cached_pages
from imagekit.store.backends.base import Backend, ObjectInfo
from imagekit.store.backends.names import check_name

_TEMP_SUFFIX = ".tmp"

#: Out of space or quota: the user must act; everything else local is treated as permanent too
#: (a disk does not heal between retries).
_FULL = (errno.ENOSPC, errno.EDQUOT)


class LocalBackend(Backend):
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
        path = self._path(name)
        tmp: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(
                prefix=f".{path.name}.", suffix=_TEMP_SUFFIX, dir=path.parent
            )
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
                drop_cached_pages(handle.fileno())
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
        return ObjectInfo(name=name, size=info.st_size)

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
                        size = os.stat(os.path.join(dirpath, filename)).st_size
                    except FileNotFoundError:
                        continue  # deleted while we listed
                    yield ObjectInfo(name=name, size=size)
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
