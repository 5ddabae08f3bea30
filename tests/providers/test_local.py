"""The local provider for real: QEMU boots of the test disk, restored from a store.

Boots are few (about 5 s each under TCG): two at once from the store, through the CLI in
separate processes as a user would run them, and one that never becomes healthy.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import imagekit.cli.boot_cmds  # noqa: F401  (registers the commands on the root group)
from imagekit.cli.app import main
from imagekit.errors import HealthError
from imagekit.providers.boot import BootOptions, boot
from imagekit.providers.health import HealthTarget, SshAccess, SshCheck, wait_for
from imagekit.providers.local.driver import QemuNodeDriver
from imagekit.providers.local.provider import LocalProvider
from imagekit.providers.runs import RunStore
from imagekit.providers.sources import FileImageSource
from imagekit.providers.userdata import generate_keys
from imagekit.store.backends.registry import open_backend
from imagekit.store.identity import Identity, write_identity
from imagekit.store.ingest import ingest
from imagekit.store.repository import Repository
from imagekit.store.sources import open_disk

PASSPHRASE = "test passphrase"
# The CLI as a user runs it, in its own process (the commands are registered on import).
CLI = [
    sys.executable,
    "-c",
    "import sys, imagekit.cli.boot_cmds; from imagekit.cli.app import main; sys.exit(main())",
]


def _processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (zombies have none)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return [pid for pid in found if pid != os.getpid()]


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.fixture
def store(tmp_path: Path, test_disk: Path) -> tuple[str, Path]:
    """A local store holding the test disk as image ``web``, and an identity that reads it."""
    identity = Identity.generate()
    identity_file = tmp_path / "reader.key"
    write_identity(identity_file, identity, PASSPHRASE)
    url = str(tmp_path / "store")
    with open_backend(url) as backend:
        repo = Repository.init(backend, recipients=[identity.recipient])
        with open_disk(test_disk) as disk:
            ingest(repo, [disk], name="web", source="test disk", metadata={"role": "web"})
    return url, identity_file


@pytest.mark.slow
def test_two_boots_from_a_store_then_teardown_leaves_nothing(
    tmp_path: Path, store: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    url, identity = store
    state = tmp_path / "state"
    env = {**os.environ, "IMAGEKIT_STATE_DIR": str(state), "IMAGEKIT_PASSPHRASE": PASSPHRASE}
    argv = [*CLI, "boot", "web", "--store", url, "--identity", str(identity), "--json"]
    argv += ["--health", "http:80/health~ok", "--health", "ssh:test -s /root/.ssh/authorized_keys"]
    argv += ["--timeout", "60"]

    def run_boot(_: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)

    with ThreadPoolExecutor(2) as pool:
        done = list(pool.map(run_boot, range(2)))
    for proc in done:
        assert proc.returncode == 0, proc.stderr
    booted: list[dict[str, Any]] = [json.loads(p.stdout) for p in done]

    assert all(
        b["status"] == "healthy" and set(b["stages"]) >= {"prepare", "health"} for b in booted
    )
    endpoints = [e for b in booted for n in b["nodes"] for e in n["endpoints"]]
    assert sorted(e["guest_port"] for e in endpoints) == [22, 22, 80, 80]
    ports = [e["port"] for e in endpoints]
    assert len(set(ports)) == 4  # distinct host ports for both runs
    run_ids = sorted(b["run_id"] for b in booted)
    capsys.readouterr()
    assert main(["runs", "--json", "--state-dir", str(state)]) == 0
    assert sorted(r["run_id"] for r in json.loads(capsys.readouterr().out)) == run_ids

    # The SSH check pins the host key the seed offered: another key is refused outright, and
    # without a pinned key it is trusted on first use and flagged.
    first = booted[0]
    ssh_port = next(e["port"] for e in first["nodes"][0]["endpoints"] if e["guest_port"] == 22)
    run_ssh = state / "runs" / first["run_id"] / "ssh"
    stranger = generate_keys(tmp_path / "stranger", "x")

    def target(host_key: str | None) -> HealthTarget:
        access = SshAccess("root", run_ssh / "id_ed25519", host_key)
        return HealthTarget("n", endpoint=lambda _: ("127.0.0.1", ssh_port), ssh=access)

    with pytest.raises(HealthError, match="refusing to trust it"):
        wait_for(SshCheck("true"), target(stranger.host_public), time.monotonic() + 20)
    tofu = wait_for(SshCheck("true"), target(None), time.monotonic() + 20)
    assert tofu.flagged and "trusted on first use: SHA256:" in tofu.detail

    assert _processes_mentioning(str(state)), "the nodes should outlive the boot commands"
    for run_id in run_ids:
        assert main(["teardown", run_id, "--state-dir", str(state)]) == 0
    assert _processes_mentioning(str(state)) == []
    assert all(_refused(port) for port in ports)
    # What stays is the host's trust in the store (its fingerprint, recorded on first use, and
    # the newest images seen), not anything of the runs.
    kept = {"known-stores.json", ".known-stores.json.lock", "seen-images.json"}
    leftovers = [p for p in state.rglob("*") if p.is_file() and p.name not in kept]
    assert leftovers == []
    capsys.readouterr()
    assert main(["teardown", run_ids[0], "--state-dir", str(state)]) == 2
    assert "already torn down" in capsys.readouterr().err


@pytest.mark.slow
def test_a_node_that_cannot_boot_fails_naming_the_cause_and_is_torn_down(
    tmp_path: Path,
) -> None:
    blank = tmp_path / "blank.raw"
    blank.write_bytes(bytes(1 << 20))  # no boot sector: the firmware finds nothing to boot
    state = tmp_path / "state"
    provider = LocalProvider(state_dir=state)
    options = BootOptions(checks=("http:80/health",), timeout=3.0)
    started = time.monotonic()
    with pytest.raises(HealthError) as info:
        boot(provider, FileImageSource(blank), options, RunStore(state))
    elapsed = time.monotonic() - started
    assert elapsed < 3.0 + 8  # the deadline, plus prepare and teardown
    message = str(info.value)
    # SeaBIOS's "No bootable device" on the console ends the wait with that cause.
    assert "cannot pass: the firmware found nothing to boot" in message
    assert "--- serial console (last lines) ---" in message and "Boot failed" in message
    assert "torn down" in message
    assert _processes_mentioning(str(state)) == []
    assert [p for p in state.rglob("*") if p.is_file()] == []


def test_destroy_node_never_signals_a_process_that_is_not_its_qemu(tmp_path: Path) -> None:
    # A stale record whose pid now belongs to another program (pid reuse).
    other = subprocess.Popen(["sleep", "30"])
    try:
        node_dir = tmp_path / "nodes" / "n-1"
        node_dir.mkdir(parents=True)
        record = {
            "name": "n-1",
            "pid": other.pid,
            "ports": {"22": 1},
            "serial_log": str(node_dir / "serial.log"),
            "stderr_log": str(node_dir / "qemu.stderr"),
        }
        (node_dir / "node.json").write_text(json.dumps(record))
        driver = QemuNodeDriver(tmp_path)
        node = driver.ex_get_node("n-1")
        assert node is not None and node.state == "terminated"
        assert driver.destroy_node(node) is True
        assert other.poll() is None  # still running: not signalled
        assert not node_dir.exists() and driver.ex_get_node("n-1") is None
    finally:
        other.kill()
        other.wait()
