"""Per role and store: the newest image, its age (the RPO now), whether it was verified, whether
the objectives hold.

``summarize`` is pure (listings, the verified record and the clock in; a report out); ``gather``
is the edge that opens every store of the plan to list its images.

The age of an image is measured from its data's point in time — the start of the snapshot set of
an instance, the AMI's creation time for an AMI: what a failover would lose since — falling back
to the export time for images without one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imagekit.errors import ImagekitError
from imagekit.export.instance import INSTANCE_METADATA, POINT_IN_TIME_METADATA
from imagekit.export.job import AMI_METADATA
from imagekit.plans import preflight
from imagekit.plans.model import Plan, format_duration
from imagekit.plans.preflight import Verdict
from imagekit.plans.records import PlanPaths, VerifiedRecord, read_json
from imagekit.plans.stores import open_store
from imagekit.state import state_dir as default_state_dir
from imagekit.store.manifest import StoredImage, format_time
from imagekit.store.trust import SeenImages

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoreListing:
    """What one store holds (or why it could not be listed)."""

    name: str
    repo_id: str = ""
    images: tuple[StoredImage, ...] = ()
    error: str | None = None
    #: Lineage → why this host thinks the store was rolled back or withholds manifests.
    rollbacks: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RoleStatus:
    role: str
    store: str
    rpo_objective: float
    image_id: str | None = None
    ami: str | None = None
    instance: str | None = None  # the running instance its data was snapshotted from
    point_in_time: datetime | None = None
    age: float | None = None
    verified: str | None = None  # "sample" / "all" when the newest image's data was verified
    verified_at: str | None = None
    error: str | None = None
    rollback: str | None = None  # the store serves older images of this lineage than it did

    @property
    def rpo_met(self) -> bool:
        return self.age is not None and self.age <= self.rpo_objective

    @property
    def ok(self) -> bool:
        """The objective holds: a verified image no older than the RPO, from a store that does
        not serve older images than it did."""
        return self.rpo_met and self.verified is not None and self.rollback is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "store": self.store,
            "image_id": self.image_id,
            "ami": self.ami,
            "instance": self.instance,
            "point_in_time": format_time(self.point_in_time) if self.point_in_time else None,
            "age_seconds": round(self.age, 3) if self.age is not None else None,
            "rpo_objective_seconds": self.rpo_objective,
            "rpo_met": self.rpo_met,
            "verified": self.verified,
            "verified_at": self.verified_at,
            "ok": self.ok,
            "error": self.error,
            "rollback": self.rollback,
        }


@dataclass(frozen=True)
class StatusReport:
    plan: str
    now: datetime
    roles: tuple[RoleStatus, ...]
    last_run: Mapping[str, Any] | None = None
    #: The guest preflight of each role's newest image per cloud target (preflight.py).
    guests: tuple[Verdict, ...] = ()

    @property
    def ok(self) -> bool:
        """Every role's objective holds, and no newest image is known not to boot on a
        target: a plan that cannot fail over as it stands does not meet its objectives."""
        return all(r.ok for r in self.roles) and all(g.bootable for g in self.guests)

    def failing(self) -> list[RoleStatus]:
        return [r for r in self.roles if not r.ok]

    def as_dict(self) -> dict[str, Any]:
        return {
            "plan": self.plan,
            "now": format_time(self.now),
            "ok": self.ok,
            "roles": [r.as_dict() for r in self.roles],
            "guests": [g.as_dict() for g in self.guests],
            "last_run": dict(self.last_run) if self.last_run else None,
        }


def point_in_time(image: StoredImage) -> datetime:
    """When the image's data was frozen: an instance's snapshot set's start time, the AMI's
    creation time, else the export time."""
    ami = image.manifest.metadata.get(AMI_METADATA)
    text = image.manifest.metadata.get(POINT_IN_TIME_METADATA)
    if not text and isinstance(ami, Mapping):
        text = ami.get("creation_date")
    if text:
        try:
            return datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(UTC)
        except ValueError:
            log.debug("unparsable AMI creation date %r", text)
    return image.manifest.created


def newest(images: Sequence[StoredImage], name: str) -> StoredImage | None:
    lineage = [i for i in images if i.manifest.name == name]
    return max(lineage, key=lambda i: (point_in_time(i), i.manifest.created, i.id), default=None)


def summarize(
    plan: Plan,
    listings: Sequence[StoreListing],
    verified: VerifiedRecord,
    now: datetime,
    last_run: Mapping[str, Any] | None = None,
    guests: Sequence[Verdict] = (),
) -> StatusReport:
    rows = []
    for role in plan.sources:
        for listing in listings:
            base = RoleStatus(
                role=role,
                store=listing.name,
                rpo_objective=plan.rpo(role),
                rollback=listing.rollbacks.get(plan.image_name(role)),
            )
            if listing.error is not None:
                rows.append(_replace(base, error=listing.error))
                continue
            image = newest(listing.images, plan.image_name(role))
            if image is None:
                rows.append(_replace(base, error="no image yet"))
                continue
            when = point_in_time(image)
            check = verified.get(listing.repo_id, image.id)
            ami = image.manifest.metadata.get(AMI_METADATA)
            instance = image.manifest.metadata.get(INSTANCE_METADATA)
            rows.append(
                _replace(
                    base,
                    image_id=image.id,
                    ami=str(ami.get("image_id")) if isinstance(ami, Mapping) else None,
                    instance=str(instance.get("instance_id"))
                    if isinstance(instance, Mapping)
                    else None,
                    point_in_time=when,
                    age=max(0.0, (now - when).total_seconds()),
                    verified=check.level if check else None,
                    verified_at=check.at if check else None,
                )
            )
    # Only verdicts on what is newest now: an image replaced since was judged for nothing.
    current = {(r.role, r.image_id) for r in rows if r.store == plan.stores.primary.name}
    judged = tuple(g for g in guests if (g.role, g.image_id) in current)
    return StatusReport(plan.name, now, tuple(rows), last_run, judged)


def _replace(row: RoleStatus, **changes: Any) -> RoleStatus:
    from dataclasses import replace

    return replace(row, **changes)


def lineages(plan: Plan) -> set[str]:
    return {plan.image_name(role) for role in plan.sources}


def check_rollbacks(
    plan: Plan, state_dir: Path, url: str, images: Sequence[StoredImage]
) -> dict[str, str]:
    """The plan's lineages the store at ``url`` serves older images of than this host saw
    there (and records what is newer); lineage → the finding."""
    found = SeenImages(state_dir).check(url, images, lineages(plan))
    return {r.lineage: str(r) for r in found}


def list_store(plan: Plan, name: str, state_dir: Path | None = None) -> StoreListing:
    """One store's images; an unreachable store is a listing with an error, not an exception."""
    state = state_dir or default_state_dir()
    try:
        with open_store(plan.store(name), state) as repo:
            images = tuple(repo.list_images())
            rollbacks = check_rollbacks(plan, state, repo.url, images)
            return StoreListing(name, repo.config.id.hex(), images, rollbacks=rollbacks)
    except ImagekitError as exc:
        return StoreListing(name, error=str(exc))


def gather(plan: Plan, state_dir: Path, now: datetime | None = None) -> StatusReport:
    paths = PlanPaths.of(plan, state_dir)
    listings = [list_store(plan, s.name, state_dir) for s in plan.stores.all()]
    status = read_json(paths.status)
    last_run = status.get("run") if isinstance(status, Mapping) else None
    when = now or datetime.now(UTC)
    verified = VerifiedRecord.load(paths.verified)
    return summarize(
        plan, listings, verified, when, last_run, guests=preflight.load(plan, state_dir)
    )


def render(report: StatusReport) -> str:
    """The human table of ``imagekit status``."""
    lines = [f"plan {report.plan}: {'objectives hold' if report.ok else 'OBJECTIVES NOT MET'}"]
    header = ("role", "store", "newest image", "age", "rpo", "verified", "ok")
    table = [header]
    for r in report.roles:
        table.append(
            (
                r.role,
                r.store,
                (r.image_id or "-")[:12] if not r.error else f"({r.error[:60]})",
                format_duration(r.age) if r.age is not None else "-",
                format_duration(r.rpo_objective),
                r.verified or "no",
                "yes" if r.ok else ("NO (rolled back)" if r.rollback else "NO"),
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table
    ]
    for r in report.roles:
        if r.rollback:
            lines.append(f"ROLLBACK: {r.rollback}")
    for g in report.guests:
        verdict = "bootable" if g.bootable else f"BLOCKED: {'; '.join(g.blockers)}"
        lines.append(f"guest {g.role} on {g.target} ({g.image_id[:12]}): {verdict}")
    run = report.last_run
    if run:
        outcome = "ok" if run.get("ok") else f"FAILED ({len(run.get('failures', []))} failures)"
        lines.append(f"last run: {run.get('finished', '?')} {outcome}")
    else:
        lines.append("last run: none recorded")
    return "\n".join(lines)


__all__ = [
    "RoleStatus",
    "StatusReport",
    "StoreListing",
    "check_rollbacks",
    "gather",
    "list_store",
    "newest",
    "point_in_time",
    "render",
    "summarize",
]
