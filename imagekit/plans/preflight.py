"""Nightly preflight: would each role's newest image come up on each of the plan's targets?

``run-export`` calls ``preflight`` after verifying the primary store: for every role, the newest
image is restored to a temporary folder and inspected by the guest stage for every target whose
provider the guest rules know, so a blocker (a kernel without the target's disk driver, a
UEFI-only disk for a BIOS-only cloud, Windows) is found the night it appears, not at the
outage. The verdicts are kept in ``preflight.json`` beside the plan's status, keyed by image id:
an image already judged is not restored again. ``imagekit status`` and the metrics read them.

Inspection needs a reader key: on an export host holding only a writer key it is skipped, said
once per run. A host without libguestfs, or a guest it cannot inspect, is a warning: the export
itself succeeded. A blocker is a failure of the run (the plan cannot fail over as it stands).
Targets on ``local`` (the bench) are not judged nightly.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagekit.errors import GuestError
from imagekit.guest.targets import TARGETS
from imagekit.plans.model import Plan
from imagekit.plans.records import PlanPaths, read_json, write_json
from imagekit.store.manifest import StoredImage
from imagekit.store.repository import Repository

log = logging.getLogger(__name__)
RECORD = "preflight.json"


@dataclass(frozen=True)
class Verdict:
    role: str
    target: str
    image_id: str
    bootable: bool
    blockers: tuple[str, ...] = ()  # "code: message" of each blocker

    def as_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "target": self.target,
            "image_id": self.image_id,
            "bootable": self.bootable,
            "blockers": list(self.blockers),
        }

    @staticmethod
    def from_dict(doc: Mapping[str, Any]) -> Verdict:
        return Verdict(
            str(doc["role"]),
            str(doc["target"]),
            str(doc["image_id"]),
            bool(doc["bootable"]),
            tuple(str(b) for b in doc.get("blockers") or ()),
        )


def record_path(plan: Plan, state_dir: Path) -> Path:
    return PlanPaths.of(plan, state_dir).folder / RECORD


def load(plan: Plan, state_dir: Path) -> list[Verdict]:
    doc = read_json(record_path(plan, state_dir))
    rows = doc.get("verdicts") if isinstance(doc, Mapping) else None
    out = []
    for row in rows or ():
        try:
            out.append(Verdict.from_dict(row))
        except (KeyError, TypeError, ValueError):
            log.warning("%s: an unreadable verdict was ignored", record_path(plan, state_dir))
    return out


#: Local QEMU is the rehearsal bench, not a place a failover goes: its targets are left to
#: ``imagekit inspect --target local``, which keeps the nightly job (and the demo) short.
BENCH = frozenset({"local"})


def guest_targets(plan: Plan) -> dict[str, str]:
    """Plan target → the guest rules' target (its provider): the clouds and twins the rules
    know."""
    return {
        name: t.provider
        for name, t in plan.targets.items()
        if t.provider in TARGETS and t.provider not in BENCH
    }


def inspect_image(
    repo: Repository, image: StoredImage, targets: Sequence[str], work: Path, accel: str
) -> dict[str, tuple[bool, tuple[str, ...]]]:
    """Guest target → (bootable, blockers) for one stored image (restored raw under ``work``)."""
    from imagekit.guest.adapt import inspect
    from imagekit.store.restore import restore

    out = work / "disk.raw" if len(image.manifest.volumes) == 1 else work / "volumes"
    files = restore(repo, image, out, fmt="raw")
    disks = [(Path(f["path"]), "raw") for f in files]
    report = inspect(disks, [TARGETS[t] for t in targets], log=work / "guestfs.log", accel=accel)
    return {
        a.target: (a.bootable, tuple(f"{b.code}: {b.message}" for b in a.blockers))
        for a in report.assessments
    }


def preflight(
    plan: Plan,
    repo: Repository,
    images: Sequence[StoredImage],
    state_dir: Path,
    warnings: list[str],
    *,
    accel: str = "tcg",
) -> list[Verdict]:
    """Every role's newest image judged for every plan target; saved, and returned."""
    from imagekit.plans.status import newest

    targets = guest_targets(plan)
    if not targets:
        return []
    if repo.key.read_private is None:
        warnings.append(
            "guest preflight skipped: this host holds a write-only key (inspecting an image "
            "needs a reader; run `imagekit status` where one is)"
        )
        return load(plan, state_dir)
    known = {(v.role, v.target, v.image_id): v for v in load(plan, state_dir)}
    verdicts: list[Verdict] = []
    for role in plan.sources:
        image = newest(images, plan.image_name(role))
        if image is None:
            continue
        cached = [known.get((role, t, image.id)) for t in targets]
        if all(cached):
            verdicts += [v for v in cached if v is not None]
            continue
        wanted = sorted(set(targets.values()))
        try:
            with tempfile.TemporaryDirectory(prefix="imagekit-preflight-", dir=state_dir) as tmp:
                judged = inspect_image(repo, image, wanted, Path(tmp), accel)
        except GuestError as exc:
            warnings.append(f"guest preflight of {role} ({image.id[:12]}): {exc}")
            continue
        for name, provider in targets.items():
            bootable, blockers = judged[provider]
            verdicts.append(Verdict(role, name, image.id, bootable, blockers))
    write_json(record_path(plan, state_dir), {"verdicts": [v.as_dict() for v in verdicts]})
    return verdicts


def blocked(verdicts: Sequence[Verdict]) -> list[Verdict]:
    return [v for v in verdicts if not v.bootable]


__all__ = ["RECORD", "Verdict", "blocked", "guest_targets", "load", "preflight"]
