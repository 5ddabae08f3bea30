"""``imagekit export`` and ``imagekit iam-policy``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from imagekit.cli.app import cli
from imagekit.cli.common import fingerprint_option, identity_option, open_repository, preload
from imagekit.cli.output import emit, json_option, note, progress_bar
from imagekit.errors import UsageError
from imagekit.export.ami import Selection, parse_filter
from imagekit.export.iam import export_policy
from imagekit.export.instance import InstanceSelection
from imagekit.state import state_dir


@cli.command("export")
@click.argument("ami_ids", nargs=-1, metavar="[AMI_ID]...")
@click.option("--store", "store_url", required=True, help="Store URL (path, s3://, azure://, …).")
@identity_option
@fingerprint_option
@click.option("--region", default=None, help="AWS region (else AWS_REGION / the profile's).")
@click.option(
    "--filter",
    "filters",
    multiple=True,
    metavar="NAME=VALUE",
    help="DescribeImages filter, e.g. tag:dr=true (repeatable; own AMIs only).",
)
@click.option(
    "--name",
    "names",
    multiple=True,
    metavar="PATTERN",
    help="AMI name pattern, e.g. 'web-*' (repeatable).",
)
@click.option("--latest-per-name", is_flag=True, help="Only the newest AMI of each name.")
@click.option(
    "--instance",
    "instance_ids",
    multiple=True,
    metavar="ID",
    help="A running instance: snapshot its volumes now and export them (repeatable).",
)
@click.option(
    "--instance-filter",
    "instance_filters",
    multiple=True,
    metavar="NAME=VALUE",
    help="DescribeInstances filter, e.g. tag:app=db (repeatable).",
)
@click.option(
    "--exclude-boot-volume", is_flag=True, help="Instances: snapshot the data volumes only."
)
@click.option(
    "--image-name",
    default=None,
    help="Name of the stored image (default: the AMI's name); one AMI only.",
)
@click.option(
    "--concurrency",
    default=8,
    show_default=True,
    help="Blocks fetched at once per volume (AWS allows 1,000 requests/s per snapshot).",
)
@json_option
def export_command(
    ami_ids: tuple[str, ...],
    store_url: str,
    identity_path: Path | None,
    fingerprint: str | None,
    region: str | None,
    filters: tuple[str, ...],
    names: tuple[str, ...],
    latest_per_name: bool,
    instance_ids: tuple[str, ...],
    instance_filters: tuple[str, ...],
    exclude_boot_volume: bool,
    image_name: str | None,
    concurrency: int,
    as_json: bool,
) -> None:
    """Export AMIs through the EBS direct APIs into STORE: incremental, verified, resumable.

    With --instance / --instance-filter, running instances instead: a crash-consistent snapshot
    set of each (CreateSnapshots, tagged as imagekit's), exported incrementally against the
    previous set, which is then deleted.

    --json prints a list with one object per exported AMI or instance.

    AWS access uses boto3's standard chain (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL,
    AWS_ENDPOINT_URL_EC2, AWS_ENDPOINT_URL_EBS, instance roles). See `imagekit iam-policy`.
    """
    if instance_ids or instance_filters:
        if ami_ids or filters or names:
            raise UsageError("give AMIs or instances, not both")
        _export_instances(
            store_url,
            identity_path,
            fingerprint,
            InstanceSelection(instance_ids, _grouped(instance_filters)),
            region=region,
            image_name=image_name,
            exclude_boot_volume=exclude_boot_volume,
            concurrency=concurrency,
            as_json=as_json,
        )
        return
    grouped = _grouped(filters)
    selection = Selection(
        image_ids=ami_ids,
        filters=grouped,
        name_patterns=names,
        latest_per_name=latest_per_name,
    )
    # boto3 comes with the export job (iam-policy, in this module, needs none of it): loaded
    # while the store's key is derived, not after.
    preload("imagekit.export.job")
    with open_repository(store_url, identity_path, fingerprint) as repo, progress_bar() as bar:
        from imagekit.export.job import export

        results = export(
            repo,
            selection,
            region=region,
            image_name=image_name,
            concurrency=concurrency,
            state_dir=state_dir(),
            progress=bar,
        )
    for r in results:
        if r.ami.licence_warning:
            note(f"warning: {r.ami.licence_warning}")
    rows = [r.as_dict() for r in results]
    emit(rows, as_json, _human)


def _grouped(filters: tuple[str, ...]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for text in filters:
        key, value = parse_filter(text)
        grouped.setdefault(key, []).append(value)
    return grouped


def _export_instances(
    store_url: str,
    identity_path: Path | None,
    fingerprint: str | None,
    selection: InstanceSelection,
    *,
    region: str | None,
    image_name: str | None,
    exclude_boot_volume: bool,
    concurrency: int,
    as_json: bool,
) -> None:
    preload("imagekit.export.instance_job")
    with open_repository(store_url, identity_path, fingerprint) as repo, progress_bar() as bar:
        from imagekit.export.instance_job import export_instances

        results = export_instances(
            repo,
            selection,
            region=region,
            image_name=image_name,
            exclude_boot_volume=exclude_boot_volume,
            concurrency=concurrency,
            state_dir=state_dir(),
            progress=bar,
        )
    for r in results:
        for warning in r.warnings:
            note(f"warning: {warning}")
    rows = [r.as_dict() for r in results]
    for row in rows:
        row["ami"] = row["instance"]  # what the human line names
    emit(rows, as_json, _human)


def _human(rows: list[dict[str, Any]]) -> str:
    lines = []
    for row in rows:
        vols = ", ".join(
            f"{v['snapshot']} {v['mode']}, {v['blocks_read']} blocks read" for v in row["volumes"]
        )
        lines.append(
            f"{row['ami']} → {row['name']} ({row['id'][:12]}): {vols}; "
            f"{row['bytes_uploaded']:,} bytes uploaded in {row['seconds']:.1f} s"
        )
    return "\n".join(lines)


@cli.command("iam-policy")
@click.option(
    "--kms-key",
    "kms_keys",
    multiple=True,
    metavar="ARN",
    help="KMS key of encrypted snapshots (adds kms:Decrypt on it; repeatable).",
)
@click.option(
    "--instances",
    is_flag=True,
    help="Also what exporting running instances needs (snapshot, tag, delete own snapshots).",
)
def iam_policy(kms_keys: tuple[str, ...], instances: bool) -> None:
    """Print the least-privilege IAM policy (JSON) an export host needs."""
    emit(export_policy(kms_keys, instances=instances), True, str)
