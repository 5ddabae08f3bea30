"""How an image's boot mode reaches each cloud's image registration (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagekit.providers.azure.arm import hyperv_generation
from imagekit.providers.base import PreparedImage
from imagekit.providers.gcp.bodies import guest_os_features
from imagekit.providers.openstack.glance import firmware_properties


def prepared(**metadata: object) -> PreparedImage:
    return PreparedImage(Path("d"), "raw", "web", "id", 1 << 30, metadata=metadata)


@pytest.mark.parametrize(
    ("metadata", "mode"),
    [
        ({}, "bios"),
        ({"boot_mode": "uefi"}, "uefi"),
        ({"ami": {"boot_mode": "uefi"}}, "uefi"),
        ({"instance": {"boot_mode": "uefi"}}, "uefi"),
        ({"ami": {"boot_mode": "legacy-bios"}}, "bios"),
        # Both boot paths on the disk: BIOS is what every target offers.
        ({"ami": {"boot_mode": "uefi-preferred"}}, "bios"),
        ({"ami": None}, "bios"),
    ],
)
def test_boot_mode_from_what_export_recorded(metadata, mode):
    assert prepared(**metadata).boot_mode == mode


def test_each_cloud_is_told_a_uefi_image_is_one():
    assert "UEFI_COMPATIBLE" in guest_os_features("uefi")
    assert "UEFI_COMPATIBLE" not in guest_os_features("bios")
    assert (hyperv_generation("uefi"), hyperv_generation("bios")) == ("V2", "V1")
    assert firmware_properties("uefi")["hw_firmware_type"] == "uefi"
    assert firmware_properties("bios") == {}
