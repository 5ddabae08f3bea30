"""The GCE image archive: a gzip'd GNU tar holding one sparse ``disk.raw`` (edge: runs GNU tar).

Python's tarfile cannot write sparse members, and a multi-GiB disk of mostly holes must stay
small; GNU tar's ``-S`` with the ``oldgnu`` format is what Google's import documentation uses.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path

from imagekit.childenv import child_environment
from imagekit.convert.targets import GCE_DISK_NAME, TarMember
from imagekit.errors import ConvertError, InputError


def _tar() -> str:
    found = shutil.which("tar")
    if found is None:
        raise ConvertError("GNU tar is not installed", hint="install the Debian package tar")
    return found


def _run(argv: list[str]) -> None:
    proc = subprocess.run(
        argv, capture_output=True, text=True, check=False, env=child_environment()
    )
    if proc.returncode != 0:
        tail = "; ".join(proc.stderr.strip().splitlines()[-4:])
        raise ConvertError(f"tar failed (exit {proc.returncode}): {tail or 'no message'}")


def pack(disk_raw: Path, archive: Path) -> None:
    """Write ``archive`` (tar.gz) holding ``disk_raw`` as ``disk.raw``, holes kept as holes."""
    if disk_raw.name != GCE_DISK_NAME:
        raise ValueError(f"the member must be named {GCE_DISK_NAME}, got {disk_raw.name}")
    _run(
        [
            _tar(),
            "--format=oldgnu",
            "-S",
            "-c",
            "-z",
            "-f",
            str(archive),
            "-C",
            str(disk_raw.parent),
            GCE_DISK_NAME,
        ]
    )


def members(archive: Path) -> list[TarMember]:
    """The members of a tar.gz, read as a stream (a GCE archive is read front to back once)."""
    try:
        with tarfile.open(archive, mode="r|gz") as tar:
            return [TarMember(m.name, m.size, m.isfile()) for m in tar]
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InputError(f"{archive}: not a readable tar.gz ({exc})") from exc


def unpack(archive: Path, folder: Path) -> Path:
    """Extract ``disk.raw`` from a GCE archive into ``folder`` (sparse); return its path."""
    _run([_tar(), "-x", "-S", "-z", "-f", str(archive), "-C", str(folder), GCE_DISK_NAME])
    return folder / GCE_DISK_NAME
