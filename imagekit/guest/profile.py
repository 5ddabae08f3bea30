"""What the guest stage tells the providers about an image: a small, pure value.

The guest stage (``imagekit.guest``) reads the facts of a restored disk and adapts it for a
target; the providers need only a few conclusions from that to choose sizes and settings (boot
mode, architecture, the drivers the guest can boot with, whether it reports Ready to Azure).
``None`` where a run skipped inspection (``--no-adapt`` without facts): the providers then fall
back to the image's export metadata.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Boot-time drivers the rules and providers speak of (kernel module names).
STORAGE_DRIVERS = ("virtio_blk", "virtio_scsi", "nvme", "hv_storvsc", "ata_piix", "ahci")
NIC_DRIVERS = ("virtio_net", "ena", "gve", "hv_netvsc", "e1000")


@dataclass(frozen=True)
class GuestProfile:
    """The adapted guest, as a provider needs it."""

    os: str = "linux"  # linux | windows | unknown
    boot_mode: str = "bios"  # bios | uefi | both (both: BIOS boot partition and an ESP)
    architecture: str = "x86_64"  # x86_64 | arm64
    #: Drivers available at boot: built into the kernel or carried by its initramfs (storage),
    #: or installed as modules (NICs load after the root is mounted).
    drivers: frozenset[str] = frozenset()
    #: True: the guest reports Ready to Azure's wireserver on first boot (cloud-init with the
    #: Azure datasource, or waagent provisioning); False: it never will; None: not known.
    azure_ready: bool | None = None

    def has(self, driver: str) -> bool:
        return driver in self.drivers

    @property
    def uefi_only(self) -> bool:
        return self.boot_mode == "uefi"

    @property
    def bios_only(self) -> bool:
        return self.boot_mode == "bios"


__all__ = ["NIC_DRIVERS", "STORAGE_DRIVERS", "GuestProfile"]
