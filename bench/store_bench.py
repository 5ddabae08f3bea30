"""Store benchmark: imagekit ingest/restore against restic and borg on the same day-1/day-2 disks.

Every tool backs up the same path (``work/disk.raw``, re-linked from day 1 to day 2) into a local
repository; "added" is the growth of the repository's files; "allocated" is the disk space the
restored file occupies (sparse restores are cheaper).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from measure import Sample, allocated, run, tree_bytes

PASS = "bench-passphrase"


@dataclass
class Row:
    tool: str
    full: Sample
    day2: Sample
    restore: Sample
    day2_added: int
    restored_allocated: int
    restored_ok: bool
    #: imagekit only: ingesting a one-chunk disk into the same repository, i.e. what every run
    #: costs besides its data (start-up, key derivation, format probe, index, manifest).
    fixed: Sample | None = None


def _link(src: Path, work: Path) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    disk = work / "disk.raw"
    disk.unlink(missing_ok=True)
    os.link(src, disk)
    return disk


def _same(a: Path, b: Path) -> bool:
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            x, y = fa.read(8 << 20), fb.read(8 << 20)
            if x != y:
                return False
            if not x:
                return True


def _check(sample: Sample) -> Sample:
    if sample.returncode != 0:
        print(
            f"  {sample.label} FAILED ({sample.returncode}): {sample.stderr_tail}", file=sys.stderr
        )
    else:
        print(
            f"  {sample.label}: {sample.wall:.1f} s wall, {sample.cpu:.1f} s CPU "
            f"({sample.sys_cpu:.1f} in the kernel), {sample.peak_rss_mib:.0f} MiB",
            file=sys.stderr,
        )
    return sample


def bench_imagekit(day1: Path, day2: Path, root: Path) -> Row:
    exe = str(Path(sys.executable).parent / "imagekit")
    env = {"IMAGEKIT_PASSPHRASE": PASS}
    repo, ident, writer = root / "repo", root / "id.key", root / "writer.key"

    def keygen(path: Path) -> str:
        out = subprocess.run(
            [exe, "key", "generate", "-o", str(path)],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip().splitlines()[-1]

    # The nightly-export shape: the export host holds a write-only identity; only the
    # restore side holds the identity that reads data.
    init = [
        exe,
        "store",
        "init",
        str(repo),
        "--recipient",
        keygen(ident),
        "--writer",
        keygen(writer),
    ]
    _check(run("imagekit init", init, env))
    ingest = [exe, "ingest", "--store", str(repo), "--identity", str(writer), "--name", "bench"]
    disk = _link(day1, root / "work")
    full = _check(run("imagekit ingest day 1", [*ingest, str(disk)], env))
    before = tree_bytes(repo)
    disk = _link(day2, root / "work")
    d2 = _check(run("imagekit ingest day 2", [*ingest, str(disk)], env))
    added = tree_bytes(repo) - before
    tiny = root / "work" / "tiny.raw"
    tiny.write_bytes(os.urandom(512 * 1024))
    fixed = _check(
        run("imagekit ingest one chunk", [*ingest[:-2], "--name", "fixed", str(tiny)], env)
    )
    out_file = root / "restored.raw"
    restore = [exe, "restore", "bench", "--store", str(repo), "--identity", str(ident)]
    rest = _check(run("imagekit restore", [*restore, "-o", str(out_file)], env))
    ok = rest.returncode == 0 and _same(out_file, day2)
    size = allocated(out_file) if out_file.exists() else 0
    return Row("imagekit", full, d2, rest, added, size, ok, fixed)


def bench_restic(day1: Path, day2: Path, root: Path) -> Row:
    env = {
        "RESTIC_PASSWORD": PASS,
        "RESTIC_REPOSITORY": str(root / "repo"),
        "RESTIC_CACHE_DIR": str(root / "cache"),
    }
    _check(run("restic init", ["restic", "init"], env))
    work = root / "work"
    _link(day1, work)
    full = _check(
        run("restic backup day 1", ["restic", "backup", "--quiet", "disk.raw"], env, cwd=work)
    )
    before = tree_bytes(root / "repo")
    _link(day2, work)
    d2 = _check(
        run("restic backup day 2", ["restic", "backup", "--quiet", "disk.raw"], env, cwd=work)
    )
    added = tree_bytes(root / "repo") - before
    target = root / "restore"
    rest = _check(
        run("restic restore", ["restic", "restore", "latest", "--target", str(target)], env)
    )
    out_file = target / "disk.raw"
    ok = rest.returncode == 0 and _same(out_file, day2)
    return Row("restic", full, d2, rest, added, allocated(out_file) if out_file.exists() else 0, ok)


def bench_borg(day1: Path, day2: Path, root: Path, *, fixed: bool) -> Row:
    name = "borg fixed+sparse" if fixed else "borg default"
    repo = root / "repo"
    env = {
        "BORG_PASSPHRASE": PASS,
        "BORG_REPO": str(repo),
        "BORG_BASE_DIR": str(root / "base"),
        "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
    }
    _check(run(f"{name} init", ["borg", "init", "-e", "repokey-blake2"], env))
    extra = ["--chunker-params", "fixed,4194304", "--sparse"] if fixed else []
    work = root / "work"
    _link(day1, work)
    full = _check(
        run(f"{name} day 1", ["borg", "create", *extra, "::day1", "disk.raw"], env, cwd=work)
    )
    before = tree_bytes(repo)
    _link(day2, work)
    d2 = _check(
        run(f"{name} day 2", ["borg", "create", *extra, "::day2", "disk.raw"], env, cwd=work)
    )
    added = tree_bytes(repo) - before
    target = root / "restore"
    target.mkdir(exist_ok=True)
    rest = _check(
        run(f"{name} extract", ["borg", "extract", "--sparse", "::day2"], env, cwd=target)
    )
    out_file = target / "disk.raw"
    ok = rest.returncode == 0 and _same(out_file, day2)
    return Row(name, full, d2, rest, added, allocated(out_file) if out_file.exists() else 0, ok)


#: The tools compared, in the order they run (names for ``bench/run.py --tools``).
TOOLS = ("imagekit", "restic", "borg-default", "borg-fixed")


def run_all(day1: Path, day2: Path, root: Path, tools: Sequence[str] = TOOLS) -> list[Row]:
    if root.exists():
        shutil.rmtree(root)
    rows = []
    for label, fn in (
        ("imagekit", lambda r: bench_imagekit(day1, day2, r)),
        ("restic", lambda r: bench_restic(day1, day2, r)),
        ("borg-default", lambda r: bench_borg(day1, day2, r, fixed=False)),
        ("borg-fixed", lambda r: bench_borg(day1, day2, r, fixed=True)),
    ):
        if label not in tools:
            continue
        print(f"{label}:", file=sys.stderr)
        if shutil.which(label.split("-")[0]) is None and label != "imagekit":
            print(f"  {label} is not installed; skipped", file=sys.stderr)
            continue
        sub = root / label
        sub.mkdir(parents=True)
        try:
            rows.append(fn(sub))
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"  {label} could not run: {exc}", file=sys.stderr)
        shutil.rmtree(sub / "repo", ignore_errors=True)
        shutil.rmtree(sub / "restore", ignore_errors=True)
        (sub / "restored.raw").unlink(missing_ok=True)
    return rows
