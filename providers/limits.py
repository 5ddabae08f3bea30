"""The largest image each target boots, checked before the restore starts. Pure.

A restore of a large volume takes hours; an image the target cannot take should be refused
before it, not by the cloud after the upload. Each provider lists its limits (``size_limits``)
with where the figure comes from (``docs/providers/*.md`` has the table); the limit of the disk
format it boots (a fixed VHD holds at most 2040 GiB: ``store.restore.TARGET_MAX_SIZE``) applies to
every provider of that format.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from imagekit.errors import UsageError

GiB = 1 << 30
TiB = 1 << 40


@dataclass(frozen=True)
class SizeLimit:
    """The most a target takes of an image's boot disk (its virtual size)."""

    max_bytes: int
    what: str  # what holds at most that: "a pd-balanced boot disk"
    source: str  # where the figure comes from, quoted in the error
    boot_mode: str | None = None  # only for images booting this way (None: every image)


def format_limit(disk_format: str) -> SizeLimit | None:
    """The limit of the convert target itself (qemu-img's, the format's)."""
    from imagekit.store.restore import TARGET_MAX_SIZE  # the store's, checked at restore too

    limit = TARGET_MAX_SIZE.get(disk_format)
    if limit is None:
        return None
    return SizeLimit(limit, f"a {disk_format} disk", "qemu-img and the format's specification")


def binding(limits: Sequence[SizeLimit], disk_format: str, boot_mode: str) -> SizeLimit | None:
    """The smallest limit that applies to an image of ``disk_format`` booting by ``boot_mode``."""
    applying = [lim for lim in limits if lim.boot_mode in (None, boot_mode)]
    own = format_limit(disk_format)
    if own is not None:
        applying.append(own)
    return min(applying, key=lambda lim: lim.max_bytes, default=None)


def _gib(size: int) -> str:
    return f"{size / GiB:,.1f}".removesuffix(".0") + " GiB"


def check_size(
    provider: str,
    disk_format: str,
    limits: Sequence[SizeLimit],
    virtual_size: int,
    boot_mode: str,
) -> None:
    """``UsageError`` when an image of ``virtual_size`` bytes is larger than ``provider`` takes."""
    limit = binding(limits, disk_format, boot_mode)
    if limit is None or virtual_size <= limit.max_bytes:
        return
    raise UsageError(
        f"the image's boot disk is {_gib(virtual_size)}; on {provider}, {limit.what} holds at "
        f"most {_gib(limit.max_bytes)} ({limit.source})",
        hint="boot it on a target that takes it (see docs/providers), or shrink the volume",
    )


__all__ = ["GiB", "SizeLimit", "TiB", "binding", "check_size", "format_limit"]
