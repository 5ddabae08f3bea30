"""``export`` of running instances: a crash-consistent snapshot set per run, exported incrementally.

Per instance and run::

    repair (lifecycle: reuse a young set a dead run left, remove older leftovers)
      → pre hook → CreateSnapshots (every volume at one instant, tagged) → post hook
      → wait until completed (Progress) → export each volume: ListChangedBlocks against the
        snapshot the store holds for it (the lineage base), full read when there is none or it
        is gone → manifest (instance, mapping, the set's start time as the data's point in time)
      → lifecycle: the new set is the base now; older imagekit snapshots are deleted

The export itself is ``export_ami``'s: the set is described as an AMI of the instance, so
resuming, the changed-block plan and the store's ingest are the same code.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import botocore.exceptions

from imagekit.errors import InputError
from imagekit.export import lifecycle, snapshots
from imagekit.export.aws import translate
from imagekit.export.hooks import HookSpec, app_consistent
from imagekit.export.instance import (
    INSTANCE_METADATA,
    POINT_IN_TIME_METADATA,
    InstanceSelection,
    InstanceSpec,
    parse_instance,
)
from imagekit.export.job import AMI_METADATA, ExportResult, export_ami
from imagekit.progress import Progress
from imagekit.store.manifest import StoredImage
from imagekit.store.repository import Repository

log = logging.getLogger(__name__)

#: The plan name in the tags of snapshots taken by ``imagekit export`` outside a plan.
CLI_PLAN = "cli"


@dataclass(frozen=True)
class InstanceSource:
    """How one instance is exported: whose snapshots these are, hooks, lifecycle settings."""

    plan: str
    role: str
    exclude_boot_volume: bool = False
    hooks: HookSpec | None = None
    reuse_within: float = lifecycle.DEFAULT_REUSE_WITHIN
    wait_timeout: float = snapshots.WAIT_TIMEOUT
    poll_interval: float = snapshots.POLL_INTERVAL


@dataclass(frozen=True)
class InstanceExportResult:
    export: ExportResult
    instance: InstanceSpec
    point_in_time: datetime
    snapshot_set: Mapping[str, str]  # volume id → snapshot id
    reused: bool
    deleted: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    snapshot_seconds: float = 0.0  # CreateSnapshots until completed

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.export.as_dict(),
            "instance": self.instance.instance_id,
            "point_in_time": self.point_in_time.isoformat(),
            "snapshot_set": dict(self.snapshot_set),
            "reused": self.reused,
            "deleted": list(self.deleted),
            "warnings": list(self.warnings),
            "snapshot_seconds": round(self.snapshot_seconds, 3),
        }


def resolve_instances(ec2: Any, region: str, selection: InstanceSelection) -> list[InstanceSpec]:
    """Describe the selected instances and their volumes; refuse what cannot be exported."""
    if selection.is_empty():
        raise InputError("no instance selected", hint="give --instance or --instance-filter")
    found: dict[str, Mapping[str, Any]] = {}
    args: dict[str, Any] = {}
    if selection.instance_ids:
        args["InstanceIds"] = list(selection.instance_ids)
    if selection.filters:
        args["Filters"] = selection.describe_filters()
    subject = ", ".join(selection.instance_ids) or "instances"
    try:
        for page in ec2.get_paginator("describe_instances").paginate(**args):
            for reservation in page.get("Reservations", []):
                found.update({i["InstanceId"]: i for i in reservation.get("Instances", [])})
        # Terminated instances linger in answers for an hour: never a source.
        live = {k: v for k, v in found.items() if v.get("State", {}).get("Name") != "terminated"}
        if not live:
            raise InputError("no instance matches the selection", hint=f"in {region}")
        volume_ids = sorted(
            {
                m["Ebs"]["VolumeId"]
                for i in live.values()
                for m in i.get("BlockDeviceMappings", [])
                if m.get("Ebs", {}).get("VolumeId")
            }
        )
        volumes = {}
        if volume_ids:
            answer = ec2.describe_volumes(VolumeIds=volume_ids)
            volumes = {v["VolumeId"]: v for v in answer.get("Volumes", [])}
        nvme = _nvme_support(ec2, {str(i.get("InstanceType", "")) for i in live.values()})
    except botocore.exceptions.ClientError as exc:
        raise translate(exc, "DescribeInstances", subject) from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise translate(exc, "DescribeInstances", subject) from exc
    return [
        parse_instance(i, region, volumes, nvme.get(str(i.get("InstanceType", ""))))
        for _, i in sorted(live.items())
    ]


def _nvme_support(ec2: Any, types: set[str]) -> dict[str, bool]:
    """Instance type → EBS volumes appear as NVMe (Nitro); unknown types are left out."""
    try:
        answer = ec2.describe_instance_types(InstanceTypes=sorted(t for t in types if t))
    except botocore.exceptions.ClientError:
        return {}  # informative only: not worth failing an export over
    out = {}
    for entry in answer.get("InstanceTypes", []):
        support = (entry.get("EbsInfo") or {}).get("NvmeSupport")
        if support is not None:
            out[str(entry["InstanceType"])] = support in ("required", "supported")
    return out


def stored_snapshots(images: Sequence[StoredImage], image_name: str) -> dict[str, float]:
    """Snapshot ids the store holds for this lineage → when their image was written."""
    held: dict[str, float] = {}
    for image in images:
        if image.manifest.name != image_name:
            continue
        ami = image.manifest.metadata.get(AMI_METADATA)
        if isinstance(ami, Mapping):
            written = image.manifest.created.timestamp()
            for vol in ami.get("volumes", []):
                snap = str(vol.get("snapshot_id"))
                held[snap] = max(written, held.get(snap, written))
    return held


def new_run_id(now: datetime) -> str:
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}"


def export_instance(
    repo: Repository,
    ec2: Any,
    ebs: Any,
    instance: InstanceSpec,
    source: InstanceSource,
    *,
    image_name: str | None = None,
    concurrency: int = 8,
    state_dir: Path,
    progress: Progress | None = None,
    blocks: Any = None,
    run_id: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> InstanceExportResult:
    """Snapshot ``instance`` (or resume a set a dead run left) and export it as one image."""
    name = image_name or instance.name
    tagged = (source.plan, source.role, instance.instance_id)
    volume_ids = [
        v.volume_id
        for v in instance.volumes
        if not (source.exclude_boot_volume and v.device_name == instance.root_device_name)
    ]
    held = stored_snapshots(repo.list_images(), name)

    def tidy(
        stored: Mapping[str, float], reuse_within: float
    ) -> tuple[lifecycle.Decision, list[str]]:
        found = snapshots.list_managed(ec2, *tagged, sleep=sleep)
        decision = lifecycle.decide(
            [lifecycle.parse_snapshot(s) for s in found], stored, volume_ids, now(), reuse_within
        )
        return decision, snapshots.delete_checked(ec2, decision.delete, *tagged, sleep=sleep)

    repaired, deleted = tidy(held, source.reuse_within)
    warnings: list[str] = []
    started = time.monotonic()
    if repaired.reuse:
        log.info("%s: resuming the set of run %s", instance.instance_id, repaired.reuse[0].run)
        set_ids = {s.volume_id: s.snapshot_id for s in repaired.reuse}
    else:
        tags = lifecycle.snapshot_tags(*tagged, run_id or new_run_id(now()))
        set_ids = _take_set(ec2, instance, source, tags, warnings, sleep)
    done = snapshots.wait_completed(
        ec2,
        list(set_ids.values()),
        progress=progress,
        sleep=sleep,
        poll_interval=source.poll_interval,
        timeout=source.wait_timeout,
    )
    snapshot_seconds = time.monotonic() - started
    point = min(s.start_time for s in done)
    result = export_ami(
        repo,
        ebs,
        instance.as_ami(set_ids, point),
        image_name=name,
        concurrency=concurrency,
        state_dir=state_dir,
        progress=progress,
        blocks=blocks,
        metadata={
            INSTANCE_METADATA: {**instance.as_metadata(), "snapshot_set": set_ids},
            POINT_IN_TIME_METADATA: point.isoformat(),
            "instance_type": instance.instance_type,
        },
        source=f"aws:{instance.region}:{instance.instance_id}",
    )
    # The new set is what the store holds newest now: it becomes the base, older ones go.
    newest = max(held.values(), default=0.0) + 1.0
    _, retired = tidy({**held, **{snap: newest for snap in set_ids.values()}}, 0.0)
    return InstanceExportResult(
        export=result,
        instance=instance,
        point_in_time=point,
        snapshot_set=set_ids,
        reused=bool(repaired.reuse),
        deleted=(*deleted, *retired),
        warnings=tuple(warnings),
        snapshot_seconds=snapshot_seconds,
    )


def _take_set(
    ec2: Any,
    instance: InstanceSpec,
    source: InstanceSource,
    tags: Mapping[str, str],
    warnings: list[str],
    sleep: Callable[[float], None],
) -> dict[str, str]:
    """Pre hook, CreateSnapshots, post hook: the new set, volume id → snapshot id."""
    with app_consistent(source.hooks, warnings):
        made = snapshots.create_set(
            ec2,
            instance.instance_id,
            tags,
            exclude_boot_volume=source.exclude_boot_volume,
            sleep=sleep,
        )
    return {str(s["VolumeId"]): str(s["SnapshotId"]) for s in made}


def export_instances(
    repo: Repository,
    selection: InstanceSelection,
    *,
    region: str | None = None,
    image_name: str | None = None,
    exclude_boot_volume: bool = False,
    concurrency: int = 8,
    state_dir: Path,
    progress: Progress | None = None,
) -> list[InstanceExportResult]:
    """``imagekit export --instance``: each selected instance as its own image (its Name tag)."""
    from imagekit.export.job import aws_clients, reading

    aws = aws_clients(region, concurrency)
    ec2, ebs, where = aws.ec2, aws.ebs, aws.region
    instances = resolve_instances(ec2, where, selection)
    if image_name and len(instances) > 1:
        raise InputError(
            "--image-name needs exactly one instance", hint=f"{len(instances)} were selected"
        )
    results = []
    with reading(aws.session, ebs, concurrency) as reader:
        for instance in instances:
            name = image_name or instance.name
            source = InstanceSource(CLI_PLAN, name, exclude_boot_volume=exclude_boot_volume)
            results.append(
                export_instance(
                    repo,
                    ec2,
                    ebs,
                    instance,
                    source,
                    image_name=name,
                    concurrency=concurrency,
                    state_dir=state_dir,
                    progress=progress,
                    blocks=reader,
                )
            )
    return results


__all__ = [
    "INSTANCE_METADATA",
    "POINT_IN_TIME_METADATA",
    "InstanceExportResult",
    "InstanceSource",
    "export_instance",
    "export_instances",
    "resolve_instances",
    "stored_snapshots",
]
