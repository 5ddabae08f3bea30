"""Nova flavors against the image's ``min_disk``, and booting from a volume where a flavor has no
disk. Pure.

Glance records the image's ``min_disk`` (its virtual size in GiB, rounded up) and Nova refuses a
flavor whose root disk is smaller. A flavor with disk 0 has no local root disk at all: Nova boots
it only from a volume (and newer Novas refuse disk-0 flavors for image boots by policy), so such
a server gets a block device mapping that makes a volume of the image, at least ``min_disk`` GiB,
deleted with the server.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from libcloud.compute.base import NodeSize

from imagekit.errors import UsageError

GiB = 1 << 30


def min_disk_gib(virtual_size: int) -> int:
    """The image's ``min_disk``: its virtual size in whole GiB, rounded up (at least 1)."""
    return max(1, -(-virtual_size // GiB))


def disk_gib(size: NodeSize) -> int:
    return int(size.disk or 0)


def boots_from_volume(size: NodeSize) -> bool:
    """A flavor with no root disk: the server's root is a volume made from the image."""
    return disk_gib(size) == 0


def fits(size: NodeSize, min_disk: int) -> bool:
    return boots_from_volume(size) or disk_gib(size) >= min_disk


def usable(sizes: Sequence[NodeSize], min_disk: int) -> list[NodeSize]:
    """The flavors Nova accepts for an image of ``min_disk`` GiB."""
    return [s for s in sizes if fits(s, min_disk)]


def prefer_local_disk(size: NodeSize) -> int:
    """On a tie in vCPUs and memory, a flavor with a local root disk before a volume boot (no
    volume to copy the image into, no volume quota used)."""
    return 1 if boots_from_volume(size) else 0


def check_named(size: NodeSize, min_disk: int) -> None:
    """A flavor asked for by name whose root disk is smaller than the image: refused now, not by
    Nova after the upload."""
    if not fits(size, min_disk):
        raise UsageError(
            f"flavor {size.name or size.id}: its {disk_gib(size)} GiB root disk is smaller than "
            f"the image ({min_disk} GiB)",
            hint="choose a flavor with a larger disk, or one with disk 0 (boot from volume)",
        )


def block_device_mapping(image_id: str, volume_gib: int) -> list[dict[str, Any]]:
    """Nova's ``block_device_mapping_v2`` for a boot from a new volume made of the image."""
    return [
        {
            "boot_index": 0,
            "uuid": image_id,
            "source_type": "image",
            "destination_type": "volume",
            "volume_size": volume_gib,
            "delete_on_termination": True,
        }
    ]


__all__ = [
    "block_device_mapping",
    "boots_from_volume",
    "check_named",
    "disk_gib",
    "fits",
    "min_disk_gib",
    "prefer_local_disk",
    "usable",
]
