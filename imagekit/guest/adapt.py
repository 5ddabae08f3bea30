"""Inspect and adapt disks: the guest stage's one inspect-decide-apply round per disk set.

``inspect`` opens the disks read-only and assesses them for any number of targets; ``adapt``
opens a working copy writable, assesses it for one target and applies that target's edits in
the same appliance launch (8-14 s under TCG, the larger part of the stage's cost). A guest with
blockers for the target is refused before anything is changed: the error names each blocker.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagekit.errors import GuestError
from imagekit.guest.facts import GuestFacts, parse_facts
from imagekit.guest.libguestfs import GuestfsSession
from imagekit.guest.rules import Assessment, assess
from imagekit.guest.targets import GuestTarget


@dataclass(frozen=True)
class GuestReport:
    facts: GuestFacts
    assessments: tuple[Assessment, ...]
    #: What was changed, in order, with the seconds each took (``adapt`` only).
    applied: tuple[Mapping[str, Any], ...] = ()
    seconds: Mapping[str, float] = field(default_factory=dict)

    def findings(self) -> list[dict[str, Any]]:
        return [f.as_dict() for a in self.assessments for f in a.findings]

    def bootable_on(self) -> dict[str, bool]:
        return {a.target: a.bootable for a in self.assessments}

    def as_dict(self) -> dict[str, Any]:
        return {
            "facts": self.facts.as_dict(),
            "findings": self.findings(),
            "bootable_on": self.bootable_on(),
        }

    def record(self) -> dict[str, Any]:
        """What a run record keeps: findings, changes and times (the facts stay out)."""
        (assessment,) = self.assessments
        return {
            "target": assessment.target,
            "findings": self.findings(),
            "applied": [dict(a) for a in self.applied],
            "profile": {
                "boot_mode": assessment.profile.boot_mode,
                "architecture": assessment.profile.architecture,
                "azure_ready": assessment.profile.azure_ready,
            },
            "seconds": dict(self.seconds),
        }


def inspect(
    disks: Sequence[tuple[Path, str]],
    targets: Sequence[GuestTarget],
    *,
    log: Path,
    accel: str = "tcg",
) -> GuestReport:
    """The facts of ``disks`` (boot disk first; (path, qemu format)) and each target's verdict."""
    started = time.monotonic()
    with GuestfsSession(disks, writable=False, log=log, accel=accel) as session:
        raw = session.inspect()
        launch = session.launch_seconds
    facts = parse_facts(raw)
    return GuestReport(
        facts,
        tuple(assess(facts, t) for t in targets),
        seconds={
            "launch": launch,
            "inspect": float(raw.get("seconds", 0.0)),
            "total": round(time.monotonic() - started, 3),
        },
    )


def blocked(assessment: Assessment) -> GuestError:
    lines = "; ".join(f"{b.code}: {b.message}" for b in assessment.blockers)
    fixes = "; ".join(dict.fromkeys(b.fix for b in assessment.blockers))
    return GuestError(
        f"the guest cannot come up on {assessment.target}: {lines}",
        hint=f"{fixes}; or boot with --no-adapt to try it as it is",
    )


def adapt(
    disks: Sequence[tuple[Path, str]],
    target: GuestTarget,
    *,
    log: Path,
    accel: str = "tcg",
) -> GuestReport:
    """Adapt the working copy ``disks`` for ``target``; ``GuestError`` if it has blockers."""
    started = time.monotonic()
    with GuestfsSession(disks, writable=True, log=log, accel=accel) as session:
        raw = session.inspect()
        facts = parse_facts(raw)
        assessment = assess(facts, target)
        if assessment.blockers:
            raise blocked(assessment)
        edits = assessment.edits
        applying = time.monotonic()
        results = session.apply([e.wire() for e in edits]) if edits else []
        apply_seconds = time.monotonic() - applying
        launch = session.launch_seconds
    applied = tuple(
        {"change": edit.describe(), "seconds": result.get("seconds", 0.0)}
        for edit, result in zip(edits, results, strict=True)
    )
    return GuestReport(
        facts,
        (assessment,),
        applied,
        seconds={
            "launch": launch,
            "inspect": float(raw.get("seconds", 0.0)),
            "apply": round(apply_seconds, 3),
            "total": round(time.monotonic() - started, 3),
        },
    )


__all__ = ["GuestReport", "adapt", "blocked", "inspect"]
