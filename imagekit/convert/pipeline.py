"""``convert_image``: any qemu-readable disk → one target, validated, then renamed into place.

Order (virt-v2v's lesson: check everything cheap before the long work):
1. the target and options make sense; the output may be written; the input is a sound image;
2. there is room for the output;
3. qemu-img writes into a staging folder beside the output;
4. the result is checked against the target's rules;
5. only then is it renamed onto the output path. Any failure leaves no partial output.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from imagekit.convert import gce, qemu_img
from imagekit.convert.targets import (
    VHD_FOOTER_SIZE,
    Target,
    aligned_size,
    gce_tar_problems,
    get_target,
    parse_vhd_footer,
    vhd_azure_problems,
)
from imagekit.errors import ConvertError, InputError, UsageError
from imagekit.fsutil import check_free_space, check_output_path, publish, staging_dir
from imagekit.progress import Progress

#: Formats whose consistency ``qemu-img check`` can prove before we read them.
CHECKABLE_FORMATS = frozenset({"qcow2", "qed", "vdi", "vhdx", "vmdk", "parallels"})

#: Disks are made of 512-byte sectors; a "raw" file of another length is not a disk.
SECTOR = 512

#: Headroom over the source's data for format metadata (qcow2 tables, VHDX log, tar headers).
SPACE_MARGIN = 1.05
SPACE_FLOOR = 16 << 20


@dataclass(frozen=True)
class ConvertResult:
    output: Path
    target: str
    source_format: str
    virtual_size: int
    file_size: int
    seconds: float

    def as_dict(self) -> dict[str, object]:
        return {
            "output": str(self.output),
            "target": self.target,
            "source_format": self.source_format,
            "virtual_size": self.virtual_size,
            "file_size": self.file_size,
            "seconds": round(self.seconds, 3),
        }


def inspect_source(src: Path, source_format: str | None = None) -> qemu_img.ImageInfo:
    """Probe and check an input image; ``InputError`` (exit 2) if it is unusable."""
    if not src.is_file():
        raise InputError(f"{src}: no such file")
    info = qemu_img.info(src, source_format)
    file_size = src.stat().st_size
    if info.format == "raw" and file_size % SECTOR:
        # Anything probes as raw; a disk is whole sectors, so this is some other file.
        raise InputError(
            f"{src}: not a disk image ({file_size} bytes is not a whole number of "
            f"{SECTOR}-byte sectors)",
            hint="name the format with --source-format if it is one qemu-img reads",
        )
    if info.virtual_size == 0:
        # An empty file probes as a raw disk of no sectors: more often a failed download or
        # copy than an image, and nothing can boot from it.
        raise InputError(f"{src}: empty (0 bytes virtual): not a disk image")
    if info.backing_file or info.data_file:
        raise InputError(
            f"{src}: has a backing or external data file",
            hint="flatten it first (qemu-img convert to a standalone image)",
        )
    if info.foreign_extents:
        raise InputError(
            f"{src}: its {info.format} extents are other files "
            f"({', '.join(sorted(set(info.foreign_extents)))})",
            hint="a descriptor naming other files could read any file of this host; "
            "convert it to a standalone image where it was made",
        )
    if info.format in CHECKABLE_FORMATS:
        try:
            qemu_img.check(src, info.format)
        except qemu_img.QemuImgFailed as exc:
            raise InputError(
                f"{src}: {info.format} image is corrupt or truncated",
                hint=f"qemu-img check exit {exc.returncode}",
            ) from exc
    return info


def data_bytes(src: Path, fmt: str) -> int:
    """Bytes of the source that hold data (what a sparse output will occupy, before metadata)."""
    return sum(e.length for e in qemu_img.map_extents(src, fmt) if e.data)


def convert_image(
    src: Path,
    dst: Path,
    target_name: str,
    *,
    source_format: str | None = None,
    compress: bool = False,
    force: bool = False,
    progress: Progress | None = None,
) -> ConvertResult:
    """Convert ``src`` to ``target_name`` at ``dst``; see the module docstring for the order."""
    started = time.monotonic()
    target = get_target(target_name)
    if compress and not target.compressible:
        raise UsageError(f"--compress does not apply to target {target.name!r}")
    check_output_path(dst, force=force)
    info = inspect_source(src, source_format)
    size = aligned_size(info.virtual_size, target.size_align)

    needed = int(data_bytes(src, info.format) * SPACE_MARGIN) + SPACE_FLOOR
    if target.name == "gce":
        needed *= 2  # the raw disk and its archive exist side by side until the rename
    check_free_space(dst.parent, needed)

    with staging_dir(dst) as stage:
        out = _write(src, info, target, size, stage, compress=compress, progress=progress)
        problems = validate(out, target, size)
        if problems:
            raise ConvertError(f"{target.name} output failed validation: {'; '.join(problems)}")
        publish(out, dst)
    return ConvertResult(
        output=dst,
        target=target.name,
        source_format=info.format,
        virtual_size=size,
        file_size=dst.stat().st_size,
        seconds=time.monotonic() - started,
    )


def _write(
    src: Path,
    info: qemu_img.ImageInfo,
    target: Target,
    size: int,
    stage: Path,
    *,
    compress: bool,
    progress: Progress | None,
) -> Path:
    """Run qemu-img (and tar for GCE) inside ``stage``; return the finished file."""
    inner = stage / ("disk.raw" if target.name == "gce" else f"out{target.suffix}")
    try:
        if size != info.virtual_size:
            # Pre-size the target, then write into it: the only way to choose its size.
            qemu_img.create(inner, target.qemu_format, size, target.options)
            qemu_img.convert(
                src,
                inner,
                src_format=info.format,
                dst_format=target.qemu_format,
                into_existing=True,
                progress=progress,
            )
        else:
            qemu_img.convert(
                src,
                inner,
                src_format=info.format,
                dst_format=target.qemu_format,
                options=target.options,
                compress=compress,
                progress=progress,
            )
    except qemu_img.QemuImgFailed as exc:
        if any("error while reading" in line for line in exc.stderr_tail):
            raise InputError(f"{src}: cannot be read to the end ({exc.message})") from exc
        raise
    if target.name != "gce":
        return inner
    archive = stage / "out.tar.gz"
    gce.pack(inner, archive)
    inner.unlink()
    return archive


def validate(path: Path, target: Target, expected_size: int) -> list[str]:
    """Every way ``path`` breaks ``target``'s rules (empty when it is acceptable)."""
    if target.name == "gce":
        return gce_tar_problems(gce.members(path))
    problems: list[str] = []
    try:
        info = qemu_img.info(path, target.qemu_format)
    except InputError as exc:
        return [exc.message]
    if info.virtual_size != expected_size:
        problems.append(f"virtual size {info.virtual_size}, expected {expected_size}")
    if target.subformat and info.subformat != target.subformat:
        problems.append(f"VMDK subformat {info.subformat}, expected {target.subformat}")
    if target.name == "vhd-azure":
        with path.open("rb") as handle:
            handle.seek(-VHD_FOOTER_SIZE, 2)
            footer = parse_vhd_footer(handle.read(VHD_FOOTER_SIZE))
        problems += vhd_azure_problems(path.stat().st_size, footer)
    if target.qemu_format in CHECKABLE_FORMATS:
        try:
            qemu_img.check(path, target.qemu_format)
        except qemu_img.QemuImgFailed as exc:
            problems.append(f"qemu-img check failed: {exc.message}")
    return problems
