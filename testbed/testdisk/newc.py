"""A writer for the cpio "newc" format the Linux kernel unpacks as an initramfs.

Written here rather than by ``cpio(1)`` so the archive can hold device nodes and root-owned
files without root or ``mknod``, and so the bytes depend only on the entries (fixed inode numbers
and timestamps): the same inputs give the same initramfs.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable
from dataclasses import dataclass

MAGIC = b"070701"  # "newc": ASCII hex headers, no checksum
TRAILER = "TRAILER!!!"  # the name of the empty entry that ends every cpio archive
ALIGN = 4  # newc pads the header+name and the data each to a multiple of 4 bytes


@dataclass(frozen=True)
class Entry:
    """One archive member. ``path`` is relative (no leading slash), as the kernel expects."""

    path: str
    mode: int  # full st_mode: file type bits and permissions
    data: bytes = b""  # file contents, or the target of a symlink
    rdev: tuple[int, int] = (0, 0)  # (major, minor) for device nodes

    @staticmethod
    def directory(path: str, perm: int = 0o755) -> Entry:
        return Entry(path, stat.S_IFDIR | perm)

    @staticmethod
    def file(path: str, data: bytes, perm: int = 0o644) -> Entry:
        return Entry(path, stat.S_IFREG | perm, data)

    @staticmethod
    def symlink(path: str, target: str) -> Entry:
        return Entry(path, stat.S_IFLNK | 0o777, target.encode())

    @staticmethod
    def chardev(path: str, major: int, minor: int, perm: int = 0o600) -> Entry:
        return Entry(path, stat.S_IFCHR | perm, rdev=(major, minor))


def _pad(length: int) -> bytes:
    return b"\0" * (-length % ALIGN)


def _member(ino: int, entry: Entry) -> bytes:
    name = entry.path.lstrip("/").encode() + b"\0"
    is_dir = stat.S_ISDIR(entry.mode)
    fields = (
        ino,
        entry.mode,
        0,  # uid: root
        0,  # gid: root
        2 if is_dir else 1,  # nlink
        0,  # mtime: fixed so the archive is reproducible
        len(entry.data),
        0,  # devmajor / devminor of the filesystem the file came from: meaningless here
        0,
        entry.rdev[0],
        entry.rdev[1],
        len(name),
        0,  # check: only used by the "crc" variant
    )
    header = MAGIC + b"".join(b"%08X" % value for value in fields)
    head = header + name
    return head + _pad(len(head)) + entry.data + _pad(len(entry.data))


def archive(entries: Iterable[Entry]) -> bytes:
    """Serialise entries in order (parents must come before their children) plus the trailer."""
    parts = []
    seen: set[str] = set()
    for ino, entry in enumerate(entries, start=1):
        path = entry.path.lstrip("/")
        if not path or path in seen:
            raise ValueError(f"cpio entry path empty or repeated: {entry.path!r}")
        seen.add(path)
        parts.append(_member(ino, entry))
    parts.append(_member(0, Entry(TRAILER, 0)))
    return b"".join(parts)
