"""The Debian test guests as tests use them: their disk files, what an AMI of them records, and
the AMI itself seeded into the AWS emulator.

``make debian-images`` builds them (``testbed/debian/build.py``, which decides every name and
UUID read here). A guest with a data volume (``ec2-nvme``) has two disks, root first, as its
AMI maps them::

    guest = debian_guest("ec2-nvme")
    source = GuestDisksSource(guest)            # boot both disks as files (providers.boot)
    ami = seed_guest_ami(ebs, ec2, guest)       # or export them through the emulator

A root disk holds ~940 non-zero 512 KiB blocks (~470 MiB): seeding ``ec2-nvme`` took 5 s here
and left moto (which keeps blocks in RAM, for the session) at ~670 MiB resident.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from imagekit.convert import TARGETS, convert_image
from imagekit.progress import Progress
from imagekit.providers.base import PreparedImage
from imagekit.providers.sources import FileImageSource
from testbed.debian import build
from testbed.seed_ami import DEFAULT_WORKERS, SeededAmi, VolumeSpec, seed_ami

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "build" / "debian"
# The AMI's device names: Debian's own AMIs root on /dev/xvda; a second EBS volume mapped as
# /dev/sdf is what Nitro shows the guest as /dev/nvme1n1 (the name its fstab uses).
ROOT_DEVICE = "/dev/xvda"
DATA_DEVICE = "/dev/sdf"


@dataclass(frozen=True)
class DebianGuest:
    """One built variant: raw disk files and the facts a test checks the guest stage against."""

    variant: str
    root: Path
    root_uuid: str
    boot_mode: str  # EC2's BootMode: legacy-bios or uefi
    architecture: str  # EC2's Architecture: x86_64
    data: Path | None = None  # the second EBS volume (ext4 on the whole disk, no label)
    data_uuid: str | None = None
    data_mount: str | None = None  # where the guest's fstab mounts it (by DATA_DEVICE's name)
    data_file: str | None = None  # a file in the data filesystem's root

    @property
    def disks(self) -> tuple[Path, ...]:
        """Root first, then the data volume: the AMI's block-device mapping order."""
        return (self.root,) if self.data is None else (self.root, self.data)

    @property
    def devices(self) -> tuple[str, ...]:
        return (ROOT_DEVICE, DATA_DEVICE)[: len(self.disks)]

    def missing(self) -> list[Path]:
        return [path for path in self.disks if not path.is_file()]

    def metadata(self) -> dict[str, Any]:
        """What an export of its AMI records (``AmiSpec.as_metadata``'s keys, the ones the
        providers read), so a file boot chooses the firmware as a stored image's would."""
        return {
            "ami": {
                "name": f"debian-12-{self.variant}",
                "architecture": self.architecture,
                "boot_mode": self.boot_mode,
                "ena_support": True,
                "root_device_name": ROOT_DEVICE,
                "volumes": [{"device_name": d} for d in self.devices],
            }
        }


def debian_guest(variant: str, out: Path = DEFAULT_OUT) -> DebianGuest:
    """``variant`` as ``build.py --out out`` writes it (the files may not be built yet:
    ``missing()`` says)."""
    if variant not in build.VARIANTS:
        raise ValueError(f"unknown Debian variant {variant!r}: use {', '.join(build.VARIANTS)}")
    doc = build.describe(variant)
    disks = [out / name for name in doc["disks"]]
    guest = DebianGuest(
        variant=variant,
        root=disks[0],
        root_uuid=doc["root_uuid"],
        boot_mode=doc["boot_mode"],
        architecture=doc["architecture"],
    )
    data = doc.get("data")
    if data is None:
        return guest
    return replace(
        guest,
        data=disks[1],
        data_uuid=data["uuid"],
        data_mount=data["mount"],
        data_file=data["file"],
    )


class GuestDisksSource(FileImageSource):
    """Every disk of a guest, converted for the provider, the first one booted (a
    ``FileImageSource`` takes one disk; a stored multi-volume image restores them all)."""

    def __init__(self, guest: DebianGuest):
        super().__init__(
            guest.root, name=guest.variant, source_format="raw", metadata=guest.metadata()
        )
        self.extra = guest.disks[1:]

    def materialise(
        self, folder: Path, disk_format: str, progress: Progress | None = None
    ) -> PreparedImage:
        prepared = super().materialise(folder, disk_format, progress)
        extras = []
        for number, path in enumerate(self.extra, start=1):
            out = folder / f"disk{number}{TARGETS[disk_format].suffix}"
            convert_image(path, out, disk_format, source_format="raw")
            extras.append(out)
        return replace(prepared, extra_disks=tuple(extras))


def seed_guest_ami(
    ebs: Any,
    ec2: Any,
    guest: DebianGuest,
    *,
    name: str | None = None,
    workers: int = DEFAULT_WORKERS,
) -> SeededAmi:
    """The guest as an AMI: one snapshot per disk through the EBS direct API (zero blocks
    skipped), registered with its boot mode and architecture."""
    missing = guest.missing()
    if missing:
        raise FileNotFoundError(f"{missing[0]} is missing: run `make debian-images`")
    volumes = [
        VolumeSpec(device, disk) for device, disk in zip(guest.devices, guest.disks, strict=True)
    ]
    return seed_ami(
        ebs,
        ec2,
        name or f"debian-12-{guest.variant}",
        volumes,
        tags={"variant": guest.variant},
        boot_mode=guest.boot_mode,
        architecture=guest.architecture,
        workers=workers,
    )


__all__ = ["DebianGuest", "GuestDisksSource", "debian_guest", "seed_guest_ami"]
