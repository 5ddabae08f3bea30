"""Size mapping: the AWS instance type an image ran on → the nearest size a provider lists.

Pure functions over values. A provider lists libcloud ``NodeSize``s (memory in MiB as ``ram``;
vCPUs under a driver-specific ``extra`` key); "nearest" is the smallest size with at least the
vCPUs and memory of the AWS type, or, when none is that large, the largest there is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from libcloud.compute.base import NodeSize

from imagekit.errors import UsageError

GiB_IN_MIB = 1024


@dataclass(frozen=True, order=True)
class Shape:
    vcpus: int
    memory_mib: int

    def __str__(self) -> str:
        return f"{self.vcpus} vCPU, {self.memory_mib / GiB_IN_MIB:g} GiB"


# Burstable types do not follow a ratio; these are AWS's published shapes (vCPU, GiB).
_BURSTABLE: Mapping[str, tuple[int, float]] = {
    "nano": (2, 0.5),
    "micro": (2, 1),
    "small": (2, 2),
    "medium": (2, 4),
    "large": (2, 8),
    "xlarge": (4, 16),
    "2xlarge": (8, 32),
}
_BURSTABLE_FAMILIES = frozenset({"t2", "t3", "t3a", "t4g"})
# Fixed-performance families keep GiB per vCPU constant across sizes: general purpose (m) 4,
# compute optimised (c) 2, memory optimised (r) 8. "large" is 2 vCPUs, "xlarge" 4, "Nxlarge" 4N.
_RATIO_GIB_PER_VCPU = {"m": 4, "c": 2, "r": 8}
_FAMILY = re.compile(r"^(?P<kind>[mcr])[5-8][a-z]{0,3}$")  # m5, m5a, m6i, c6gn, r7iz, ...
_SIZE = re.compile(r"^(?:(?P<n>\d+)?xlarge|large)$")


def aws_shape(instance_type: str) -> Shape | None:
    """The vCPUs and memory of an AWS instance type; None for one this table does not know."""
    family, _, size = instance_type.strip().lower().partition(".")
    if family in _BURSTABLE_FAMILIES and size in _BURSTABLE:
        vcpus, gib = _BURSTABLE[size]
        return Shape(vcpus, int(gib * GiB_IN_MIB))
    kind, sized = _FAMILY.match(family), _SIZE.match(size)
    if kind is None or sized is None:
        return None
    vcpus = 2 if size == "large" else 4 * int(sized["n"] or 1)
    return Shape(vcpus, vcpus * _RATIO_GIB_PER_VCPU[kind["kind"]] * GiB_IN_MIB)


# Where drivers put the vCPU count: OpenStack/local "vcpus", GCE "guestCpus", Azure
# "numberOfCores".
_VCPU_KEYS = ("vcpus", "guestCpus", "numberOfCores", "cpu", "cpus")


def size_shape(size: NodeSize) -> Shape:
    extra: Mapping[str, Any] = size.extra or {}
    # OpenStack flavors carry the count as an attribute, not in ``extra``.
    found = [getattr(size, "vcpus", None), *(extra.get(k) for k in _VCPU_KEYS)]
    vcpus = next((int(v) for v in found if v is not None), 1)
    return Shape(vcpus, int(size.ram or 0))


def nearest_size(
    want: Shape, sizes: Sequence[NodeSize], prefer: Callable[[NodeSize], int] = lambda s: 0
) -> tuple[NodeSize, bool]:
    """The smallest size covering ``want`` and True; else the largest size and False.

    ``prefer`` breaks ties in memory and vCPUs (lower first) before the size's id does."""
    if not sizes:
        raise UsageError("the provider lists no sizes")
    shaped = [(size_shape(s), s.id, s) for s in sizes]
    covering = [
        x for x in shaped if x[0].vcpus >= want.vcpus and x[0].memory_mib >= want.memory_mib
    ]
    if covering:
        # Smallest memory first (memory is what costs), then fewest vCPUs.
        best = min(covering, key=lambda x: (x[0].memory_mib, x[0].vcpus, prefer(x[2]), x[1]))
        return best[2], True
    return max(shaped, key=lambda x: (x[0].memory_mib, x[0].vcpus, x[1]))[2], False


def choose_size(
    sizes: Sequence[NodeSize],
    wanted: str | None,
    instance_type: str | None,
    prefer: Callable[[NodeSize], int] = lambda s: 0,
) -> tuple[NodeSize, str]:
    """The size to boot and why: ``wanted`` (a size id or name, or an AWS type), else the
    image's AWS ``instance_type``, else the smallest size."""
    if not sizes:
        raise UsageError("the provider lists no sizes")
    if wanted:
        for size in sizes:
            if wanted in (size.id, size.name):
                return size, f"{size.id} as asked"
    aws = wanted or instance_type
    if aws:
        shape = aws_shape(aws)
        if shape is None:
            known = ", ".join(sorted(str(s.id) for s in sizes))
            raise UsageError(
                f"size {aws!r} is neither a size of this provider nor a known AWS instance type",
                hint=f"sizes: {known}",
            )
        size, covers = nearest_size(shape, sizes, prefer)
        got = size_shape(size)
        if covers:
            return size, f"{size.id} ({got}) nearest to {aws} ({shape})"
        return size, f"{size.id} ({got}) is SMALLER than {aws} ({shape}): the largest available"
    smallest = min(sizes, key=lambda s: (size_shape(s).memory_mib, size_shape(s).vcpus))
    return smallest, f"{smallest.id}: the smallest (no size asked, none in the image)"


def choose_fitting(
    sizes: Sequence[NodeSize],
    wanted: str | None,
    instance_type: str | None,
    *,
    usable: Callable[[Sequence[NodeSize]], list[NodeSize]],
    check: Callable[[NodeSize], object],
    none_usable: Callable[[], Exception],
    prefer: Callable[[NodeSize], int] = lambda s: 0,
) -> tuple[NodeSize, str]:
    """``choose_size`` among the sizes the image can boot on: a size named as asked is only
    ``check``ed (which raises when the image cannot boot there); else the nearest of ``usable``
    ones, ``none_usable()`` raised when there are none."""
    named = next((s for s in sizes if wanted in (s.id, s.name)), None) if wanted else None
    if named is not None:
        check(named)
        return choose_size([named], wanted, instance_type)
    fitting = usable(sizes)
    if not fitting:
        raise none_usable()
    return choose_size(fitting, wanted, instance_type, prefer)


__all__ = ["Shape", "aws_shape", "choose_fitting", "choose_size", "nearest_size", "size_shape"]
