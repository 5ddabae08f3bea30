"""The cpio (newc) writer, checked by the real cpio tool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from testbed.testdisk.newc import Entry, archive

ENTRIES = [
    Entry.directory("dev"),
    Entry.chardev("dev/console", 5, 1),
    Entry.directory("bin"),
    Entry.file("bin/hello", b"#!/bin/sh\necho hi\n", 0o755),
    Entry.symlink("bin/sh", "/bin/busybox"),
    Entry.file("etc-odd", b"abc"),  # lengths that need padding on both name and data
]


def test_same_entries_give_the_same_bytes() -> None:
    assert archive(ENTRIES) == archive(list(ENTRIES))


def test_members_are_aligned_and_the_archive_ends_with_the_trailer() -> None:
    data = archive(ENTRIES)
    assert len(data) % 4 == 0
    assert data.count(b"070701") == len(ENTRIES) + 1
    assert data.rstrip(b"\0").endswith(b"TRAILER!!!")


def test_repeated_path_is_refused() -> None:
    with pytest.raises(ValueError, match="repeated"):
        archive([Entry.directory("dev"), Entry.directory("/dev")])


@pytest.mark.skipif(shutil.which("cpio") is None, reason="needs cpio(1)")
def test_cpio_lists_types_devices_and_links() -> None:
    listing = subprocess.run(
        ["cpio", "-itv", "--quiet"], input=archive(ENTRIES), capture_output=True, check=True
    ).stdout.decode()
    lines = {
        line.split()[-1] if "->" not in line else line.split()[-3]: line
        for line in listing.splitlines()
    }
    assert set(lines) == {"dev", "dev/console", "bin", "bin/hello", "bin/sh", "etc-odd"}
    assert lines["dev"].startswith("d")
    assert lines["dev/console"].startswith("crw-------")
    assert "5," in lines["dev/console"] and " 1 " in lines["dev/console"]
    assert lines["bin/hello"].startswith("-rwxr-xr-x")
    assert lines["bin/sh"].startswith("lrwxrwxrwx") and lines["bin/sh"].endswith("-> /bin/busybox")


@pytest.mark.skipif(shutil.which("cpio") is None, reason="needs cpio(1)")
def test_cpio_extracts_file_contents(tmp_path: Path) -> None:
    subprocess.run(
        ["cpio", "-id", "--quiet", "--no-absolute-filenames", "bin/hello", "etc-odd"],
        input=archive(ENTRIES),
        cwd=tmp_path,
        check=True,
    )
    assert (tmp_path / "bin" / "hello").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert (tmp_path / "etc-odd").read_bytes() == b"abc"
