"""The pure target rules: sizes, the VHD footer, the GCE tar layout."""

from __future__ import annotations

import struct

import pytest

from imagekit.convert.targets import (
    GiB,
    MiB,
    TarMember,
    aligned_size,
    gce_tar_problems,
    get_target,
    parse_vhd_footer,
    vhd_azure_problems,
)
from imagekit.errors import UsageError


def make_footer(current_size: int, disk_type: int = 2, *, bad_checksum: bool = False) -> bytes:
    """A VHD footer laid out per the Microsoft VHD specification."""
    block = bytearray(512)
    block[0:8] = b"conectix"
    struct.pack_into(">I", block, 8, 2)  # features: reserved bit set
    struct.pack_into(">I", block, 12, 0x00010000)  # version 1.0
    struct.pack_into(">Q", block, 16, 0xFFFFFFFFFFFFFFFF)  # fixed disk: no data offset
    struct.pack_into(">QQ", block, 40, current_size, current_size)
    struct.pack_into(">I", block, 60, disk_type)
    checksum = ~sum(block) & 0xFFFFFFFF
    if bad_checksum:
        checksum ^= 1
    struct.pack_into(">I", block, 64, checksum)
    return bytes(block)


@pytest.mark.parametrize(
    ("size", "align", "expected"),
    [
        (0, MiB, 0),
        (1, MiB, MiB),
        (MiB, MiB, MiB),
        (MiB + 1, MiB, 2 * MiB),
        (5 * GiB - 3, GiB, 5 * GiB),
    ],
)
def test_aligned_size_rounds_up(size: int, align: int, expected: int) -> None:
    assert aligned_size(size, align) == expected


def test_footer_round_trip_and_azure_rules() -> None:
    footer = parse_vhd_footer(make_footer(64 * MiB))
    assert footer.cookie == b"conectix"
    assert footer.checksum_ok
    assert footer.current_size == 64 * MiB
    assert vhd_azure_problems(64 * MiB + 512, footer) == []


def test_azure_rules_catch_each_violation() -> None:
    dynamic = parse_vhd_footer(make_footer(64 * MiB, disk_type=3))
    assert any("fixed" in p for p in vhd_azure_problems(64 * MiB + 512, dynamic))
    odd = parse_vhd_footer(make_footer(64 * MiB + 4096))
    assert any("whole number of MiB" in p for p in vhd_azure_problems(64 * MiB + 4096 + 512, odd))
    fine = parse_vhd_footer(make_footer(64 * MiB))
    assert any("expected virtual size" in p for p in vhd_azure_problems(64 * MiB, fine))
    corrupt = parse_vhd_footer(make_footer(64 * MiB, bad_checksum=True))
    assert any("checksum" in p for p in vhd_azure_problems(64 * MiB + 512, corrupt))
    garbage = parse_vhd_footer(bytes(512))
    assert vhd_azure_problems(512, garbage) == [
        "no VHD footer (cookie 'conectix' missing at the end of the file)"
    ]


def test_footer_must_be_512_bytes() -> None:
    with pytest.raises(ValueError, match="512"):
        parse_vhd_footer(b"conectix")


def test_gce_tar_rules() -> None:
    assert gce_tar_problems([TarMember("disk.raw", 2 * GiB, True)]) == []
    assert gce_tar_problems([TarMember("disk.img", GiB, True)])
    assert gce_tar_problems([TarMember("disk.raw", GiB + 512, True)])
    assert gce_tar_problems([TarMember("disk.raw", GiB, True), TarMember("x", 1, True)])
    assert gce_tar_problems([])


def test_unknown_target_lists_choices() -> None:
    with pytest.raises(UsageError, match="unknown target") as err:
        get_target("ova")
    assert "vhd-azure" in str(err.value)
    assert err.value.exit_code == 2
