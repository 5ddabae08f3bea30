"""Secrets: a bench run with canary credentials and passphrases, and where they must not be.

The store is on moto's S3 over HTTP with canary access keys (moto accepts any), opened with a
canary passphrase and a canary-protected identity. Every command's stdout, stderr (``--debug``
included: its logs are what an operator pastes into a ticket) and ``--json`` output, the
host's state files, and the argv of every process on the machine while they run (read from
``/proc`` every few milliseconds, qemu-img among them) and the environment of the qemu-img
and tar children are searched for the canaries. The
files that hold secrets or disk contents are 0600.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.bench import Result, StoreSite, make_disk, run_cli, run_process, s3_site

CANARY_PASSPHRASE = "canary-passphrase-7f3a9c"
CANARY_KEY_ID = "AKIACANARY7F3A9C0000"
CANARY_SECRET = "canary-secret-access-key-7f3a9c"
CANARY_IDENTITY_PASS = "canary-identity-pass-7f3a9c"
CANARIES = (CANARY_PASSPHRASE, CANARY_KEY_ID, CANARY_SECRET, CANARY_IDENTITY_PASS)


class ArgvWatch:
    """Every process's argv on the machine, sampled while a block runs."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.environments: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.wait(0.003):
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                        argv = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
                except OSError:
                    continue  # gone already
                if argv:
                    self.seen.add(argv)
                if "qemu-img" in argv or argv.startswith("tar "):
                    self._environ(entry.name, argv)

    def _environ(self, pid: str, argv: str) -> None:
        """A child's environment: as readable as its argv to the same user and root."""
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                self.environments.add(f"{argv}: {f.read().decode('utf-8', 'replace')}")
        except OSError:
            pass

    def __enter__(self) -> ArgvWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def canary_site(moto_s3: object, monkeypatch: pytest.MonkeyPatch) -> Iterator[StoreSite]:
    from tests.store.backends.conftest import BUCKET

    site = s3_site(moto_s3.endpoint, BUCKET, CANARY_KEY_ID, CANARY_SECRET)  # type: ignore[attr-defined]
    for k, v in site.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("IMAGEKIT_PASSPHRASE", CANARY_PASSPHRASE)
    yield site


def _leaks(text: str) -> list[str]:
    return [c for c in CANARIES if c in text]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.slow
def test_bench_run(canary_site: StoreSite, tmp_path: Path, state_dir: Path,
                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    url = canary_site.url
    raw = make_disk(tmp_path / "disk.raw", 8, seed=5)
    qcow2 = tmp_path / "disk.qcow2"
    outputs: list[tuple[str, Result]] = []

    def run(*args: object) -> Result:
        # --debug runs as a process of its own: its logs (libcloud's requests among them) are
        # configured as in a user's run.
        result = run_process(*args) if "--debug" in args else run_cli(*args)
        outputs.append((" ".join(map(str, args)), result))
        return result

    identity = tmp_path / "reader.key"
    with ArgvWatch() as watch:
        monkeypatch.setenv("IMAGEKIT_PASSPHRASE", CANARY_IDENTITY_PASS)
        recipient = run("key", "generate", "-o", identity).out.strip()
        monkeypatch.setenv("IMAGEKIT_PASSPHRASE", CANARY_PASSPHRASE)
        assert (
            run("store", "init", url, "--passphrase", "--recipient", recipient, "--json").code == 0
        )
        assert run("convert", raw, "-o", qcow2, "--target", "qcow2", "--json").code == 0
        # A qcow2 input: qemu-img runs as a child while the store's secrets are in hand.
        assert run("--debug", "ingest", qcow2, "--store", url, "--name", "web", "--json").code == 0
        assert run("images", "--store", url, "--json").code == 0
        assert run("--debug", "store", "verify", url, "--read-data", "--json").code == 0
        assert run("key", "list", url, "--json").code == 0
        restored = tmp_path / "restored.qcow2"
        assert run("restore", "web", "--store", url, "-o", restored, "--format", "qcow2").code == 0
        monkeypatch.setenv("IMAGEKIT_PASSPHRASE", CANARY_IDENTITY_PASS)
        raw_out = tmp_path / "restored.raw"
        assert (
            run("restore", "web", "--store", url, "-o", raw_out, "--identity", identity).code == 0
        )
        # Failures too: their messages are what gets pasted into tickets.
        monkeypatch.setenv("IMAGEKIT_PASSPHRASE", "wrong " + CANARY_PASSPHRASE)
        assert run("--debug", "images", "--store", url).code == 2
        monkeypatch.setenv("IMAGEKIT_PASSPHRASE", CANARY_PASSPHRASE)
        dead = url.replace(
            canary_site.url.split("endpoint=")[1].split("&")[0], "http://127.0.0.1:9"
        )
        assert run("images", "--store", dead + "&retries=1").code == 1
        bad = f"s3://{CANARY_KEY_ID}:{CANARY_SECRET}@bucket/x"
        assert run("images", "--store", bad).code == 2

    debug = [r.err for c, r in outputs if c.startswith("--debug")]
    assert any("DEBUG" in e for e in debug), "no debug log seen: the check would prove nothing"
    for command, result in outputs:
        assert not _leaks(result.out + result.err), f"{command}: {_leaks(result.out + result.err)}"
    for path in state_dir.rglob("*"):
        if path.is_file():
            assert not _leaks(path.read_text(errors="replace")), path
            assert _mode(path) & 0o077 == 0, f"{path} is {oct(_mode(path))}"
    qemu = [argv for argv in watch.seen if "qemu-img" in argv]
    assert qemu, "no qemu-img seen: the watch did not sample the children"
    leaked = [argv for argv in watch.seen if _leaks(argv)]
    assert not leaked, leaked
    assert watch.environments, "no qemu-img environment read"
    inherited = [env.split(":", 1)[0] for env in watch.environments if _leaks(env)]
    assert not inherited, f"children inherited secrets in their environment: {inherited}"
    for path in (identity, restored, raw_out):
        assert _mode(path) == 0o600, f"{path} is {oct(_mode(path))}"
    assert raw_out.read_bytes() == raw.read_bytes()
