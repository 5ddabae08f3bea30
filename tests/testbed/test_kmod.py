"""Module dependencies for the test disk's initramfs: .modinfo parsing and load ordering."""

from __future__ import annotations

import gzip
import lzma
import struct
from collections.abc import Callable

import pytest
import zstandard

from testbed.testdisk import kmod


def elf_with_sections(sections: dict[str, bytes]) -> bytes:
    """A minimal 64-bit little-endian ELF relocatable holding ``sections`` (plus .shstrtab)."""
    names = b"\0" + b"".join(name.encode() + b"\0" for name in [*sections, ".shstrtab"])
    body = b""
    placed = []  # (name offset in .shstrtab, file offset, size)
    name_at = 1
    for name, data in [*sections.items(), (".shstrtab", names)]:
        placed.append((name_at, 64 + len(body), len(data)))
        name_at += len(name) + 1
        body += data
    shoff = 64 + len(body)
    header = b"\x7fELF\x02\x01\x01" + b"\0" * 9
    header += struct.pack(
        "<HHIQQQIHHHHHH", 1, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64, len(placed) + 1, len(placed)
    )
    shdrs = b"\0" * 64  # section 0 is always the null section
    for name_off, offset, size in placed:
        shdrs += struct.pack("<IIQQQQIIQQ", name_off, 1, 0, 0, offset, size, 0, 0, 1, 0)
    return header + body + shdrs


def test_modinfo_reads_depends_from_the_elf_section() -> None:
    info = b"license=GPL\0depends=virtio,virtio_ring\0alias=pci:v1\0alias=pci:v2\0"
    elf = elf_with_sections({".text": b"\x90" * 7, ".modinfo": info})
    parsed = kmod.modinfo(elf)
    assert parsed["license"] == "GPL"
    assert parsed["alias"] == "pci:v1"
    assert kmod.depends(parsed) == ("virtio", "virtio_ring")


def test_modinfo_of_a_module_without_dependencies() -> None:
    elf = elf_with_sections({".modinfo": b"depends=\0name=virtio_ring\0"})
    assert kmod.depends(kmod.modinfo(elf)) == ()


def test_modinfo_refuses_non_elf() -> None:
    with pytest.raises(ValueError, match="ELF"):
        kmod.modinfo(b"MZ" + b"\0" * 100)


@pytest.mark.parametrize(
    ("name", "pack"),
    [
        ("a.ko", lambda b: b),
        ("a.ko.xz", lzma.compress),
        ("a.ko.gz", gzip.compress),
        # kmod writes zstd frames without a content size; the streaming decoder copes.
        ("a.ko.zst", lambda b: zstandard.ZstdCompressor(write_content_size=False).compress(b)),
    ],
)
def test_decompress_every_shipped_suffix(name: str, pack: Callable[[bytes], bytes]) -> None:
    elf = elf_with_sections({".modinfo": b"depends=x\0"})
    assert kmod.decompress(name, pack(elf)) == elf


def test_module_name_normalises_dashes_and_suffixes() -> None:
    assert kmod.module_name("kernel/drivers/char/hw_random/virtio-rng.ko.zst") == "virtio_rng"
    assert kmod.module_name("isofs.ko") == "isofs"


DEPS = {
    "virtio_net": ("net_failover", "virtio", "virtio_ring"),
    "net_failover": ("failover",),
    "failover": (),
    "virtio": (),
    "virtio_ring": (),
    "virtio_blk": ("virtio", "virtio_ring"),
}


def test_load_order_puts_dependencies_first_and_each_once() -> None:
    order = kmod.load_order(["virtio_net", "virtio_blk"], DEPS)
    assert sorted(order) == sorted(DEPS)
    for module, needs in DEPS.items():
        assert all(order.index(dep) < order.index(module) for dep in needs)


def test_builtin_modules_need_no_load() -> None:
    order = kmod.load_order(["virtio-blk", "ext4"], DEPS, builtin=["kernel/fs/ext4/ext4.ko"])
    assert order == ["virtio", "virtio_ring", "virtio_blk"]


def test_missing_module_is_an_error() -> None:
    with pytest.raises(ValueError, match="wanted module isofs"):
        kmod.load_order(["isofs"], DEPS)


def test_missing_dependency_is_an_error() -> None:
    with pytest.raises(ValueError, match="sr_mod depends on cdrom"):
        kmod.load_order(["sr_mod"], {"sr_mod": ("cdrom",)})


def test_cycle_is_an_error() -> None:
    with pytest.raises(ValueError, match="cycle: a -> b -> a"):
        kmod.load_order(["a"], {"a": ("b",), "b": ("a",)})
