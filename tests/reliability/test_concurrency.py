"""Concurrency: two processes on one store at once, started a seeded moment apart.

- two ingests (their disks share most chunks: both may upload the same chunk in different
  packs, which the index allows): both complete;
- an ingest while a prune runs: the prune's exclusive lock makes one of them refuse with a
  ``LockError`` line (exit 1), or they ran one after the other; never both at once;
- two copies into one destination: both complete, or one refuses.

After each: ``store verify --read-data`` is clean and every listed image restores
byte-identical; the images that were there and retention keeps are all still there.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.bench import PASSPHRASE, cli_argv, ingest, init_store, make_disk, run_cli
from tests.reliability.conftest import Tally
from tests.reliability.sizes import SOAK

SEEDS = list(range(50 if SOAK else 5))
CHUNKS = 60


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    work = tmp_path_factory.mktemp("concurrency")
    saved = os.environ.get("IMAGEKIT_PASSPHRASE")
    os.environ["IMAGEKIT_PASSPHRASE"] = PASSPHRASE
    first = make_disk(work / "a.raw", CHUNKS, seed=21)
    paths = {
        "a": first,
        "b": make_disk(work / "b.raw", CHUNKS, seed=22, changed_from=first),
        "c": make_disk(work / "c.raw", CHUNKS, seed=23, changed_from=first),
        "big": make_disk(work / "big.raw", 500, seed=24),
        "store": work / "store",
        "src": work / "src",
    }
    init_store(str(paths["store"]))
    ingest(str(paths["store"]), first, "old")
    ingest(str(paths["store"]), paths["b"], "old")
    init_store(str(paths["src"]))
    ingest(str(paths["src"]), paths["b"], "web")
    ingest(str(paths["src"]), paths["c"], "db")
    yield paths
    if saved is None:
        os.environ.pop("IMAGEKIT_PASSPHRASE", None)
    else:
        os.environ["IMAGEKIT_PASSPHRASE"] = saved


Done = subprocess.CompletedProcess[str]


def _start(argv: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "IMAGEKIT_PASSPHRASE": PASSPHRASE}
    return subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _locked(store: Path) -> bool:
    locks = store / "locks"
    return locks.is_dir() and any(not p.name.startswith(".") for p in locks.iterdir())


def _together(
    first: list[str], second: list[str], gap: float, *, once_locked: Path | None = None
) -> list[Done]:
    """Start ``first``, then ``second`` ``gap`` seconds later (after ``first`` has taken its
    lock on ``once_locked``, when given); both results."""
    one = _start(first)
    while once_locked is not None and one.poll() is None and not _locked(once_locked):
        time.sleep(0.002)
    time.sleep(gap)
    two = _start(second)
    done = []
    for proc in (one, two):
        out, err = proc.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


def _check_store(store: Path, disks: dict[str, Path], tmp: Path) -> list[dict[str, object]]:
    verified = run_cli("store", "verify", store, "--read-data", "--json")
    assert verified.code == 0, verified.out + verified.err
    listed = run_cli("images", "--store", store, "--json").json()
    for image in listed:
        out = tmp / f"{image['id'][:12]}.raw"
        assert run_cli("restore", image["id"], "--store", store, "-o", out).code == 0
        source = image["source"].split("/")[-1].removesuffix(".raw")
        assert out.read_bytes() == disks[source].read_bytes(), f"{image['id']} restored wrong"
        out.unlink()
    return listed


def _refused_cleanly(proc: Done) -> bool:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    return proc.returncode == 1 and len(lines) == 1 and "locked" in lines[0]


def _fresh(base: dict[str, Path], name: str, tmp: Path) -> Path:
    store = tmp / name
    shutil.copytree(base[name], store)
    return store


def _gap(seed: int) -> float:
    return random.Random(seed).uniform(0.0, 0.6)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_two_ingests(base: dict[str, Path], tmp_path: Path, seed: int, tally: Tally) -> None:
    store = _fresh(base, "store", tmp_path)
    runs = _together(
        cli_argv("ingest", base["a"], "--store", store, "--name", "x", "--source", "a.raw"),
        cli_argv("ingest", base["c"], "--store", store, "--name", "y", "--source", "c.raw"),
        _gap(seed),
    )
    assert [r.returncode for r in runs] == [0, 0], [r.stderr for r in runs]
    listed = _check_store(store, base, tmp_path)
    assert {i["name"] for i in listed} == {"old", "x", "y"}
    tally.at("both completed")


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_ingest_during_prune(
    base: dict[str, Path], tmp_path: Path, seed: int, tally: Tally
) -> None:
    """A long ingest (a 250 MiB disk) and a prune, the second started a seeded moment after
    the first has taken its lock."""
    store = _fresh(base, "store", tmp_path)
    rng = random.Random(seed)
    prune = cli_argv("store", "prune", store, "--keep-last", "1")
    put = cli_argv("ingest", base["big"], "--store", store, "--name", "new", "--source", "big.raw")
    # Mostly the prune starts while the ingest holds its lock (~0.6 s; a process takes ~0.3 s
    # to reach its lock); sometimes the other way round, where a prune's short hold mostly
    # ends before the ingest locks.
    prune_first = rng.random() < 0.2
    gap = rng.uniform(0.0, 0.15)
    if prune_first:
        runs = _together(prune, put, gap, once_locked=store)
    else:
        runs = _together(put, prune, gap, once_locked=store)[::-1]
    pruned, ingested = runs
    assert all(r.returncode == 0 or _refused_cleanly(r) for r in runs), [r.stderr for r in runs]
    listed = _check_store(store, base, tmp_path)
    names = [i["name"] for i in listed]
    assert "old" in names, "prune lost the image it keeps"
    if ingested.returncode == 0:
        assert "new" in names, "an ingest that completed lost its image"
    outcomes = (pruned.returncode, ingested.returncode)
    phases = {(0, 0): "both completed", (1, 0): "prune refused", (0, 1): "ingest refused"}
    tally.at(phases.get(outcomes, "both refused"))


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_two_copies(base: dict[str, Path], tmp_path: Path, seed: int, tally: Tally) -> None:
    store = _fresh(base, "store", tmp_path)
    runs = _together(
        cli_argv("store", "copy", base["src"], store, "web"),
        cli_argv("store", "copy", base["src"], store),
        _gap(seed),
    )
    assert all(r.returncode == 0 or _refused_cleanly(r) for r in runs), [r.stderr for r in runs]
    listed = _check_store(store, base, tmp_path)
    names = sorted(str(i["name"]) for i in listed)
    if runs[1].returncode == 0:
        assert {"web", "db"} <= set(names)
    tally.at("both completed" if all(r.returncode == 0 for r in runs) else "one refused")
