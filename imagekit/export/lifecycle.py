"""Which of imagekit's own snapshots an instance export keeps, reuses or deletes (pure).

Every snapshot imagekit takes carries its tags (``imagekit:managed=true``, the plan, the role,
the instance, the run). A run decides from those tags alone, so a crash at any point is repaired
by the next one:

- per volume, the **newest snapshot the store holds** is kept: the next run's lineage base
  (ListChangedBlocks against it reads only what changed);
- the newest set no store holds yet (a run that died between snapshot and export) is **reused**
  while it is young enough (its export resumes from the journal), else it is **removed**;
- everything else of the same plan, role and instance is **deleted**, and only ever a snapshot
  whose tags say imagekit made it for this plan — checked again on the very answer that lists
  it, just before the delete (``is_ours``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

TAG_MANAGED = "imagekit:managed"  # the IAM policy's delete condition names it (export.iam)
TAG_PLAN = "imagekit:plan"
TAG_ROLE = "imagekit:role"
TAG_INSTANCE = "imagekit:instance"
TAG_RUN = "imagekit:run"
TAG_DEVICE = "imagekit:device"
MANAGED_VALUE = "true"

#: A set left by a run that died is exported, not replaced, while younger than this: a prompt
#: restart (systemd, the operator) resumes where it stopped; later, fresher data is worth more.
DEFAULT_REUSE_WITHIN = 900.0


def snapshot_tags(plan: str, role: str, instance_id: str, run: str) -> dict[str, str]:
    return {
        TAG_MANAGED: MANAGED_VALUE,
        TAG_PLAN: plan,
        TAG_ROLE: role,
        TAG_INSTANCE: instance_id,
        TAG_RUN: run,
    }


def tag_filters(plan: str, role: str, instance_id: str) -> list[dict[str, Any]]:
    """DescribeSnapshots filters for this plan, role and instance's snapshots."""
    return [
        {"Name": f"tag:{TAG_MANAGED}", "Values": [MANAGED_VALUE]},
        {"Name": f"tag:{TAG_PLAN}", "Values": [plan]},
        {"Name": f"tag:{TAG_ROLE}", "Values": [role]},
        {"Name": f"tag:{TAG_INSTANCE}", "Values": [instance_id]},
    ]


def _tags(desc: Mapping[str, Any]) -> dict[str, str]:
    return {str(t["Key"]): str(t.get("Value", "")) for t in desc.get("Tags", []) or []}


def is_ours(desc: Mapping[str, Any], plan: str, role: str, instance_id: str) -> bool:
    """True only for a snapshot imagekit tagged for exactly this plan, role and instance."""
    tags = _tags(desc)
    return (
        tags.get(TAG_MANAGED) == MANAGED_VALUE
        and tags.get(TAG_PLAN) == plan
        and tags.get(TAG_ROLE) == role
        and tags.get(TAG_INSTANCE) == instance_id
    )


@dataclass(frozen=True)
class ManagedSnapshot:
    snapshot_id: str
    volume_id: str
    run: str
    state: str
    start_time: datetime
    progress: str = ""


def parse_snapshot(desc: Mapping[str, Any]) -> ManagedSnapshot:
    start = desc.get("StartTime")
    if isinstance(start, str):
        start = datetime.fromisoformat(start.replace("Z", "+00:00"))
    if not isinstance(start, datetime):
        start = datetime.fromtimestamp(0, UTC)
    return ManagedSnapshot(
        snapshot_id=str(desc["SnapshotId"]),
        volume_id=str(desc.get("VolumeId", "")),
        run=_tags(desc).get(TAG_RUN, ""),
        state=str(desc.get("State", "")),
        start_time=start.astimezone(UTC),
        progress=str(desc.get("Progress", "")),
    )


@dataclass(frozen=True)
class Decision:
    keep: tuple[ManagedSnapshot, ...]  # the lineage bases: newest stored snapshot per volume
    reuse: tuple[ManagedSnapshot, ...]  # an earlier run's set to export now (empty: take one)
    delete: tuple[ManagedSnapshot, ...]


def decide(
    snapshots: Iterable[ManagedSnapshot],
    stored: Mapping[str, float],
    volumes: Sequence[str],
    now: datetime,
    reuse_within: float = DEFAULT_REUSE_WITHIN,
) -> Decision:
    """Keep, reuse, delete: see the module docstring.

    ``stored``: snapshot id → when the store's image holding it was written (the newest stored
    one of a volume is its base; snapshot start times have whole-second resolution, the store's
    order does not tie); ``volumes``: the instance's volume ids that this run exports.
    """
    snaps = sorted(snapshots, key=lambda s: (s.start_time, s.snapshot_id), reverse=True)
    keep: dict[str, ManagedSnapshot] = {}
    for snap in sorted(
        (s for s in snaps if s.snapshot_id in stored),
        key=lambda s: (stored[s.snapshot_id], s.start_time),
        reverse=True,
    ):
        keep.setdefault(snap.volume_id, snap)
    newest_kept = max((s.start_time for s in keep.values()), default=None)
    reuse: tuple[ManagedSnapshot, ...] = ()
    for run, members in _runs(s for s in snaps if s.snapshot_id not in stored):
        young = (now - members[0].start_time).total_seconds() <= reuse_within
        newer = newest_kept is None or members[0].start_time >= newest_kept
        whole = {m.volume_id for m in members} == set(volumes) and len(members) == len(volumes)
        healthy = all(m.state in ("pending", "completed") for m in members)
        if run and young and newer and whole and healthy:
            reuse = tuple(sorted(members, key=lambda m: volumes.index(m.volume_id)))
        break  # only the newest unstored set can be worth reusing
    kept_ids = {s.snapshot_id for s in (*keep.values(), *reuse)}
    delete = tuple(s for s in snaps if s.snapshot_id not in kept_ids)
    return Decision(tuple(keep.values()), reuse, delete)


def _runs(snaps: Iterable[ManagedSnapshot]) -> list[tuple[str, list[ManagedSnapshot]]]:
    """Snapshots grouped by run, newest run first."""
    groups: dict[str, list[ManagedSnapshot]] = {}
    for snap in snaps:
        groups.setdefault(snap.run or snap.snapshot_id, []).append(snap)
    return sorted(groups.items(), key=lambda kv: max(s.start_time for s in kv[1]), reverse=True)


__all__ = [
    "DEFAULT_REUSE_WITHIN",
    "TAG_MANAGED",
    "Decision",
    "ManagedSnapshot",
    "decide",
    "is_ours",
    "parse_snapshot",
    "snapshot_tags",
    "tag_filters",
]
