"""The convert targets and each target's rules, as pure values and checks (no I/O).

A target is what a destination accepts: a qemu-img output format plus options, a size alignment
and a validation rule. The rules come from each cloud's import documentation (see
``docs/design.md`` → "Convert targets").
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from imagekit.errors import UsageError

MiB = 1 << 20
GiB = 1 << 30

#: A fixed VHD is the raw disk followed by this 512-byte footer; Azure wants N MiB + 512 bytes.
VHD_FOOTER_SIZE = 512
VHD_COOKIE = b"conectix"
VHD_DISK_TYPE_FIXED = 2
VHD_DISK_TYPE_DYNAMIC = 3

#: GCE's import wants exactly this one file inside the gzip'd tar.
GCE_DISK_NAME = "disk.raw"


@dataclass(frozen=True)
class Target:
    """One convert target."""

    name: str
    #: Format of the file qemu-img writes (for ``gce`` the inner ``disk.raw``).
    qemu_format: str
    #: qemu-img ``-o`` options; each fixes a rule of the destination.
    options: tuple[str, ...] = ()
    #: The virtual size is rounded up to a multiple of this (1: kept as the source's).
    size_align: int = 1
    #: Whether ``--compress`` means anything for this target.
    compressible: bool = False
    #: File name suffix ``imagekit`` suggests for outputs of this target.
    suffix: str = ""
    #: The VMDK create-type qemu-img must report, when the target has one.
    subformat: str | None = None
    description: str = ""


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("raw", "raw", suffix=".raw", description="raw disk (sparse), OpenStack/Ceph"),
        Target(
            "qcow2",
            "qcow2",
            options=("compat=1.1",),
            compressible=True,
            suffix=".qcow2",
            description="qcow2 v3, OpenStack Glance, local QEMU",
        ),
        Target(
            "vmdk",
            "vmdk",
            # streamOptimized: the only VMDK flavour VMware OVF import and AWS VM Import accept.
            options=("subformat=streamOptimized",),
            suffix=".vmdk",
            subformat="streamOptimized",
            description="stream-optimized VMDK, VMware and AWS re-import",
        ),
        Target(
            "vhd-azure",
            "vpc",
            # fixed: Azure takes no dynamic VHD; force_size: keep our whole-MiB size instead of
            # qemu's CHS rounding, which Azure rejects.
            options=("subformat=fixed", "force_size=on"),
            size_align=MiB,
            suffix=".vhd",
            description="fixed VHD, N MiB + 512 bytes, Azure page blob",
        ),
        Target("vhdx", "vhdx", suffix=".vhdx", description="VHDX, Hyper-V"),
        Target(
            "gce",
            "raw",
            size_align=GiB,
            suffix=".tar.gz",
            description="gzip'd tar holding one sparse disk.raw, Google Compute Engine",
        ),
    )
}


def get_target(name: str) -> Target:
    """The target called ``name``; a ``UsageError`` listing the choices otherwise."""
    try:
        return TARGETS[name]
    except KeyError:
        choices = ", ".join(TARGETS)
        raise UsageError(f"unknown target {name!r}", hint=f"choose one of: {choices}") from None


def aligned_size(size: int, align: int) -> int:
    """``size`` rounded up to a multiple of ``align`` (a zero-size disk stays zero)."""
    return -(-size // align) * align


@dataclass(frozen=True)
class VhdFooter:
    cookie: bytes
    disk_type: int
    current_size: int
    checksum_ok: bool


def parse_vhd_footer(block: bytes) -> VhdFooter:
    """Decode the 512-byte VHD footer (Microsoft VHD specification, "Hard Disk Footer Format")."""
    if len(block) != VHD_FOOTER_SIZE:
        raise ValueError(f"a VHD footer is {VHD_FOOTER_SIZE} bytes, got {len(block)}")
    current_size = struct.unpack_from(">Q", block, 48)[0]
    disk_type, checksum = struct.unpack_from(">II", block, 60)
    # The checksum is the ones' complement of the byte sum with the checksum field taken as zero.
    total = sum(block[:64]) + sum(block[68:])
    return VhdFooter(
        cookie=block[:8],
        disk_type=disk_type,
        current_size=current_size,
        checksum_ok=(~total & 0xFFFFFFFF) == checksum,
    )


def vhd_azure_problems(file_size: int, footer: VhdFooter) -> list[str]:
    """What breaks Azure's fixed-VHD rules (an empty list means the file is acceptable)."""
    problems = []
    if footer.cookie != VHD_COOKIE:
        problems.append("no VHD footer (cookie 'conectix' missing at the end of the file)")
        return problems
    if not footer.checksum_ok:
        problems.append("VHD footer checksum is wrong")
    if footer.disk_type != VHD_DISK_TYPE_FIXED:
        problems.append(f"VHD disk type is {footer.disk_type}, Azure needs fixed (2)")
    if footer.current_size % MiB:
        problems.append(f"virtual size {footer.current_size} is not a whole number of MiB")
    if file_size != footer.current_size + VHD_FOOTER_SIZE:
        problems.append(
            f"file is {file_size} bytes, expected virtual size + {VHD_FOOTER_SIZE} "
            f"= {footer.current_size + VHD_FOOTER_SIZE}"
        )
    return problems


@dataclass(frozen=True)
class TarMember:
    name: str
    size: int
    is_file: bool


def gce_tar_problems(members: list[TarMember]) -> list[str]:
    """What breaks GCE's image-import rules for the members of a tar."""
    if len(members) != 1:
        names = ", ".join(m.name for m in members) or "nothing"
        return [f"the tar must hold exactly one file {GCE_DISK_NAME!r}, it holds: {names}"]
    (member,) = members
    problems = []
    if member.name != GCE_DISK_NAME or not member.is_file:
        problems.append(
            f"the tar holds {member.name!r}, GCE needs a regular file {GCE_DISK_NAME!r}"
        )
    if member.size % GiB or member.size == 0:
        problems.append(f"{GCE_DISK_NAME} is {member.size} bytes, not a whole number of GiB")
    return problems
