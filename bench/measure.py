"""Run one command and measure it: wall seconds, CPU seconds, peak RSS (its whole process tree)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Sample:
    label: str
    wall: float
    cpu: float
    peak_rss_mib: float
    returncode: int
    stderr_tail: str
    sys_cpu: float = 0.0  # the kernel's share of ``cpu`` (page-cache copies, page faults)


def run(
    label: str, argv: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> Sample:
    """Run ``argv`` to completion; CPU and RSS come from wait4's rusage of the child.

    ru_maxrss of the child covers the largest process of its tree that was waited for, which is
    the command itself for every tool measured here (none keeps large helper processes).
    """
    full_env = dict(os.environ)
    full_env.update(env or {})
    started = time.monotonic()
    proc = subprocess.Popen(
        list(argv), env=full_env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Sample(
        label=label,
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        peak_rss_mib=usage.ru_maxrss / 1024,
        returncode=proc.returncode,
        stderr_tail=err.decode(errors="replace")[-600:],
        sys_cpu=usage.ru_stime,
    )


def tree_bytes(path: Path) -> int:
    """Apparent bytes of every file under ``path`` (what a repository costs in object storage)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


__all__ = ["Sample", "allocated", "run", "tree_bytes"]
