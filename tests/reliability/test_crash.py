"""Crash points: ``kill -9`` of ``ingest``, ``store copy`` and ``store prune`` at seeded moments.

Each seed picks a moment uniformly in the operation's measured working time (from when its
lock appears, the first thing it writes, to its exit) and kills the process there with
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
from typing import Any

import pytest

from testbed.moto_aws import MotoAWS
from testbed.seed_ami import VolumeSpec, seed_ami
from tests.reliability.bench import (
    PASSPHRASE,
    cli_argv,
    ingest,
    init_store,
    make_disk,
    run_cli,
    same_bytes,
)
from tests.reliability.conftest import Tally
from tests.reliability.sizes import CRASH_SEEDS, seeds

#: 200 chunks, four in five random: ~80 MiB stored, so an ingest writes three packs
#: (PACK_TARGET_SIZE cuts at 32 MiB) and the kills land between them, not only around them.
CHUNKS = 200
#: Metadata a rerun writes whatever was reused: index object, manifest (a few KiB).
METADATA_SLACK = 256 << 10


@dataclass
class Template:
    """A store in the state before the operation, copied afresh for every seed."""

    store: Path
    disks: dict[str, Path]  # image name → its disk, for the ingest case: the disk to ingest
    argv: list[str]
    seconds: float  # how long the uninterrupted operation works (from taking its lock)
    changes: int  # objects it writes or deletes
    full_upload: int  # bytes it uploads uninterrupted (0 for prune)


#: What the operations' processes need beyond the passphrase (the AWS emulator, for export).
EXTRA_ENV: dict[str, str] = {}


def _env(state: Path) -> dict[str, str]:
    return {
        **os.environ,
        **EXTRA_ENV,
        "IMAGEKIT_PASSPHRASE": PASSPHRASE,
        "IMAGEKIT_STATE_DIR": str(state),
    }


def _visible(store: Path) -> set[str]:
    """The store's objects as a listing shows them (not locks, not temporary files)."""
    return {
        str(p.relative_to(store))
        for p in store.rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.parts[len(store.parts)] != "locks"
    }


def _started(store: Path, proc: subprocess.Popen[bytes]) -> float:
    """Wait until the operation has begun its work on ``store`` (its lock appears: the first
    thing it writes) or the process exits; the time then. Interpreter start and imports take
    most of a small operation's run, and a kill there proves nothing about the store."""
    locks = store / "locks"
    while proc.poll() is None:
        if locks.is_dir() and any(not p.name.startswith(".") for p in locks.iterdir()):
            break
        time.sleep(0.002)
    return time.monotonic()


@dataclass(frozen=True)
class Moment:
    """When to kill, once the operation works: ``delay`` seconds on, or ``after`` objects
    have appeared or gone (then ``delay`` more): a seed draws one or the other, so kills
    land both anywhere in time and right around each write and deletion."""

    delay: float
    after: int = 0

    @staticmethod
    def draw(seed: int, template: Template) -> Moment:
        rng = random.Random(seed)
        if rng.random() < 0.5 or template.changes == 0:
            return Moment(rng.uniform(0.0, template.seconds))
        return Moment(rng.uniform(0.0, 0.01), rng.randint(1, template.changes))


def _run(
    argv: list[str], env: dict[str, str], store: Path, moment: Moment | None
) -> tuple[float, int, str] | None:
    """Start ``argv`` and kill it at ``moment`` (None: let it finish). When it finished by
    itself: how long it worked, how many objects it wrote or deleted, its stdout."""
    before = _visible(store)
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    began = _started(store, proc)
    if moment is not None and moment.after:
        while proc.poll() is None and len(_visible(store) ^ before) < moment.after:
            time.sleep(0.001)
    try:
        out, err = proc.communicate(timeout=None if moment is None else moment.delay)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None
    assert proc.returncode == 0, err.decode()
    return time.monotonic() - began, len(_visible(store) ^ before), out.decode()


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


def _measure(template: Path, argv_for: list[str], work: Path, tag: str) -> tuple[float, int, int]:
    """Run the operation uninterrupted on copies: how long it works (the least of three: a
    run slowed by a neighbour would put kills past the end), the objects it changes, and the
    bytes it uploads."""
    runs = []
    for attempt in range(3):
        trial = work / f"trial-{tag}-{attempt}"
        shutil.copytree(template, trial)
        argv = [a.replace(str(template), str(trial)) for a in argv_for]
        done = _run(argv, _env(work / f"state-{tag}-{attempt}"), trial, None)
        assert done is not None
        runs.append(done)
        shutil.rmtree(trial)
    seconds, changes, out = min(runs)
    return seconds, changes, _uploaded(json.loads(out) if out.strip() else {})


def _uploaded(doc: object) -> int:
    """Bytes an operation's --json says it uploaded (export: a row per AMI)."""
    if isinstance(doc, list):
        return sum(_uploaded(row) for row in doc)
    return int(doc.get("bytes_uploaded", 0)) if isinstance(doc, dict) else 0


@pytest.fixture(scope="module")
def ingest_template(work: Path) -> Template:
    store = work / "ingest-store"
    init_store(str(store))
    disk = make_disk(work / "ingest.raw", CHUNKS, seed=7)
    argv = cli_argv("ingest", disk, "--store", store, "--name", "web", "--json")
    return Template(store, {"web": disk}, argv, *_measure(store, argv, work, "ingest"))


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
    return Template(dst, {"web": first, "db": second}, argv, *_measure(dst, argv, work, "copy"))


@pytest.fixture(scope="module")
def export_template(work: Path, moto_server: MotoAWS) -> Iterator[Template]:
    """An AMI on the AWS emulator (EC2 + EBS direct APIs over HTTP) and an empty store; the
    operation is ``imagekit export AMI``."""
    moto_server.reset()
    EXTRA_ENV.update(moto_server.env)
    saved = {k: os.environ.get(k) for k in moto_server.env}
    os.environ.update(moto_server.env)  # for the reruns, in-process
    disk = make_disk(work / "ami.raw", CHUNKS // 2, seed=31)
    spec = VolumeSpec("/dev/xvda", disk, volume_size_gib=1)
    ami = seed_ami(moto_server.client("ebs"), moto_server.client("ec2"), "crash", [spec])
    # The store holds the volume at its EBS size: compare with the disk at that size.
    whole = work / "ami-volume.raw"
    shutil.copyfile(disk, whole)
    os.truncate(whole, 1 << 30)
    store = work / "export-store"
    init_store(str(store))
    argv = cli_argv("export", ami.image_id, "--store", store, "--json")
    yield Template(store, {"crash": whole}, argv, *_measure(store, argv, work, "export"))
    for key, value in saved.items():
        EXTRA_ENV.pop(key, None)
        os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


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
    return Template(store, disks, argv, *_measure(store, argv, work, "prune"))


def _phase(template: Template, store: Path, finished: bool) -> str:
    """Where the kill struck, from what it left."""
    if finished:
        return "finished before the kill"
    new = {p for p in _objects(store, "data") if p not in _objects(template.store, "data")}
    images = len(_objects(store, "images")) - len(_objects(template.store, "images"))
    if images < 0:
        return "killed after deleting images"
    if images > 0:
        return "killed after writing an image"
    return "killed after writing packs" if new else "killed before any write"


def _crash(template: Template, work: Path, seed: int) -> tuple[Path, dict[str, str], bool]:
    """A copy of the template store with the operation killed at the seed's moment."""
    tag = f"{template.store.name}-{seed}"
    store = work / f"seed-{tag}"
    shutil.copytree(template.store, store)
    state = work / f"state-seed-{tag}"
    env = _env(state)
    argv = [a.replace(str(template.store), str(store)) for a in template.argv]
    finished = _run(argv, env, store, Moment.draw(seed, template)) is not None
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
        assert same_bytes(out, disk), f"image {image['id']} restored wrong bytes"
        out.unlink()
        ids.append(image["id"])
    return ids


def _rerun(template: Template, store: Path) -> Any:
    argv = [a.replace(str(template.store), str(store)) for a in template.argv]
    # The same command in-process (the argv after the interpreter's ``-c CODE``).
    result = run_cli(*argv[3:])
    assert result.code == 0, result.err
    return result.json()


@pytest.mark.slow
@pytest.mark.parametrize("seed", seeds(CRASH_SEEDS))
def test_ingest(
    ingest_template: Template, work: Path, tmp_path: Path, seed: int, tally: Tally
) -> None:
    store, _, finished = _crash(ingest_template, work, seed)
    tally.at(_phase(ingest_template, store, finished))
    left = sum(_objects(store, "data").values())
    _recover_and_verify(store)
    _restores_identically(store, ingest_template.disks, tmp_path)
    again = _rerun(ingest_template, store)
    # Reused: what the crash left uploaded is not sent again.
    assert _uploaded(again) <= ingest_template.full_upload - left + METADATA_SLACK
    _recover_and_verify(store, read_data=False)
    out = tmp_path / "again.raw"
    assert run_cli("restore", again["id"], "--store", store, "-o", out).code == 0
    assert same_bytes(out, ingest_template.disks["web"])
    shutil.rmtree(store)


@pytest.mark.slow
@pytest.mark.parametrize("seed", seeds(CRASH_SEEDS))
def test_copy(copy_template: Template, work: Path, tmp_path: Path, seed: int, tally: Tally) -> None:
    store, _, finished = _crash(copy_template, work, seed)
    tally.at(_phase(copy_template, store, finished))
    before = sum(_objects(store, "data").values())
    baseline = sum(_objects(copy_template.store, "data").values())
    _recover_and_verify(store)
    _restores_identically(store, copy_template.disks, tmp_path)
    again = _rerun(copy_template, store)
    left = before - baseline
    assert _uploaded(again) <= copy_template.full_upload - left + METADATA_SLACK
    _recover_and_verify(store, read_data=False)
    names = [i["name"] for i in run_cli("images", "--store", store, "--json").json()]
    assert sorted(names) == ["db", "web"]  # both copied, once each
    shutil.rmtree(store)


@pytest.mark.slow
@pytest.mark.parametrize("seed", seeds(CRASH_SEEDS))
def test_prune(
    prune_template: Template, work: Path, tmp_path: Path, seed: int, tally: Tally
) -> None:
    store, _, finished = _crash(prune_template, work, seed)
    tally.at(_phase(prune_template, store, finished))
    _recover_and_verify(store)
    listed = _restores_identically(store, prune_template.disks, tmp_path)
    newest = list(prune_template.disks)[-1]
    assert newest in listed, "prune lost the image retention keeps"
    _rerun(prune_template, store)
    _recover_and_verify(store, read_data=False)
    assert [i["id"] for i in run_cli("images", "--store", store, "--json").json()] == [newest]
    shutil.rmtree(store)


@pytest.mark.slow
@pytest.mark.parametrize("seed", seeds(CRASH_SEEDS))
def test_export(
    export_template: Template, work: Path, tmp_path: Path, seed: int, tally: Tally
) -> None:
    """``imagekit export AMI`` from the AWS emulator over HTTP, killed; the rerun resumes."""
    store, _, finished = _crash(export_template, work, seed)
    tally.at(_phase(export_template, store, finished))
    left = sum(_objects(store, "data").values())
    _recover_and_verify(store)
    _restores_identically(store, export_template.disks, tmp_path)
    again = _rerun(export_template, store)
    assert _uploaded(again) <= export_template.full_upload - left + METADATA_SLACK
    _recover_and_verify(store, read_data=False)
    # An export that had written its image before the kill is exported again (every export
    # is a point in time of its own): one image or two, each the AMI's bytes.
    listed = _restores_identically(store, export_template.disks, tmp_path)
    assert again[0]["id"] in listed and len(listed) in (1, 2)
    shutil.rmtree(store)
