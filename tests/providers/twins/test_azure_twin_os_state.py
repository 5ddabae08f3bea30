"""The Azure twin registers the image as the azure provider would: Specialized for a guest that
will not report Ready (providers/azure/vm.py), so the twin shows what Azure then does: no
provisioning media, no wait for Ready. Pure but for the run folder; no QEMU."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagekit.guest.profile import GuestProfile
from imagekit.providers.base import PreparedImage
from imagekit.providers.registry import create_provider
from imagekit.providers.runs import RunStore


@pytest.mark.parametrize(
    ("guest", "state"),
    [
        (None, "generalized"),  # not inspected: as imagekit always registered it
        (GuestProfile(azure_ready=True), "generalized"),
        (GuestProfile(azure_ready=False), "specialized"),
        (GuestProfile(azure_ready=None), "specialized"),  # not known: a VM that comes up
    ],
)
def test_the_os_state_follows_the_guest(
    tmp_path: Path, guest: GuestProfile | None, state: str
) -> None:
    provider = create_provider("azure-twin", state_dir=tmp_path)
    run = RunStore(tmp_path).create("azure-twin", image={}, settings={})
    disk = tmp_path / "disk.qcow2"
    disk.write_bytes(b"")
    image = PreparedImage(disk, "qcow2", "web", "id", 1 << 30, guest=guest)
    provider.upload(image, run)
    assert provider.driver.cloud_settings["os_state"] == state  # type: ignore[attr-defined]
    noted = any("registered Specialized" in n for n in run.record.notes)
    assert noted == (state == "specialized")


def test_a_setting_wins_over_the_guest(tmp_path: Path) -> None:
    provider = create_provider(
        "azure-twin", state_dir=tmp_path, settings={"os_state": "generalized"}
    )
    run = RunStore(tmp_path).create("azure-twin", image={}, settings={})
    disk = tmp_path / "disk.qcow2"
    disk.write_bytes(b"")
    provider.upload(
        PreparedImage(disk, "qcow2", "w", "i", 1, guest=GuestProfile(azure_ready=False)), run
    )
    assert provider.driver.cloud_settings["os_state"] == "generalized"  # type: ignore[attr-defined]
