"""Crash points: ``kill -9`` of ``ingest``, ``store copy`` and ``store prune`` at seeded moments.

Each seed picks a moment uniformly in the operation's measured run time (interpreter start
included: a crash before the first write is a crash too) and kills the process there with
SIGKILL: no handler, no ``finally``. Then, as the operator would:

1. ``store unlock`` the dead process's lock (it is this host's and the pid is gone);
2. ``store verify --read-data`` is clean;
3. every listed image restores byte-identical to the disk it came from;
4. a rerun completes, and uploads no more than what the crash left missing: the bytes of the
   packs already there are not sent again (ingest, copy); a rerun prune leaves exactly the
   images retention keeps.

On a directory store: the crash semantics are the write order's and the directory backend's
(temporary file, fsync, rename), which the object stores share through the backend contract.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.reliability.bench import (
    PASSPHRASE,
    cli_argv,
    ingest,
    init_store,
    make_disk,
    run_cli,
)
from tests.reliability.sizes import CRASH_SEEDS, seeds

#: 76 chunks, most random: ~30 MiB stored, so an ingest writes two packs (one full at 32 MiB
#: of blobs would need more; PACK_TARGET_SIZE cuts at 32 MiB) plus the index and manifest.
CHUNKS = 76
#: Metadata a rerun writes whatever was reused: index object, manifest (a few KiB).
METADATA_SLACK = 256 << 10


@dataclass
class Template:
    """A store in the state before the operation, copied afresh for every seed."""

    store: Path
    disks: dict[str, Path]  # image name → its disk, for the ingest case: the disk to ingest
    argv: list[str]
    seconds: float  # how long the uninterrupted operation takes
    full_upload: int  # bytes it uploads uninterrupted (0 for prune)


def _env(state: Path) -> dict[str, str]:
    return {**os.environ, "IMAGEKIT_PASSPHRASE": PASSPHRASE, "IMAGEKIT_STATE_DIR": str(state)}


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return time.monotonic() - started, done.stdout


def _objects(store: Path, prefix: str) -> dict[str, int]:
    base = store / prefix
    if not base.exists():
        return {}
    return {
        str(p.relative_to(store)): p.stat().st_size
        for p in base.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("crash")
    saved = {k: os.environ.get(k) for k in ("IMAGEKIT_PASSPHRASE", "IMAGEKIT_STATE_DIR")}
    os.environ.update(IMAGEKIT_PASSPHRASE=PASSPHRASE, IMAGEKIT_STATE_DIR=str(path / "state"))
    yield path
    for k, v in saved.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def _measure(template: Path, argv_for: list[str], work: Path, tag: str) -> tuple[float, int]:
    """Run the operation once uninterrupted on a copy: its time and bytes uploaded."""
    trial = work / f"trial-{tag}"
    shutil.copytree(template, trial)
    argv = [a.replace(str(template), str(trial)) for a in argv_for]
    seconds, out = _timed(argv, _env(work / f"state-{tag}"))
    doc = json.loads(out) if out.strip() else {}
    shutil.rmtree(trial)
    return seconds, int(doc.get("bytes_uploaded", 0))


@pytest.fixture(scope="module")
def ingest_template(work: Path) -> Template:
    store = work / "ingest-store"
    init_store(str(store))
    disk = make_disk(work / "ingest.raw", CHUNKS, seed=7)
    argv = cli_argv("ingest", disk, "--store", store, "--name", "web", "--json")
    seconds, full = _measure(store, argv, work, "ingest")
    return Template(store, {"web": disk}, argv, seconds, full)


@pytest.fixture(scope="module")
def copy_template(work: Path) -> Template:
    src, dst = work / "copy-src", work / "copy-dst"
    init_store(str(src))
    init_store(str(dst))
    first = make_disk(work / "copy1.raw", CHUNKS // 2, seed=8)
    second = make_disk(work / "copy2.raw", CHUNKS // 2, seed=9, changed_from=first)
    ingest(str(src), first, "web")
    ingest(str(src), second, "db")
    # The destination is what is copied afresh per seed; the source is only read.
    argv = cli_argv("store", "copy", src, dst, "--json")
    seconds, full = _measure(dst, argv, work, "copy")
    return Template(dst, {"web": first, "db": second}, argv, seconds, full)


@pytest.fixture(scope="module")
def prune_template(work: Path) -> Template:
    store = work / "prune-store"
    init_store(str(store))
    disks: dict[str, Path] = {}
    previous = None
    for night in range(3):
        disk = make_disk(work / f"prune{night}.raw", CHUNKS // 3, seed=10 + night,
                         changed_from=previous)  # fmt: skip
        disks[ingest(str(store), disk, "web")["id"]] = disk
        previous = disk
    argv = cli_argv("store", "prune", store, "--keep-last", "1", "--json")
    seconds, _ = _measure(store, argv, work, "prune")
    return Template(store, disks, argv, seconds, 0)


def _kill_at(argv: list[str], env: dict[str, str], delay: float) -> int | None:
    """Start ``argv``, SIGKILL it after ``delay`` seconds; its exit status if it finished
    first, else None."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return None


def _crash(template: Template, work: Path, seed: int) -> tuple[Path, dict[str, str], bool]:
    """A copy of the template store with the operation killed at the seed's moment."""
    tag = f"{template.store.name}-{seed}"
    store = work / f"seed-{tag}"
    shutil.copytree(template.store, store)
    state = work / f"state-seed-{tag}"
    env = _env(state)
    argv = [a.replace(str(template.store), str(store)) for a in template.argv]
    delay = random.Random(seed).uniform(0.0, template.seconds)
    finished = _kill_at(argv, env, delay) is not None
    os.environ["IMAGEKIT_STATE_DIR"] = str(state)
    return store, env, finished


def _recover_and_verify(store: Path, *, read_data: bool = True) -> None:
    """Steps 1 and 2: unlock the dead holder's lock, then a clean verify (with data)."""
    for name in _objects(store, "locks"):
        result = run_cli("store", "unlock", store, name)
        assert result.code == 0, f"unlock {name}: {result.err}"
    result = run_cli("store", "verify", store, *(["--read-data"] if read_data else []), "--json")
    assert result.code == 0, result.out + result.err
    assert result.json()["problems"] == []


def _restores_identically(store: Path, disk_of: dict[str, Path], tmp: Path) -> list[str]:
    """Step 3: every listed image, restored, is its disk's bytes; the ids listed."""
    listed = run_cli("images", "--store", store, "--json")
    assert listed.code == 0, listed.err
    ids = []
    for image in listed.json():
        out = tmp / f"restored-{image['id'][:12]}.raw"
        result = run_cli("restore", image["id"], "--store", store, "-o", out)
        assert result.code == 0, result.err
        disk = disk_of.get(image["id"]) or disk_of[image["name"]]
        assert out.read_bytes() == disk.read_bytes(), f"image {image['id']} restored wrong bytes"
        out.unlink()
        ids.append(image["id"])
    return ids


def _rerun(template: Template, store: Path) -> dict[str, object]:
    argv = [a.replace(str(template.store), str(store)) for a in template.argv]
    # The same command in-process (the argv after the interpreter's ``-c CODE``).
    result = run_cli(*argv[3:])
    assert result.code == 0, result.err
    doc: dict[str, object] = result.json()
    return doc


@pytest.mark.slow
@pytest.mark.parametrize("seed", seeds(CRASH_SEEDS))
def test_ingest(ingest_template: Template, work: Path, tmp_path: Path, seed: int) -> None:
    store, _, _ = _crash(ingest_template, work, seed)
    left = sum(_objects(store, "data").values())
    _recover_and_verify(store)
    _restores_identically(store, ingest_template.disks, tmp_path)
    again = _rerun(ingest_template, store)
    # Reused: what the crash left uploaded is not sent again.
    assert int(str(again["bytes_uploaded"])) <= ingest_template.full_upload - left + METADATA_SLACK
    _recover_and_verify(store, read_data=False)
    out = tmp_path / "again.raw"
    assert run_cli("restore", again["id"], "--store", store, "-o", out).code == 0
    assert out.read_bytes() == ingest_template.disks["web"].read_bytes()
    shutil.rmtree(store)


@pytest.mark.slow
@pytest.mark.parametrize("seed", seeds(CRASH_SEEDS))
def test_copy(copy_template: Template, work: Path, tmp_path: Path, seed: int) -> None:
    store, _, _ = _crash(copy_template, work, seed)
    before = sum(_objects(store, "data").values())
    baseline = sum(_objects(copy_template.store, "data").values())
    _recover_and_verify(store)
    _restores_identically(store, copy_template.disks, tmp_path)
    again = _rerun(copy_template, store)
    left = before - baseline
    assert int(str(again["bytes_uploaded"])) <= copy_template.full_upload - left + METADATA_SLACK
    _recover_and_verify(store, read_data=False)
    names = [i["name"] for i in run_cli("images", "--store", store, "--json").json()]
    assert sorted(names) == ["db", "web"]  # both copied, once each
    shutil.rmtree(store)


@pytest.mark.slow
@pytest.mark.parametrize("seed", seeds(CRASH_SEEDS))
def test_prune(prune_template: Template, work: Path, tmp_path: Path, seed: int) -> None:
    store, _, _ = _crash(prune_template, work, seed)
    _recover_and_verify(store)
    listed = _restores_identically(store, prune_template.disks, tmp_path)
    newest = list(prune_template.disks)[-1]
    assert newest in listed, "prune lost the image retention keeps"
    _rerun(prune_template, store)
    _recover_and_verify(store, read_data=False)
    assert [i["id"] for i in run_cli("images", "--store", store, "--json").json()] == [newest]
    shutil.rmtree(store)
