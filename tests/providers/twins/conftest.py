"""Twin fixtures: root (namespaces, taps) and the real Debian guests `make test` builds."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DEBIAN = ROOT / "build" / "debian"


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("twins need root: each node gets a network namespace and a tap device")


@pytest.fixture
def root() -> None:
    needs_root()


def debian_disk(variant: str) -> Path:
    """``build/debian/<variant>.raw`` (``make debian-images``; ``make test`` builds it)."""
    needs_root()
    disk = DEBIAN / f"{variant}.raw"
    if not disk.is_file():
        pytest.fail(f"{disk} is missing: run `make debian-images` (make test does it for you)")
    return disk


def imagekit_namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.startswith("imagekit-")}


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (a run id, a node folder)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(proc.name))
    return found
