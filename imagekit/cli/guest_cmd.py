"""``imagekit inspect``: what a guest is, and whether it comes up on each target. Read-only."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import click

from imagekit.cli.app import cli
from imagekit.cli.common import fingerprint_option, identity_option, open_repository
from imagekit.cli.output import emit, json_option, note, progress_bar
from imagekit.errors import UsageError
from imagekit.guest.targets import TARGETS


@cli.command()
@click.argument("ref", required=False)
@click.option("--store", "store_url", help="Repository URL or path holding REF.")
@identity_option
@fingerprint_option
@click.option(
    "--disk",
    "disks",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="A disk image file instead of a stored image (repeat for further volumes, in order).",
)
@click.option("--format", "disk_format", help="The disk files' format (probed when omitted).")
@click.option(
    "--target",
    "targets",
    multiple=True,
    type=click.Choice(list(TARGETS)),
    help="A target to judge the guest for (repeatable; default: all).",
)
@json_option
def inspect(
    ref: str | None,
    store_url: str | None,
    identity_path: Path | None,
    fingerprint: str | None,
    disks: tuple[Path, ...],
    disk_format: str | None,
    targets: tuple[str, ...],
    as_json: bool,
) -> None:
    """Inspect image REF (or --disk FILE) offline: facts, findings per target, bootable where.

    Findings: blocker (it will not come up there), adapted (boot's guest stage fixes it),
    warning. Nothing is changed: a stored image is restored to a temporary folder and removed.
    """
    from imagekit.convert.pipeline import inspect_source
    from imagekit.guest.adapt import inspect as inspect_guest
    from imagekit.providers.local.qemu import detect_accel

    if bool(ref) == bool(disks):
        raise UsageError("name an image REF (with --store) or --disk FILE, not both or neither")
    chosen = [TARGETS[t] for t in targets] or list(TARGETS.values())
    with tempfile.TemporaryDirectory(prefix="imagekit-inspect-") as tmp:
        work = Path(tmp)
        if ref:
            if not store_url:
                raise UsageError(f"image {ref}: which store? pass --store")
            files = _restore(ref, store_url, identity_path, fingerprint, work)
        else:
            files = [(p, disk_format or inspect_source(p, None).format) for p in disks]
        note("inspecting the guest (libguestfs; about half a minute under TCG)")
        report = inspect_guest(files, chosen, log=work / "guestfs.log", accel=detect_accel())
    emit(report.as_dict(), as_json, _text)


def _restore(
    ref: str, store_url: str, identity: Path | None, fingerprint: str | None, work: Path
) -> list[tuple[Path, str]]:
    from imagekit.store.restore import restore

    with open_repository(store_url, identity, fingerprint) as repo:
        image = repo.resolve(ref)
        out = work / "disk.raw" if len(image.manifest.volumes) == 1 else work / "volumes"
        with progress_bar() as bar:
            restored = restore(repo, image, out, fmt="raw", progress=bar)
    return [(Path(f["path"]), "raw") for f in restored]


def _text(doc: dict[str, Any]) -> str:
    facts = doc["facts"]
    lines = [
        f"{facts.get('product') or facts.get('os_type') or 'no operating system'} "
        f"({facts.get('distro', '')} {facts.get('version', '')}, {facts.get('architecture', '')}),"
        f" boot {facts.get('boot_mode') or 'none'}, partition table "
        f"{facts.get('partition_table') or 'none'}"
    ]
    ci = facts.get("cloud_init")
    if ci:
        listed = ", ".join(ci["datasources"]) if ci["datasources"] is not None else "all"
        lines.append(f"cloud-init {ci['version']}: datasources [{listed}]" + _disabled(ci))
    for kernel in facts.get("kernels", [])[:1]:
        drivers = kernel.get("initrd_modules")
        lines.append(
            f"kernel {kernel['version']}: initramfs carries "
            f"{', '.join(drivers) if drivers is not None else '(not listed)'}"
        )
    for finding in doc["findings"]:
        lines.append(
            f"{finding['target']:<15} {finding['severity']:<8} {finding['code']}: "
            f"{finding['message']}"
        )
    verdict = ", ".join(f"{t} {'yes' if ok else 'NO'}" for t, ok in doc["bootable_on"].items())
    lines.append(f"bootable on: {verdict}")
    return "\n".join(lines)


def _disabled(ci: dict[str, Any]) -> str:
    return f" (disabled: {ci['disabled']})" if ci.get("disabled") else ""


__all__ = ["inspect"]
