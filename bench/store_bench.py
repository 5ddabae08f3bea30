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


# -- the in-memory index ---------------------------------------------------------------------------

#: A synthetic store's shape: packs of 64 chunks (a 32 MiB pack of chunks that compress about
#: 2:1 holds ~128; fewer per pack is the harder case for the index), one index object per
#: 100,000 chunks (one per export session of ~50 GiB of new data).
INDEX_PACK_CHUNKS = 64
INDEX_OBJECT_CHUNKS = 100_000

_INDEX_PROBE = r"""
import os, resource, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[3])
import blake3
from imagekit.store.backends.local import LocalBackend
from imagekit.store.repository import Repository

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

repo = Repository.open(LocalBackend(Path(sys.argv[1])), passphrase="bench-passphrase")
n, mode = int(sys.argv[2]), sys.argv[4]
before = rss()
started = time.perf_counter()
if mode == "dict":  # the former index: a dict of one Location object per chunk
    from imagekit.store.index import Location
    index = {}
    for name in repo.index_names():
        for r in repo.read_index(name):
            for e in r.entries:
                loc = Location(r.pack_id, r.sealed_data_key, e.offset, e.length, e.raw_length)
                index.setdefault(e.chunk_id, loc)
else:
    index = repo.load_index()
opened = time.perf_counter() - started
resident = rss() - before
hits = [blake3.blake3(i.to_bytes(8, "little")).digest() for i in range(0, n, max(1, n // 200_000))]
misses = [blake3.blake3(b"x" + h).digest() for h in hits]
started = time.perf_counter()
found = sum(1 for h in hits if index.get(h) is not None)
hit_rate = len(hits) / (time.perf_counter() - started)
started = time.perf_counter()
absent = sum(1 for h in misses if h not in index)
miss_rate = len(misses) / (time.perf_counter() - started)
assert found == len(hits) and absent == len(misses), (found, absent)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(len(index), opened, resident, peak, hit_rate, miss_rate)
"""


def make_index_store(root: Path, chunks: int) -> Path:
    """A directory store whose index names ``chunks`` chunks (no pack data: only the index is
    measured). Chunk ``i``'s id is BLAKE3 of ``i``, so the probe can look them up."""
    import blake3

    from imagekit.store.backends.local import LocalBackend
    from imagekit.store.format import CHUNK_SIZE
    from imagekit.store.index import PackRecord
    from imagekit.store.pack import BlobEntry
    from imagekit.store.repository import Repository

    store = root / "index-store"
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir(parents=True)
    repo = Repository.init(LocalBackend(store), passphrase=PASS)
    _, sealed = repo.new_sealed_data_key()
    for first in range(0, chunks, INDEX_OBJECT_CHUNKS):
        records = []
        last = min(chunks, first + INDEX_OBJECT_CHUNKS)
        for start in range(first, last, INDEX_PACK_CHUNKS):
            entries, offset = [], 0
            for i in range(start, min(last, start + INDEX_PACK_CHUNKS)):
                length = 200_000 + (i * 7919) % 300_000  # compressed blobs of varied size
                cid = blake3.blake3(i.to_bytes(8, "little")).digest()
                entries.append(BlobEntry(cid, offset, length, CHUNK_SIZE))
                offset += length
            pack_id = blake3.blake3(b"pack" + start.to_bytes(8, "little")).hexdigest()
            records.append(PackRecord(pack_id, sealed, tuple(entries)))
        repo.write_index(records)
    return store


def bench_index(
    root: Path, chunks: int = 4_000_000, modes: Sequence[str] = ("table", "dict")
) -> None:
    """Open time, resident bytes per chunk, peak RSS and lookups/s of the index of ``chunks``
    chunks, each mode in a fresh process (so the figures are its own)."""
    store = make_index_store(root, chunks)
    here = str(Path(__file__).resolve().parent.parent)
    print(f"index of {chunks:,} chunks ({INDEX_PACK_CHUNKS} a pack):")
    for mode in modes:
        out = subprocess.run(
            [sys.executable, "-c", _INDEX_PROBE, str(store), str(chunks), here, mode],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        count, opened, resident, peak, hits, misses = (float(x) for x in out)
        print(
            f"  {mode:5}  open {opened:6.1f} s  resident {resident / count:6.1f} B/chunk "
            f"({resident / 2**20:7.1f} MiB)  peak RSS {peak / 2**20:7.1f} MiB  "
            f"lookups {hits / 1e3:6.0f} k/s hit, {misses / 1e3:6.0f} k/s miss"
        )
    shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    # python bench/store_bench.py index [CHUNKS] [DIR]: the index benchmark alone.
    if len(sys.argv) >= 2 and sys.argv[1] == "index":
        count = int(sys.argv[2]) if len(sys.argv) > 2 else 4_000_000
        where = Path(sys.argv[3]) if len(sys.argv) > 3 else Path("build/bench")
        bench_index(where, count)
    else:
        sys.exit(
            "usage: store_bench.py index [CHUNKS] [DIR] (the tool comparison runs from run.py)"
        )
