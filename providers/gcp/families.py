"""GCE machine families: which a boot of an exported AMI can land on, and which to prefer. Pure.

imagekit boots GCE nodes with a pd-balanced disk and a virtio-net NIC (what every AMI's kernel
has). N4, C4 and C4A take only Hyperdisk and need gVNIC, so GCE refuses that request there;
T2A and C4A are arm64, so an x86-64 image cannot boot on them, nor an arm64 one on the rest.
Among the families left, a size mapped from an AWS type prefers the general-purpose ones: a tie
in vCPUs and memory is otherwise decided by the size's name, which is no choice at all.
"""

from __future__ import annotations

from collections.abc import Sequence

from libcloud.compute.base import NodeSize

HYPERDISK_GVNIC_ONLY = frozenset({"n4", "c4", "c4a"})
ARM64 = frozenset({"t2a", "c4a"})
PREFERENCE = ("e2", "n2", "n2d", "n1")  # general purpose, the most widely available first


def family(size: NodeSize) -> str:
    return str(size.name or size.id).split("-", 1)[0].lower()


def usable(sizes: Sequence[NodeSize], architecture: str) -> list[NodeSize]:
    """The sizes a pd-balanced, virtio-net boot of an ``architecture`` image can use."""
    arm = architecture == "arm64"
    return [
        s for s in sizes if family(s) not in HYPERDISK_GVNIC_ONLY and (family(s) in ARM64) == arm
    ]


def rank(size: NodeSize) -> int:
    """Lower is preferred: the general-purpose families in order, then every other."""
    name = family(size)
    return PREFERENCE.index(name) if name in PREFERENCE else len(PREFERENCE)


__all__ = ["ARM64", "HYPERDISK_GVNIC_ONLY", "PREFERENCE", "family", "rank", "usable"]
