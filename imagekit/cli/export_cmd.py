"""``imagekit export`` and ``imagekit iam-policy``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from imagekit.cli.app import cli
from imagekit.cli.common import identity_option, open_repository, preload
from imagekit.cli.output import emit, json_option, note, progress_bar
from imagekit.export.ami import Selection, parse_filter
from imagekit.export.iam import export_policy
from imagekit.state import state_dir


@cli.command("export")
@click.argument("ami_ids", nargs=-1, metavar="[AMI_ID]...")
@click.option("--store", "store_url", required=True, help="Store URL (path, s3://, azure://, …).")
@identity_option
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
    region: str | None,
    filters: tuple[str, ...],
    names: tuple[str, ...],
    latest_per_name: bool,
    image_name: str | None,
    concurrency: int,
    as_json: bool,
) -> None:
    """Export AMIs through the EBS direct APIs into STORE: incremental, verified, resumable.

    --json prints a list with one object per exported AMI.

    AWS access uses boto3's standard chain (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL,
    AWS_ENDPOINT_URL_EC2, AWS_ENDPOINT_URL_EBS, instance roles). See `imagekit iam-policy`.
    """
    grouped: dict[str, list[str]] = {}
    for text in filters:
        key, value = parse_filter(text)
        grouped.setdefault(key, []).append(value)
    selection = Selection(
        image_ids=ami_ids,
        filters=grouped,
        name_patterns=names,
        latest_per_name=latest_per_name,
    )
    # boto3 comes with the export job (iam-policy, in this module, needs none of it): loaded
    # while the store's key is derived, not after.
    preload("imagekit.export.job")
    with open_repository(store_url, identity_path) as repo, progress_bar() as bar:
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
def iam_policy(kms_keys: tuple[str, ...]) -> None:
    """Print the least-privilege IAM policy (JSON) an export host needs."""
    emit(export_policy(kms_keys), True, str)
