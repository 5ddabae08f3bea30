"""Tamper: every object kind flipped, cut, deleted, swapped or replayed on a real backend.

A store of two images of one lineage (the second incremental) is built once per backend (a
directory, moto's S3 over HTTP, Azurite); each case alters objects through the backend as the
storage provider could, runs what a user would (``store verify --read-data``, ``restore`` of
every image, ``store prune`` for locks), then puts the objects back. A case survives when one
of those fails naming the altered object and no restore that succeeds wrote other bytes than
the image's own disk.

Replay is the older copy of the object's kind: the objects of that kind as they were before
the second image (manifests: the newest hidden, a rollback this host saw past; index: the
second session's index gone) or, for a lock, a live holder's lock rewritten with an old time.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from imagekit.store.backends.base import Backend
from imagekit.store.identity import Identity
from imagekit.store.locks import RepositoryLock
from imagekit.store.repository import Repository
from tests.reliability.bench import (
    PASSPHRASE,
    StoreSite,
    ingest,
    init_store,
    make_disk,
    run_cli,
)
from tests.reliability.conftest import Tally

KINDS = ["pack", "index", "manifest", "key_slot", "config", "lock"]
MUTATIONS = ["flip", "truncate", "delete", "swap", "replay"]
PREFIX = {
    "pack": "data/",
    "index": "index/",
    "manifest": "images/",
    "key_slot": "keys/",
    "config": "config",
    "lock": "locks/",
}
#: Cases that do not apply: each explains why there is nothing to detect.
NOT_APPLICABLE = {
    # Two slots of one passphrase wrap the same keys; their names are random, not content.
    ("key_slot", "swap"): "slots are interchangeable",
    # Packs, config and key slots are never rewritten: no older copy of the same name exists.
    ("pack", "replay"): "never rewritten",
    ("config", "replay"): "never rewritten",
    ("config", "swap"): "one config per store (another store's: test_foreign_config)",
    ("key_slot", "replay"): "never rewritten (a removed slot put back: see the report)",
    # A lock's holder rewrites it; deleting or swapping a lock is the holder's to notice.
    ("lock", "delete"): "the holder rewrites it",
    ("lock", "swap"): "locks are interchangeable",
}
CASES = [
    pytest.param(kind, mutation, id=f"{kind}-{mutation}")
    for kind in KINDS
    for mutation in MUTATIONS
    if (kind, mutation) not in NOT_APPLICABLE
]


@dataclass
class Built:
    """The store before any tampering: its objects, the disks behind its images, and the
    state directory of the host that made it (it has seen both images)."""

    site: StoreSite
    objects: dict[str, bytes]
    before_second: dict[str, bytes]
    disks: dict[str, Path]  # image id → the disk it holds
    newest: str  # the id of the lineage's newest image
    state: Path
    work: Path


def _objects(backend: Backend) -> dict[str, bytes]:
    return {info.name: backend.read(info.name) for info in backend.list("")}


def _put_back(backend: Backend, objects: dict[str, bytes]) -> None:
    for info in list(backend.list("")):
        if info.name not in objects:
            backend.delete(info.name)
    for name, data in objects.items():
        if backend.read(name) != data if backend.exists(name) else True:
            backend.write(name, data)


@pytest.fixture(scope="module")
def built(site: StoreSite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    work = tmp_path_factory.mktemp(f"tamper-{site.kind}")
    state = work / "state"
    env = {
        **site.env,
        "IMAGEKIT_STATE_DIR": str(state),
        "IMAGEKIT_PASSPHRASE": PASSPHRASE,
        "IMAGEKIT_NEW_PASSPHRASE": PASSPHRASE,
    }
    with StoreSite(site.kind, site.url, env, site.credentials).environment():
        # Two slots: the passphrase's, which the cases open with, and a reader identity's.
        init_store(site.url, "--recipient", Identity.generate().recipient)
        first = make_disk(work / "day1.raw", 12, seed=1)
        second = make_disk(work / "day2.raw", 12, seed=2, changed_from=first)
        id1 = ingest(site.url, first)["id"]
        backend = site.backend()
        before_second = _objects(backend)
        id2 = ingest(site.url, second)["id"]
        # The host has seen both images (what a rollback is measured against).
        assert run_cli("store", "verify", site.url).code == 0
        objects = _objects(backend)
        yield Built(site, objects, before_second, {id1: first, id2: second}, id2, state, work)
        backend.close()


def _names(objects: dict[str, bytes], kind: str) -> list[str]:
    prefix = PREFIX[kind]
    return sorted(
        n for n in objects if n == prefix or (prefix.endswith("/") and n.startswith(prefix))
    )


def _live_lock(built: Built, backend: Backend, *, time_offset: float = 0.0) -> str:
    """A shared lock as a live ingest holds it (written, not refreshed: no thread)."""
    repo = Repository.open(backend, passphrase=PASSPHRASE)
    lock = RepositoryLock(
        backend, repo.meta, exclusive=False, clock=lambda: time.time() + time_offset
    )
    lock._write()
    return lock.name


def _target(built: Built, backend: Backend, kind: str, names: list[str]) -> str:
    """The object a case alters: the second session's (its pack, index, the newest image's
    manifest), or the passphrase's key slot, which the cases open the store with."""
    if kind == "key_slot":
        return next(n for n in names if b'"scrypt"' in backend.read(n))
    newer = [n for n in names if n not in built.before_second]
    return (newer or names)[-1]


def tamper(built: Built, backend: Backend, kind: str, mutation: str) -> list[str]:
    """Apply the mutation; the names of the objects altered."""
    if kind == "lock":
        if mutation == "replay":
            return [_live_lock(built, backend, time_offset=-7200.0)]
        name = _live_lock(built, backend)
        names = [name]
    else:
        names = _names(built.objects, kind)
    target = _target(built, backend, kind, names)
    names = [target, *(n for n in names if n != target)]
    data = backend.read(target)
    if mutation == "flip":
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0x10
        backend.write(target, bytes(flipped))
    elif mutation == "truncate":
        backend.write(target, data[: len(data) // 2])
    elif mutation == "delete":
        backend.delete(target)
    elif mutation == "swap":
        other = names[-1]
        backend.write(target, backend.read(other))
        backend.write(other, data)
        return [target, other]
    elif mutation == "replay":
        older = {n: d for n, d in built.before_second.items() if n.startswith(PREFIX[kind])}
        for name in names:
            if name not in older:
                backend.delete(name)
        for name, old in older.items():
            backend.write(name, old)
        return [n for n in names if n not in older] or names
    return [target]


def observe(built: Built, kind: str, out: Path) -> tuple[list[str], list[str]]:
    """Run what a user runs; (the lines of every failure, the wrong restores)."""
    url = built.site.url
    failures, wrong = [], []
    result = run_cli("store", "verify", url, "--read-data")
    if result.code:
        failures.append(result.out + result.err)
    refs = [*built.disks, "web"]
    for ref in refs:
        target = out / f"{ref[:12]}.raw"
        result = run_cli("restore", ref, "--store", url, "-o", target, "--json")
        if result.code:
            failures.append(result.err)
            assert not target.exists(), f"restore {ref} failed but left {target}"
            continue
        restored_id = result.json()["id"]
        if target.read_bytes() != built.disks[restored_id].read_bytes():
            wrong.append(f"restore {ref} wrote bytes that are not image {restored_id}'s")
        if ref != "web" and restored_id != ref:
            wrong.append(f"restore {ref} restored image {restored_id}")
        if ref == "web" and restored_id != built.newest:
            # The host saw the newest image of the lineage: under its name, anything older is
            # a silent rollback.
            wrong.append(f"restore web restored image {restored_id[:12]}, not the newest")
    if kind == "lock":
        result = run_cli("store", "prune", url, "--keep-last", "5")
        if result.code:
            failures.append(result.err)
    return failures, wrong


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "mutation"), CASES)
def test_tamper(
    built: Built,
    kind: str,
    mutation: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tally: Tally,
) -> None:
    tally.group(f"{kind} {mutation}", f"{kind}-{mutation}")
    state = tmp_path / "state"
    shutil.copytree(built.state, state)
    monkeypatch.setenv("IMAGEKIT_STATE_DIR", str(state))
    monkeypatch.setenv("IMAGEKIT_PASSPHRASE", PASSPHRASE)
    for k, v in built.site.env.items():
        monkeypatch.setenv(k, v)
    backend = built.site.backend()
    try:
        altered = tamper(built, backend, kind, mutation)
        failures, wrong = observe(built, kind, tmp_path)
    finally:
        _put_back(backend, built.objects)
        backend.close()
    assert not wrong, wrong
    assert failures, f"{kind} {mutation} of {altered}: nothing failed"
    if (kind, mutation) in REPORTED_BY_EFFECT:
        effect = REPORTED_BY_EFFECT[(kind, mutation)]
        assert any(effect in f for f in failures), (kind, mutation, effect, failures)
    else:
        # Messages name an object by its full name or by its id (``image 51ebca53daa1``).
        named = [f for f in failures if any(_id(a) in f for a in altered)]
        assert named, f"{kind} {mutation} of {altered}: not named; failures: {failures}"


def _id(name: str) -> str:
    return name.rsplit("/", 1)[-1][:12]


#: An object that is gone cannot be named by what reads the store (nothing lists it): these
#: are reported by what its absence does, in these words.
REPORTED_BY_EFFECT = {
    ("index", "delete"): "in no index",
    ("index", "replay"): "in no index",
    ("manifest", "delete"): "rolled back",  # the newest image: the host saw it
    ("manifest", "replay"): "rolled back",
    ("key_slot", "delete"): "no key slot opens",
    # A slot whose sealed bytes were flipped still parses; AES-GCM cannot tell altered bytes
    # from a wrong passphrase, so it fails as one would.
    ("key_slot", "flip"): "no key slot opens",
    ("config", "delete"): "config",
}


def test_foreign_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another store's config put in place of this one's: the recorded fingerprint differs,
    and opening fails naming the config (a directory suffices: the check needs no server)."""
    monkeypatch.setenv("IMAGEKIT_PASSPHRASE", PASSPHRASE)
    ours, theirs = str(tmp_path / "ours"), str(tmp_path / "theirs")
    init_store(ours)
    init_store(theirs)
    (Path(ours) / "config").write_bytes((Path(theirs) / "config").read_bytes())
    result = run_cli("images", "--store", ours)
    assert result.code == 1 and f"{ours}/config: declares fingerprint" in result.err
