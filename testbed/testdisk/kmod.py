"""Kernel modules for the initramfs: read dependencies from ``.modinfo``, order the loads.

A kernel package unpacked with ``dpkg-deb -x`` has no ``modules.dep`` (depmod runs at install
time), so the dependencies come from each module's own ``.modinfo`` ELF section, where the build
records ``depends=a,b``. Pure functions over bytes and dicts; the caller does the file I/O.
"""

from __future__ import annotations

import gzip
import lzma
import struct
from collections.abc import Iterable, Mapping
from pathlib import PurePath

import zstandard

SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")  # how distributions ship modules


def module_name(path: PurePath | str) -> str:
    """``.../virtio-rng.ko.zst`` → ``virtio_rng``: the kernel treats ``-`` and ``_`` alike."""
    name = PurePath(path).name
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name.replace("-", "_")


def decompress(name: str, data: bytes) -> bytes:
    """The plain ELF object of a possibly compressed module file (busybox insmod wants it plain)."""
    if name.endswith(".ko.xz"):
        return lzma.decompress(data)
    if name.endswith(".ko.zst"):
        # Module files are written without the content size in the frame header, so stream.
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    if name.endswith(".ko.gz"):
        return gzip.decompress(data)
    return data


def modinfo(elf: bytes) -> dict[str, str]:
    """The ``key=value`` strings in the ``.modinfo`` section of a 64-bit little-endian ELF."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF object")
    (shoff,) = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)

    def section(index: int) -> tuple[int, int, int]:
        base = shoff + index * shentsize
        (name,) = struct.unpack_from("<I", elf, base)
        offset, size = struct.unpack_from("<QQ", elf, base + 0x18)
        return name, offset, size

    _, names_at, _ = section(shstrndx)
    for index in range(shnum):
        name_at, offset, size = section(index)
        end = elf.index(b"\0", names_at + name_at)
        if elf[names_at + name_at : end] == b".modinfo":
            info: dict[str, str] = {}
            for item in elf[offset : offset + size].split(b"\0"):
                key, sep, value = item.decode("utf-8", "replace").partition("=")
                if sep:
                    # Repeated keys (alias=, firmware=) keep the first; depends= occurs once.
                    info.setdefault(key, value)
            return info
    return {}


def depends(info: Mapping[str, str]) -> tuple[str, ...]:
    """The module names a module needs loaded first, normalised like ``module_name``."""
    raw = info.get("depends", "")
    return tuple(dep.replace("-", "_") for dep in raw.split(",") if dep)


def load_order(
    wanted: Iterable[str],
    deps: Mapping[str, Iterable[str]],
    builtin: Iterable[str] = (),
) -> list[str]:
    """Every module ``wanted`` needs, dependencies first, each once.

    ``deps`` maps each available module to its direct dependencies; a wanted module in
    ``builtin`` (the kernel's ``modules.builtin``) needs no load. Anything else missing, or a
    cycle, is an error here, since in the guest it would only show as a device that never appears.
    """
    compiled_in = {module_name(name) for name in builtin}
    order: list[str] = []
    done: set[str] = set()
    visiting: list[str] = []

    def visit(name: str, needed_by: str | None) -> None:
        if name in done:
            return
        if name in visiting:
            cycle = " -> ".join([*visiting[visiting.index(name) :], name])
            raise ValueError(f"module dependency cycle: {cycle}")
        if name not in deps:
            if needed_by is None and name in compiled_in:
                return
            wanted_by = f"module {needed_by} depends on" if needed_by else "wanted module"
            raise ValueError(f"{wanted_by} {name}, which is neither a module file nor built in")
        visiting.append(name)
        for dep in deps[name]:
            visit(dep, name)
        visiting.pop()
        done.add(name)
        order.append(name)

    for name in wanted:
        visit(name.replace("-", "_"), None)
    return order
