"""Which stored image each role of a target boots (pure: listings and records in, choices out).

A failover boots, per role, the newest image of the role's lineage that ``run-export`` verified
(its data read back and authenticated); with ``--at TIME``, the newest frozen at or before TIME.
When the verified record is not on this host (a failover often runs elsewhere than the export
job) or no candidate was verified, the newest candidate is taken and flagged: a restore
authenticates every chunk anyway, so an unverified image fails loudly rather than boots corrupt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from imagekit.errors import PlanError
from imagekit.plans.model import Plan
from imagekit.plans.records import VerifiedRecord
from imagekit.plans.status import point_in_time
from imagekit.store.manifest import StoredImage, format_time


@dataclass(frozen=True)
class Choice:
    """The image one stack role boots."""

    role: str  # the stack role
    image_name: str  # the stored lineage (the source role's image name)
    image: StoredImage
    point_in_time: datetime  # when its data was frozen (the AMI's creation time)
    verified: str | None  # "sample"/"all" when run-export verified it, else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "image_name": self.image_name,
            "image_id": self.image.id,
            "point_in_time": format_time(self.point_in_time),
            "verified": self.verified,
        }


def choose_images(
    plan: Plan,
    target: str,
    images: Sequence[StoredImage],
    verified: VerifiedRecord,
    repo_id: str,
    *,
    at: datetime | None = None,
    pinned: dict[str, str] | None = None,
) -> dict[str, Choice]:
    """One choice per role of ``target``'s stack; ``PlanError`` naming every role without one.

    ``pinned`` maps roles to image ids chosen earlier (a resumed failover keeps its choices
    when the store still holds them).
    """
    by_id = {i.id: i for i in images}
    choices: dict[str, Choice] = {}
    missing: list[str] = []
    for role, spec in plan.targets[target].stack.items():
        name = plan.image_name(spec.image or role)
        kept = by_id.get((pinned or {}).get(role, ""))
        candidates = [kept] if kept else [i for i in images if i.manifest.name == name]
        if at is not None:
            candidates = [i for i in candidates if point_in_time(i) <= at]
        if not candidates:
            when = f" frozen at or before {format_time(at)}" if at else ""
            missing.append(f"{role} (no image {name!r}{when})")
            continue
        checked = [i for i in candidates if verified.get(repo_id, i.id)]
        best = max(checked or candidates, key=lambda i: (point_in_time(i), i.manifest.created))
        check = verified.get(repo_id, best.id)
        level = check.level if check else None
        choices[role] = Choice(role, name, best, point_in_time(best), level)
    if missing:
        raise PlanError(f"nothing to boot for {', '.join(missing)}")
    return choices


__all__ = ["Choice", "choose_images"]
