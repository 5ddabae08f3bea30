"""Retention selection: which images a ``prune`` keeps. Pure.

Each lineage (images of one name) is judged on its own, newest first, as restic's ``forget``
does: ``keep_last`` keeps the N newest; ``keep_daily`` keeps the newest image of each of the N
most recent days that have one; weekly (ISO weeks) and monthly likewise. An image kept by any rule
is kept. Days are UTC days, so the result does not depend on the machine's time zone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from imagekit.store.manifest import StoredImage


@dataclass(frozen=True)
class RetentionPolicy:
    keep_last: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0

    @property
    def empty(self) -> bool:
        return not (self.keep_last or self.keep_daily or self.keep_weekly or self.keep_monthly)


@dataclass(frozen=True)
class RetentionPlan:
    keep: tuple[StoredImage, ...]
    drop: tuple[StoredImage, ...]
    reasons: dict[str, tuple[str, ...]]  # image id → the rules that kept it


def _day(t: datetime) -> Hashable:
    return t.astimezone(UTC).date()


def _week(t: datetime) -> Hashable:
    iso = t.astimezone(UTC).isocalendar()
    return (iso.year, iso.week)


def _month(t: datetime) -> Hashable:
    u = t.astimezone(UTC)
    return (u.year, u.month)


_RULES: tuple[tuple[str, Callable[[datetime], Hashable]], ...] = (
    ("daily", _day),
    ("weekly", _week),
    ("monthly", _month),
)


def plan_retention(images: Sequence[StoredImage], policy: RetentionPolicy) -> RetentionPlan:
    """Split ``images`` into kept and dropped. An empty policy keeps everything."""
    if policy.empty:
        return RetentionPlan(tuple(images), (), {i.id: ("no policy",) for i in images})
    lineages: dict[str, list[StoredImage]] = defaultdict(list)
    for image in images:
        lineages[image.manifest.name].append(image)
    reasons: dict[str, list[str]] = defaultdict(list)
    limits = {
        "daily": policy.keep_daily,
        "weekly": policy.keep_weekly,
        "monthly": policy.keep_monthly,
    }
    for lineage in lineages.values():
        # Newest first; the id breaks ties so the result is deterministic.
        lineage.sort(key=lambda i: (i.manifest.created, i.id), reverse=True)
        for image in lineage[: policy.keep_last]:
            reasons[image.id].append("last")
        for rule, bucket in _RULES:
            seen: set[Hashable] = set()
            for image in lineage:
                if len(seen) >= limits[rule]:
                    break
                key = bucket(image.manifest.created)
                if key not in seen:
                    seen.add(key)
                    reasons[image.id].append(rule)
    keep = tuple(i for i in images if i.id in reasons)
    drop = tuple(i for i in images if i.id not in reasons)
    return RetentionPlan(keep, drop, {k: tuple(v) for k, v in reasons.items()})


__all__ = ["RetentionPlan", "RetentionPolicy", "plan_retention"]
