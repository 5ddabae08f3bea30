"""``run-export`` for roles whose source is a running instance: one snapshot set per run.

The plan names the instance (by id, or by tags matching exactly one); each run snapshots it,
exports the set into the primary store as the role's next image, and keeps the snapshot
lifecycle tidy (``export.instance_job``). The row it returns joins the run's ``exports``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions

from imagekit.errors import InputError, PlanError
from imagekit.export.aws import client, translate
from imagekit.export.hooks import HookSpec
from imagekit.export.instance import InstanceSelection, InstanceSpec
from imagekit.export.instance_job import InstanceSource, export_instance, resolve_instances
from imagekit.export.job import reading
from imagekit.plans.model import HooksSpec, InstanceSourceSpec, Plan
from imagekit.progress import Progress
from imagekit.store.repository import Repository


def instance_roles(plan: Plan) -> list[str]:
    return [role for role, source in plan.sources.items() if source.instance is not None]


def hook_spec(spec: HooksSpec | None, instance: InstanceSpec) -> HookSpec | None:
    if spec is None:
        return None
    host = spec.host or instance.private_ip
    if not host:
        raise InputError(
            f"hooks: {instance.instance_id} has no private IP address",
            hint="set hooks.host in the plan",
        )
    return HookSpec(
        host=host,
        host_key=spec.host_key,
        identity=spec.identity,
        user=spec.user,
        port=spec.port,
        pre=spec.pre,
        post=spec.post,
        timeout=spec.timeout,
    )


def _the_instance(ec2: Any, region: str, role: str, spec: InstanceSourceSpec) -> InstanceSpec:
    selection = InstanceSelection(
        instance_ids=(spec.id,) if spec.id else (), filters=spec.describe_filters()
    )
    found = resolve_instances(ec2, region, selection)
    if len(found) != 1:
        ids = ", ".join(i.instance_id for i in found)
        raise PlanError(
            f"source {role}: the tags match {len(found)} instances ({ids})",
            hint="one role is one instance: narrow the tags or name it by id",
        )
    return found[0]


def export_instance_role(
    plan: Plan,
    primary: Repository,
    role: str,
    state_dir: Path,
    progress: Progress | None,
    warnings: list[str],
) -> dict[str, Any]:
    source = plan.sources[role]
    assert source.instance is not None
    region = str(plan.region(role))
    try:
        sess = boto3.session.Session(profile_name=plan.aws.profile, region_name=region)
        ec2, ebs = client(sess, "ec2"), client(sess, "ebs")
    except botocore.exceptions.BotoCoreError as exc:
        raise translate(exc, "session", role) from exc
    instance = _the_instance(ec2, region, role, source.instance)
    with reading(sess, ebs, plan.aws.concurrency) as reader:
        result = export_instance(
            primary,
            ec2,
            ebs,
            instance,
            InstanceSource(
                plan.name,
                role,
                exclude_boot_volume=source.instance.exclude_boot_volume,
                hooks=hook_spec(source.instance.hooks, instance),
            ),
            image_name=plan.image_name(role),
            concurrency=plan.aws.concurrency,
            state_dir=state_dir,
            progress=progress,
            blocks=reader,
        )
    warnings.extend(f"export {role}: {w}" for w in result.warnings)
    volumes = result.export.volumes
    return {
        "role": role,
        "store": plan.stores.primary.name,
        "ami": instance.image_id,
        "instance": instance.instance_id,
        "image_id": result.export.image.id,
        "mode": "+".join(sorted({v.mode for v in volumes})),
        "point_in_time": result.point_in_time.isoformat(),
        "snapshot_set": dict(result.snapshot_set),
        "reused_snapshots": result.reused,
        "snapshots_deleted": list(result.deleted),
        "blocks_read": sum(v.blocks_read for v in volumes),
        "bytes_read": result.export.bytes_read,
        "bytes_uploaded": result.export.bytes_uploaded,
        "seconds": round(result.export.seconds + result.snapshot_seconds, 3),
    }


__all__ = ["export_instance_role", "hook_spec", "instance_roles"]
