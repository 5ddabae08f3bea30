"""``imagekit convert`` and ``imagekit targets``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from imagekit.cli.app import cli
from imagekit.cli.output import emit, json_option, progress_bar
from imagekit.convert import TARGETS, convert_image


@cli.command()
@click.argument("src", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "-o",
    "--output",
    "dst",
    required=True,
    type=click.Path(path_type=Path),
    help="Output file (written beside, renamed into place when valid).",
)
@click.option(
    "--target",
    "target",
    required=True,
    type=click.Choice(list(TARGETS)),
    help="What the destination accepts.",
)
@click.option(
    "--source-format",
    default=None,
    help="Input format (raw, qcow2, vmdk, vpc, vhdx, …); probed when omitted.",
)
@click.option("--compress", is_flag=True, help="Compress clusters (qcow2 only).")
@click.option("--force", is_flag=True, help="Replace an existing output.")
@json_option
def convert(
    src: Path,
    dst: Path,
    target: str,
    source_format: str | None,
    compress: bool,
    force: bool,
    as_json: bool,
) -> None:
    """Convert disk image SRC for a target cloud, validated against its rules."""
    with progress_bar() as bar:
        result = convert_image(
            src,
            dst,
            target,
            source_format=source_format,
            compress=compress,
            force=force,
            progress=bar,
        )
    emit(
        result.as_dict(),
        as_json,
        lambda r: (
            f"{r['output']}: {r['target']}, {r['virtual_size']} bytes virtual, "
            f"{r['file_size']} bytes on file, {r['seconds']:.1f} s"
        ),
    )


@cli.command()
@json_option
def targets(as_json: bool) -> None:
    """List the convert targets and what each is for."""
    rows: list[dict[str, Any]] = [
        {
            "name": t.name,
            "format": t.qemu_format,
            "options": list(t.options),
            "size_align": t.size_align,
            "description": t.description,
        }
        for t in TARGETS.values()
    ]
    emit(rows, as_json, lambda rs: "\n".join(f"{r['name']:<10} {r['description']}" for r in rs))
