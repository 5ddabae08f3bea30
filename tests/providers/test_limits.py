"""Image size limits per target, checked before the restore starts (pure, and at boot)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagekit.errors import UsageError
from imagekit.providers.azure.provider import AzureProvider
from imagekit.providers.boot import BootOptions, boot
from imagekit.providers.gcp.provider import GcpProvider
from imagekit.providers.limits import GiB, SizeLimit, TiB, binding, check_size
from imagekit.providers.local.provider import LocalProvider
from imagekit.providers.openstack.provider import OpenStackProvider, RackspaceProvider
from imagekit.providers.runs import RunStore
from imagekit.providers.sources import FileImageSource


def _limit(cls: type, disk_format: str | None = None, boot_mode: str = "bios") -> int | None:
    found = binding(cls.size_limits, disk_format or cls.disk_format, boot_mode)
    return None if found is None else found.max_bytes


def test_each_target_s_binding_limit():
    # A fixed VHD (qemu-img's 2040 GiB) binds before Azure's own 4095 GiB OS disk and 8 TiB blob.
    assert _limit(AzureProvider) == _limit(AzureProvider, boot_mode="uefi") == 2040 * GiB
    assert _limit(RackspaceProvider) == 160 * GiB  # Rackspace's import, under the VHD's
    assert _limit(GcpProvider) == 64 * TiB
    assert _limit(OpenStackProvider) is None  # Glance caps the upload, a deployment setting
    assert _limit(LocalProvider) is None


def test_a_limit_for_one_boot_mode_applies_to_that_mode_only():
    limits = (SizeLimit(2 * TiB, "a Gen1 disk", "doc", "bios"), SizeLimit(4 * TiB, "a disk", "d"))
    assert binding(limits, "raw", "bios").max_bytes == 2 * TiB  # type: ignore[union-attr]
    assert binding(limits, "raw", "uefi").max_bytes == 4 * TiB  # type: ignore[union-attr]


def test_the_error_names_sizes_target_and_source():
    with pytest.raises(UsageError) as info:
        check_size("rackspace", "vhd-azure", RackspaceProvider.size_limits, 200 * GiB, "bios")
    assert info.value.message == (
        "the image's boot disk is 200 GiB; on rackspace, an imported image's system disk holds "
        "at most 160 GiB (Rackspace Cloud Images: images must not expand to a system disk "
        "larger than 160 GB)"
    )
    check_size("rackspace", "vhd-azure", RackspaceProvider.size_limits, 160 * GiB, "bios")
    with pytest.raises(UsageError, match="a vhd-azure disk holds at most 2,040 GiB"):
        check_size("azure", "vhd-azure", AzureProvider.size_limits, 2041 * GiB, "uefi")


def test_a_boot_too_large_for_the_target_stops_before_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing is restored, recorded or asked of the cloud: the provider's settings are all the
    check needs (no credentials are read)."""
    for name, value in {
        "RACKSPACE_REGION": "DFW",
        "RACKSPACE_USERNAME": "demo",
        "RACKSPACE_API_KEY": "k",
    }.items():
        monkeypatch.setenv(name, value)
    disk = tmp_path / "big.raw"
    with disk.open("wb") as handle:
        handle.truncate(161 * GiB)  # sparse: qemu-img reads the size, nothing else
    runs = RunStore(tmp_path / "state")
    provider = RackspaceProvider(state_dir=tmp_path / "state")
    monkeypatch.setattr(provider, "driver", lambda: pytest.fail("the cloud was contacted"))
    with pytest.raises(UsageError, match="161 GiB; on rackspace"):
        boot(provider, FileImageSource(disk), BootOptions(), runs)
    assert runs.list() == []
