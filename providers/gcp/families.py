"""GCE machine families: which a boot of an exported AMI can land on, how it attaches its boot
disk and NIC there, and which family to prefer. Pure.

Most families boot from a pd-balanced disk on virtio-scsi with a virtio-net NIC: what every
AMI's kernel can be given. N4, C4 and C4A take only Hyperdisk, attach it over NVMe and network
only through gVNIC: they are usable only by a guest known to carry both the ``nvme`` and the
``gve`` driver (``GuestProfile``); an image that was not inspected never lands there. T2A and C4A
are arm64, so an x86-64 image cannot boot on them, nor an arm64 one on the rest. Among the
families left, a size mapped from an AWS type prefers the general-purpose ones: a tie in vCPUs
and memory is otherwise decided by the size's name, which is no choice at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from libcloud.compute.base import NodeSize

from imagekit.errors import UsageError
from imagekit.guest.profile import GuestProfile

HYPERDISK_GVNIC_ONLY = frozenset({"n4", "c4", "c4a"})
ARM64 = frozenset({"t2a", "c4a"})
PREFERENCE = ("e2", "n2", "n2d", "n1")  # general purpose, the most widely available first
#: The boot disk type elsewhere: pd-standard, libcloud's default, is refused by newer families
#: (C3...); pd-balanced is taken by every family outside the Hyperdisk-only ones.
PD_BALANCED = "pd-balanced"
HYPERDISK_BALANCED = "hyperdisk-balanced"


@dataclass(frozen=True)
class Attachment:
    """How an instance of a family gets its boot disk and NIC (None: GCE's default)."""

    disk_type: str
    disk_interface: str | None  # "NVME" | "SCSI" | None
    nic_type: str | None  # "GVNIC" | "VIRTIO_NET" | None


def family(size: NodeSize) -> str:
    return str(size.name or size.id).split("-", 1)[0].lower()


def _takes_hyperdisk_family(guest: GuestProfile | None) -> bool:
    return guest is not None and guest.has("nvme") and guest.has("gve")


def usable(
    sizes: Sequence[NodeSize], architecture: str, guest: GuestProfile | None = None
) -> list[NodeSize]:
    """The sizes an ``architecture`` image can boot on, given what its guest carries."""
    arm = architecture == "arm64"
    hyperdisk_ok = _takes_hyperdisk_family(guest)
    return [
        s
        for s in sizes
        if (family(s) in ARM64) == arm and (hyperdisk_ok or family(s) not in HYPERDISK_GVNIC_ONLY)
    ]


def attachment(size: NodeSize, guest: GuestProfile | None) -> Attachment:
    """The boot disk type, disk interface and NIC type for ``size``; a ``UsageError`` when the
    guest lacks what the family needs (a size asked for by name bypasses ``usable``).

    Not inspected (``guest`` None): pd-balanced, GCE's default interface and NIC, as always.
    """
    name = family(size)
    if name in HYPERDISK_GVNIC_ONLY:
        if not _takes_hyperdisk_family(guest):
            raise UsageError(
                f"{size.name or size.id}: the {name.upper()} family boots from Hyperdisk over "
                "NVMe with a gVNIC NIC, and the guest is not known to carry the nvme and gve "
                "drivers",
                hint="choose an E2, N2 or N1 size (or T2A for arm64)",
            )
        return Attachment(HYPERDISK_BALANCED, "NVME", "GVNIC")
    if guest is None:
        return Attachment(PD_BALANCED, None, None)
    # gVNIC needs the gve driver in the guest; virtio-net is what the guest gets otherwise.
    return Attachment(PD_BALANCED, "SCSI", "GVNIC" if guest.has("gve") else "VIRTIO_NET")


def rank(size: NodeSize) -> int:
    """Lower is preferred: the general-purpose families in order, then every other."""
    name = family(size)
    return PREFERENCE.index(name) if name in PREFERENCE else len(PREFERENCE)


__all__ = [
    "ARM64",
    "HYPERDISK_BALANCED",
    "HYPERDISK_GVNIC_ONLY",
    "PD_BALANCED",
    "PREFERENCE",
    "Attachment",
    "attachment",
    "family",
    "rank",
    "usable",
]
