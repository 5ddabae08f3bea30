"""The guest stage inside a boot: adapt the run's working copy for the provider's target.

``providers.boot`` restores the image into a format libguestfs can write (the provider's own
when it is one; raw for GCE's tar and stream VMDK), adapts it here, then converts it to the
provider's format. The store is never touched: only the run's copy changes, and the run record
lists every change (``guest``) and the notes the user sees.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from imagekit.convert import TARGETS as CONVERT_TARGETS
from imagekit.convert import convert_image
from imagekit.guest.adapt import GuestReport, adapt
from imagekit.guest.libguestfs import WRITABLE_FORMATS
from imagekit.guest.targets import TARGETS, GuestTarget
from imagekit.progress import Progress
from imagekit.providers.base import PreparedImage, Provider
from imagekit.providers.local.qemu import detect_accel
from imagekit.providers.runs import Run

#: The working format when the provider's own cannot be written in place (sparse, and what
#: every other target converts from fastest).
WORK_FORMAT = "raw"


def guest_target(provider: Provider) -> GuestTarget | None:
    """The guest rules for ``provider`` (None: it boots nothing the rules know, e.g. null)."""
    return TARGETS.get(provider.name)


def work_format(provider: Provider) -> str:
    fmt = provider.disk_format
    writable = fmt != "gce" and CONVERT_TARGETS[fmt].qemu_format in WRITABLE_FORMATS
    return fmt if writable else WORK_FORMAT


def _qemu_format(disk_format: str) -> str:
    return CONVERT_TARGETS[disk_format].qemu_format


def adapt_prepared(
    prepared: PreparedImage, target: GuestTarget, run: Run
) -> tuple[PreparedImage, GuestReport]:
    """Adapt the working copy for ``target``; the image now carries the guest's profile."""
    disks = [
        (p, _qemu_format(prepared.disk_format)) for p in (prepared.path, *prepared.extra_disks)
    ]
    report = adapt(disks, target, log=run.dir / "guest.log", accel=detect_accel())
    (assessment,) = report.assessments
    notes = [f"adapted for {target.name}: {a['change']}" for a in report.applied]
    notes += [
        f"guest warning: {f.code}: {f.message}"
        for f in assessment.findings
        if f.severity == "warning"
    ]
    run.update(guest=report.record(), notes=(*run.record.notes, *notes))
    return replace(prepared, guest=assessment.profile), report


def finish(
    prepared: PreparedImage, provider: Provider, run: Run, progress: Progress | None = None
) -> PreparedImage:
    """The adapted working copy converted to the provider's format (a no-op if it is one)."""
    if prepared.disk_format == provider.disk_format:
        return prepared
    suffix = CONVERT_TARGETS[provider.disk_format].suffix
    out: list[Path] = []
    for index, path in enumerate((prepared.path, *prepared.extra_disks)):
        dst = path.with_name(f"{path.stem}-{provider.name}{suffix}" if index else f"disk{suffix}")
        if dst == path:
            dst = path.with_name(f"{path.stem}.{provider.disk_format}{suffix}")
        convert_image(
            path,
            dst,
            provider.disk_format,
            source_format=_qemu_format(prepared.disk_format),
            progress=progress,
        )
        path.unlink()  # the working copy: the converted file is what the provider uploads
        out.append(dst)
    return replace(
        prepared, path=out[0], extra_disks=tuple(out[1:]), disk_format=provider.disk_format
    )


__all__ = ["adapt_prepared", "finish", "guest_target", "work_format"]
