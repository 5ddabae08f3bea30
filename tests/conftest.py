"""Shared fixtures: the repository root on sys.path (for ``testbed``) and the bootable test disk."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BUILD = ROOT / "build"

# libguestfs's appliance kernel where the host has none (`make test` exports the same).
_KERNEL = BUILD / "guestfs" / "kernel"
if not any(Path("/boot").glob("vmlinuz-*")) and (_KERNEL / ".ready").is_file():
    os.environ.setdefault("IMAGEKIT_GUESTFS_KERNEL", str(_KERNEL))

# The AWS emulator fixtures (moto corrected to the AWS contract): ``moto_server``, ``aws``.
pytest_plugins = ["testbed.pytest_plugin"]


@pytest.fixture(scope="session")
def test_disk() -> Path:
    """The bootable raw test disk built by ``make test-image`` (``make test`` builds it first)."""
    disk = BUILD / "test-disk" / "disk.raw"
    if not disk.exists():
        pytest.fail(f"{disk} is missing: run `make test-image` (make test does it for you)")
    return disk
