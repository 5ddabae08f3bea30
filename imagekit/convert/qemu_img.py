"""The only module that runs ``qemu-img``; everything else calls these functions.

Every call goes through subprocess-tee so stderr is both captured (for the error) and, with
``--debug``, visible. Failures become ``ConvertError`` carrying the argv, the return code and the
tail of stderr. No secrets ever reach this command line: imagekit decrypts in-process and hands
qemu-img plain files only.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagekit.childenv import child_environment
from imagekit.errors import ConvertError, InputError
from imagekit.progress import NullProgress, Progress

log = logging.getLogger(__name__)

QEMU_IMG = "qemu-img"

#: How much of qemu-img's stderr an error keeps: enough for its message, not a screenful.
STDERR_TAIL_LINES = 8

#: qemu-img -p prints "    (12.34/100%)" separated by carriage returns.
_PROGRESS_RE = re.compile(r"\((\d+(?:\.\d+)?)/100%\)")


@dataclass(frozen=True)
class ImageInfo:
    """What ``qemu-img info`` says of one image (the fields imagekit uses)."""

    path: Path
    format: str
    virtual_size: int
    actual_size: int | None
    backing_file: str | None
    data_file: str | None
    format_specific: dict[str, Any] = field(default_factory=dict)

    @property
    def foreign_extents(self) -> list[str]:
        """Files other than the image itself that its extents name (a VMDK descriptor may
        name any file of the host, which qemu-img then reads as the disk's contents)."""
        own = self.path.resolve()
        found = []
        for extent in self.format_specific.get("data", {}).get("extents") or []:
            name = extent.get("filename") if isinstance(extent, dict) else None
            if name and (self.path.parent / str(name)).resolve() != own:
                found.append(str(name))
        return found

    @property
    def subformat(self) -> str | None:
        """VMDK create-type (e.g. ``streamOptimized``); None for formats that have none."""
        data = self.format_specific.get("data", {})
        value = data.get("create-type")
        return str(value) if value is not None else None


@dataclass(frozen=True)
class Extent:
    """One run of ``qemu-img map``: ``data`` false means it reads as zeros (hole or zero flag)."""

    start: int
    length: int
    data: bool
    zero: bool


class _Sink:
    """A file-like target for subprocess-tee: keeps lines, feeds progress from qemu-img -p."""

    def __init__(self, progress: Progress | None = None, scale: float = 1.0):
        self.progress = progress
        self.scale = scale  # percent → the unit the progress bar counts (bytes of the image)
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        for line in text.splitlines():
            match = _PROGRESS_RE.search(line)
            if match and self.progress is not None:
                self.progress.update(float(match.group(1)) / 100.0 * self.scale)
            elif line.strip():
                self.lines.append(line)
        return len(text)

    def flush(self) -> None:
        return None


def _binary() -> str:
    found = shutil.which(QEMU_IMG)
    if found is None:
        raise ConvertError(
            "qemu-img is not installed", hint="install the Debian package qemu-utils"
        )
    return found


def run(args: Sequence[str], *, progress: Progress | None = None, scale: float = 100.0) -> str:
    """Run ``qemu-img ARGS``; return its stdout. Raise ``ConvertError`` on failure.

    With ``progress``, qemu-img's ``-p`` output (carriage-return separated) is turned into lines
    by ``tr`` so subprocess-tee can stream it; ``pipefail`` keeps qemu-img's exit status.
    """
    argv = [_binary(), *args]
    if progress is not None:
        shell = 'set -o pipefail; "$@" | stdbuf -o0 tr "\\r" "\\n"'
        command = ["bash", "-c", shell, "qemu-img", *argv]
    else:
        command = argv
    # Imported here: subprocess-tee pulls in asyncio (~35 ms), which most commands never need.
    import subprocess_tee

    out, err = _Sink(progress, scale), _Sink()
    log.debug("running %s", shlex.join(argv))
    try:
        result = subprocess_tee.run(
            command, stdout=out, stderr=err, quiet=progress is None, env=child_environment()
        )
    except OSError as exc:
        raise ConvertError(f"cannot run {shlex.join(argv)}: {exc}") from exc
    if result.returncode != 0:
        tail = [line for line in (result.stderr or "").splitlines() if line.strip()]
        tail = tail[-STDERR_TAIL_LINES:] or err.lines[-STDERR_TAIL_LINES:]
        raise QemuImgFailed(argv, result.returncode, tail)
    return str(result.stdout or "")


class QemuImgFailed(ConvertError):
    """qemu-img exited non-zero; ``argv``, ``returncode`` and ``stderr_tail`` say how."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr_tail: Sequence[str]):
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr_tail = list(stderr_tail)
        detail = "; ".join(line.removeprefix("qemu-img: ") for line in self.stderr_tail)
        super().__init__(
            f"qemu-img {self.argv[1] if len(self.argv) > 1 else ''} failed "
            f"(exit {returncode}): {detail or 'no message'}"
        )


def _json(args: Sequence[str]) -> Any:
    text = run(args)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConvertError(f"qemu-img {args[0]} printed no JSON: {text[:200]!r}") from exc


def info(path: Path, fmt: str | None = None) -> ImageInfo:
    """``qemu-img info`` of ``path``. Name ``fmt`` when known: probing calls a fixed VHD raw."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    args = ["info", "--output=json"]
    if fmt:
        args += ["-f", fmt]
    try:
        data = _json([*args, str(path)])
    except QemuImgFailed as exc:
        raise InputError(f"{path}: not a readable disk image ({exc.message})") from exc
    return ImageInfo(
        path=path,
        format=str(data["format"]),
        virtual_size=int(data["virtual-size"]),
        actual_size=int(data["actual-size"]) if "actual-size" in data else None,
        backing_file=data.get("backing-filename"),
        data_file=data.get("format-specific", {}).get("data", {}).get("data-file"),
        format_specific=dict(data.get("format-specific", {})),
    )


#: ``qemu-img check`` exit statuses (qemu-img(1)): leaks only waste space; 63 = no checker.
CHECK_OK, CHECK_FAILED, CHECK_CORRUPT, CHECK_LEAKS, CHECK_UNSUPPORTED = 0, 1, 2, 3, 63


def check(path: Path, fmt: str) -> bool:
    """``qemu-img check``: True when consistent, False when the format has no checker.

    Raise ``QemuImgFailed`` on corruption or when the check could not complete (truncation).
    """
    try:
        run(["check", "-q", "-f", fmt, str(path)])
    except QemuImgFailed as exc:
        if exc.returncode == CHECK_UNSUPPORTED:
            return False
        if exc.returncode == CHECK_LEAKS:
            return True
        raise
    return True


def map_extents(path: Path, fmt: str) -> list[Extent]:
    """``qemu-img map``: where the image holds data and where it reads as zeros."""
    data = _json(["map", "--output=json", "-f", fmt, str(path)])
    return [
        Extent(
            start=int(e["start"]),
            length=int(e["length"]),
            data=bool(e["data"]),
            zero=bool(e.get("zero", False)),
        )
        for e in data
    ]


def convert(
    src: Path,
    dst: Path,
    *,
    src_format: str,
    dst_format: str,
    options: Sequence[str] = (),
    compress: bool = False,
    into_existing: bool = False,
    progress: Progress | None = None,
) -> None:
    """``qemu-img convert``. ``into_existing`` writes into a pre-created, zeroed target (-n).

    Writing into an existing target lets a caller choose its size (Azure's whole MiB, GCE's whole
    GiB); ``--target-is-zero`` then keeps zeros as holes instead of writing them.
    """
    args = ["convert", "-f", src_format, "-O", dst_format]
    if options:
        args += ["-o", ",".join(options)]
    if compress:
        args.append("-c")
    if into_existing:
        args += ["-n", "--target-is-zero"]
    if progress is not None:
        args.append("-p")
    args += [str(src), str(dst)]
    size = float(info(src, src_format).virtual_size) if progress is not None else 100.0
    bar = progress or NullProgress()
    bar.start(f"convert → {dst_format}", size)
    run(args, progress=progress, scale=size)
    bar.finish()


def create(path: Path, fmt: str, size: int, options: Sequence[str] = ()) -> None:
    """``qemu-img create`` an empty image of ``size`` bytes."""
    args = ["create", "-q", "-f", fmt]
    if options:
        args += ["-o", ",".join(options)]
    run([*args, str(path), str(size)])


def compare(a: Path, a_format: str, b: Path, b_format: str) -> bool:
    """True when both images read identically (``qemu-img compare``; sizes may differ by zeros)."""
    try:
        run(["compare", "-q", "-f", a_format, "-F", b_format, str(a), str(b)])
    except QemuImgFailed as exc:
        if exc.returncode == 1:
            return False
        raise
    return True
