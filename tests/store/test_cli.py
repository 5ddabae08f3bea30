"""Store commands end to end on the local backend: the JSON shapes other tools script against."""

from __future__ import annotations

import filecmp
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import imagekit.cli.store_cmds  # noqa: F401  (registers the commands on the root group)
from imagekit.cli.app import main
from tests.store.helpers import allocated, make_disk

SIZE = 6 << 20


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str]):
        self.capsys = capsys

    def __call__(self, *args: str, code: int = 0) -> str:
        self.capsys.readouterr()
        status = main([str(a) for a in args])
        out, err = self.capsys.readouterr()
        assert status == code, f"exit {status}: {err}"
        self.err = err
        return out

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json"))


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.setenv("IMAGEKIT_PASSPHRASE", "correct horse")
    monkeypatch.delenv("IMAGEKIT_IDENTITY", raising=False)
    return Cli(capsys)


@pytest.fixture
def keys(run: Cli, tmp_path: Path) -> dict[str, Any]:
    reader, writer = tmp_path / "reader.key", tmp_path / "writer.key"
    return {
        "reader": reader,
        "reader_r": run("key", "generate", "-o", reader).strip(),
        "writer": writer,
        "writer_r": run("key", "generate", "-o", writer).strip(),
    }


def test_round_trip_through_the_cli(run: Cli, keys: dict[str, Any], tmp_path: Path) -> None:
    store = tmp_path / "repo"
    assert keys["reader_r"].startswith("ikr1")
    init = run.json(
        "store", "init", store, "--recipient", keys["reader_r"], "--writer", keys["writer_r"]
    )
    assert set(init) == {"id", "fingerprint", "key_slots", "url"} and init["key_slots"] == 2

    disk = make_disk(tmp_path / "disk.raw", SIZE, data_chunks=8)
    result = run.json(
        "ingest", disk, "--store", store, "--name", "web", "--identity", keys["writer"]
    )
    assert {"id", "name", "volumes", "bytes_read", "bytes_uploaded"} <= set(result)
    assert result["name"] == "web"
    assert result["volumes"][0]["virtual_size"] == SIZE
    assert 0 < result["bytes_read"] < SIZE and result["bytes_uploaded"] > 0

    listed = run.json("images", "--store", store, "--identity", keys["reader"])
    assert [i["id"] for i in listed] == [result["id"]]
    assert {"id", "name", "created", "source", "volumes", "stored_size"} <= set(listed[0])
    assert "web" in run("images", "--store", store, "--identity", keys["reader"])

    # The export host's identity cannot restore: WrongKey, exit 2, one line naming the object.
    run(
        "restore",
        "web",
        "--store",
        store,
        "--identity",
        keys["writer"],
        "-o",
        tmp_path / "x.raw",
        code=2,
    )
    assert "write-only" in run.err and "data/" in run.err and len(run.err.splitlines()) == 1

    out = tmp_path / "out.raw"
    restored = run.json(
        "restore", result["id"][:8], "--store", store, "--identity", keys["reader"], "-o", out
    )
    assert restored["files"][0]["path"] == str(out)
    assert filecmp.cmp(disk, out, shallow=False) and allocated(out) <= allocated(disk)

    report = run.json("store", "verify", store, "--identity", keys["reader"], "--read-data")
    assert report["ok"] and report["chunks_read"] > 0
    assert run.json("store", "verify", store, "--keyless")["ok"]


def test_wrong_passphrase_and_missing_store(
    run: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "repo"
    run("store", "init", store, "--passphrase")
    monkeypatch.setenv("IMAGEKIT_PASSPHRASE", "wrong")
    run("images", "--store", store, code=2)
    assert "no key slot opens" in run.err
    run("images", "--store", tmp_path / "nothing", code=1)
    assert "no repository" in run.err


def test_prune_and_copy_commands(run: Cli, tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    run("store", "init", src, "--passphrase")
    run("store", "init", dst, "--passphrase")
    ids = []
    for seed in (1, 2, 3):
        disk = make_disk(tmp_path / f"d{seed}.raw", SIZE, seed=seed)
        ids.append(run.json("ingest", disk, "--store", src, "--name", "web")["id"])
    copied = run.json("store", "copy", src, dst, "web")
    assert [c["source_id"] for c in copied["copied"]] == [ids[-1]]
    assert copied["bytes_uploaded"] > 0

    dry = run.json("store", "prune", src, "--keep-last", "1", "--dry-run")
    assert dry["dry_run"] and len(dry["dropped"]) == 2
    assert len(run.json("images", "--store", src)) == 3
    done = run.json("store", "prune", src, "--keep-last", "1")
    assert [k["id"] for k in done["kept"]] == [ids[-1]]
    assert [i["id"] for i in run.json("images", "--store", src)] == [ids[-1]]
    run("store", "prune", src, code=2)  # no policy: refused


def test_key_add_and_remove(run: Cli, keys: dict[str, Any], tmp_path: Path) -> None:
    store = tmp_path / "repo"
    run("store", "init", store, "--passphrase")
    run("key", "add", store, "--recipient", keys["reader_r"])
    listed = run.json("key", "list", store)
    assert sorted(s["type"] for s in listed["slots"]) == ["scrypt", "x25519"]
    assert listed["fingerprint"].startswith("ikf1")
    assert run.json("images", "--store", store, "--identity", keys["reader"]) == []
    run("key", "remove", store, "--recipient", keys["reader_r"])
    run("images", "--store", store, "--identity", keys["reader"], code=2)


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="needs qemu-img (qemu-utils)")
def test_qcow2_in_and_out(run: Cli, tmp_path: Path) -> None:
    store = tmp_path / "repo"
    run("store", "init", store, "--passphrase")
    raw = make_disk(tmp_path / "disk.raw", SIZE)
    qcow = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, qcow], check=True)
    result = run.json("ingest", qcow, "--store", store, "--name", "q")
    assert result["volumes"][0]["virtual_size"] == SIZE
    out = tmp_path / "out.qcow2"
    run("restore", "q", "--store", store, "-o", out, "--format", "qcow2")
    compare = subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "qcow2", raw, out])
    assert compare.returncode == 0
    assert out.stat().st_mode & 0o777 == 0o600  # qemu-img creates by the umask; never left so


def test_fingerprint_pinning_and_first_use_through_the_cli(
    run: Cli,
    keys: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = tmp_path / "repo"
    monkeypatch.setenv("IMAGEKIT_STATE_DIR", str(tmp_path / "init-host"))
    init = run.json("store", "init", store, "--recipient", keys["reader_r"])
    fingerprint = init["fingerprint"]
    assert run.json("key", "list", store, "--keyless")["fingerprint"] == fingerprint
    # Another host: first use is said loudly once, then recorded.
    monkeypatch.setenv("IMAGEKIT_STATE_DIR", str(tmp_path / "other-host"))
    with caplog.at_level("WARNING"):
        run("images", "--store", store, "--identity", keys["reader"])
    assert "first use" in caplog.text and fingerprint in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        run("images", "--store", store, "--identity", keys["reader"])
    assert "first use" not in caplog.text
    # A wrong pin is refused, naming both fingerprints.
    other = run.json("store", "init", tmp_path / "other2", "--recipient", keys["reader_r"])
    run(
        "images", "--store", store, "--identity", keys["reader"],
        "--fingerprint", other["fingerprint"], code=1,
    )  # fmt: skip
    assert other["fingerprint"] in run.err and fingerprint in run.err
    run("images", "--store", store, "--identity", keys["reader"], "--fingerprint", fingerprint)
    run("images", "--store", store, "--identity", keys["reader"], "--fingerprint", "x", code=2)
    # Boot and export pin the same way, refusing before any cloud or AWS call.
    run(
        "boot", "web", "--store", store, "--identity", keys["reader"], "--provider", "null",
        "--fingerprint", other["fingerprint"], code=1,
    )  # fmt: skip
    assert other["fingerprint"] in run.err and fingerprint in run.err
    run(
        "export", "ami-0123456789abcdef0", "--store", store, "--identity", keys["reader"],
        "--fingerprint", other["fingerprint"], code=1,
    )  # fmt: skip
    assert other["fingerprint"] in run.err and fingerprint in run.err


def test_store_unlock_removes_only_what_no_live_holder_owns(run: Cli, tmp_path: Path) -> None:
    store = tmp_path / "repo"
    run("store", "init", store, "--passphrase")
    (store / "locks").mkdir(exist_ok=True)
    (store / "locks" / ("ab" * 16)).write_bytes(b"planted")
    run("store", "verify", store, code=1)
    assert "store unlock" in run.err
    run("store", "unlock", store, "locks/" + "ab" * 16)
    assert "removed unreadable lock" in run.err
    run("store", "verify", store)
    run("store", "unlock", store, "locks/" + "cd" * 16, code=1)  # no such lock


def _downgrade_slot_files(store: Path) -> None:
    """Rewrite the slots of a directory store as the release before slot MACs wrote them."""
    for path in (store / "keys").iterdir():
        doc = json.loads(path.read_text())
        del doc["mac"]
        doc["version"] = 1
        path.write_text(json.dumps(doc, sort_keys=True) + "\n")


def test_key_list_shows_only_the_repositorys_slots(
    run: Cli, keys: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = tmp_path / "repo"
    run("store", "init", store, "--recipient", keys["reader_r"], "--writer", keys["writer_r"])
    # A bucket writer copies the reader's slot: two readers, to a count of the bucket's.
    (real,) = [p for p in (store / "keys").iterdir() if keys["reader_r"] in p.read_text()]
    (store / "keys" / ("ab" * 16)).write_bytes(real.read_bytes())
    with caplog.at_level("WARNING"):
        listed = run.json("key", "list", store, "--identity", keys["reader"])
    assert sorted(s["access"] for s in listed["slots"]) == ["read", "write"]
    assert listed["ignored"] == ["keys/" + "ab" * 16] and "keys/" + "ab" * 16 in caplog.text
    assert listed["verified"] and listed["fingerprint"].startswith("ikf1")
    as_writer = run.json("key", "list", store, "--identity", keys["writer"])
    assert [s["access"] for s in as_writer["slots"]] == ["write"]
    # A read slot needs the read key to check: the copy too is unverified, never the writer's.
    assert {s["recipient"] for s in as_writer["unverified"]} == {keys["reader_r"]}
    claimed = run.json("key", "list", store, "--keyless")
    assert not claimed["verified"] and len(claimed["slots"]) == 3
    run(
        "key",
        "remove",
        store,
        "--recipient",
        keys["reader_r"],
        "--identity",
        keys["reader"],
        code=2,
    )
    assert "last genuine" in run.err


KILL_AT_FIRST_SLOT_DELETE = """
import os, signal, sys
from imagekit.store.backends import local
delete = local.LocalBackend.delete
def killed(self, name):
    if name.startswith("keys/"):
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no exception handler runs
    delete(self, name)
local.LocalBackend.delete = killed
import imagekit.cli.store_cmds
from imagekit.cli.app import main
sys.exit(main(sys.argv[1:]))
"""


def test_store_upgrade_killed_in_the_middle_then_rerun(
    run: Cli, keys: dict[str, Any], tmp_path: Path
) -> None:
    store = tmp_path / "repo"
    run("store", "init", store, "--recipient", keys["reader_r"], "--writer", keys["writer_r"])
    _downgrade_slot_files(store)
    assert "version 1" in run("key", "list", store, "--identity", keys["reader"])
    upgrade = ["store", "upgrade", str(store), "--identity", str(keys["reader"])]
    upgrade += ["--writer", keys["writer_r"]]
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AT_FIRST_SLOT_DELETE, *upgrade], capture_output=True
    )
    assert killed.returncode == -signal.SIGKILL
    # Killed after the writer's new slot, before its old one went: both open to the same keys.
    assert len(list((store / "keys").iterdir())) == 3
    for who in ("reader", "writer"):
        run("images", "--store", store, "--identity", keys[who])
    done = run.json(*upgrade)
    assert (done["upgraded"], done["added"], len(done["removed"])) == ([], [], 1)
    listed = run.json("key", "list", store, "--identity", keys["reader"])
    assert [s["version"] for s in listed["slots"]] == [2, 2] and listed["unverified"] == []
    for who in ("reader", "writer"):
        run("images", "--store", store, "--identity", keys[who])
