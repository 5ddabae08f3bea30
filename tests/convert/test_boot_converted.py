"""Every convert target of the real bootable test disk boots to a healthy HTTP endpoint.

The guest boots through its own bootloader from the converted file (for ``gce``, from the
``disk.raw`` inside the archive, as GCE itself does), under QEMU with KVM when it works, else TCG.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from imagekit.convert import TARGETS, convert_image, gce
from imagekit.providers.local.qemu import VM, VMSpec

pytestmark = pytest.mark.slow

#: How long one boot may take under TCG on 2 busy cores (measured ~3-5 s when idle).
BOOT_DEADLINE = 90.0


@pytest.mark.parametrize("target", [t for t in TARGETS if t != "raw"])
def test_converted_disk_boots_healthy(test_disk: Path, tmp_path: Path, target: str) -> None:
    out = tmp_path / f"disk{TARGETS[target].suffix}"
    convert_image(test_disk, out, target)
    disk, fmt = out, TARGETS[target].qemu_format
    if target == "gce":
        disk, fmt = gce.unpack(out, tmp_path), "raw"
    with VM(VMSpec(disk=disk, disk_format=fmt, guest_ports=(80,)), tmp_path / "vm") as vm:
        body = vm.wait_for_http("/health", timeout=BOOT_DEADLINE)
    assert body.startswith(b"ok"), body
