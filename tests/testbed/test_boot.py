"""Boot the test disk in QEMU: HTTP health, SSH with a pinned host key, and a disk that won't boot.

Each boot takes ~3-5 s under software emulation; the deadlines are generous for a loaded machine.
"""

from __future__ import annotations

import io
import shutil
import socket
import time
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from imagekit.errors import HealthError
from imagekit.providers.local import qemu
from imagekit.providers.local.qemu import VM, VMSpec
from imagekit.providers.local.seed import build_seed, ssh_cloud_config

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="needs QEMU"),
]

BOOT_DEADLINE = 60.0  # seconds; a boot takes ~5 s under TCG, more when the machine is busy


def new_ed25519() -> tuple[str, paramiko.Ed25519Key]:
    """A fresh key as OpenSSH private-key text and as a paramiko key."""
    text = (
        ed25519.Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        .decode()
    )
    return text, paramiko.Ed25519Key.from_private_key(io.StringIO(text))


def ssh_client(port: int, pinned: paramiko.PKey) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.get_host_keys().add(f"[127.0.0.1]:{port}", pinned.get_name(), pinned)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return client


def connect(client: paramiko.SSHClient, port: int, key: paramiko.PKey) -> None:
    client.connect(
        "127.0.0.1",
        port=port,
        username="root",
        pkey=key,
        look_for_keys=False,
        allow_agent=False,
        timeout=15,
    )


def test_test_disk_boots_to_healthy_http(test_disk: Path, tmp_path: Path) -> None:
    with VM(VMSpec(test_disk), tmp_path) as vm:
        line = vm.wait_for_marker(timeout=BOOT_DEADLINE)
        assert line == "IMAGEKIT-READY hostname=imagekit-testdisk instance-id=none"
        assert vm.wait_for_http("/health", timeout=10) == b"ok imagekit-testdisk\n"
        assert "imagekit: " in vm.serial_tail() and "no seed" in vm.serial_tail()
        assert (tmp_path / "qemu.pid").read_text().strip() == str(vm.pid)
    assert not vm.running()


def test_seeded_boot_gives_ssh_with_the_pinned_host_key(test_disk: Path, tmp_path: Path) -> None:
    host_key_text, host_key = new_ed25519()
    _, user_key = new_ed25519()
    _, impostor = new_ed25519()
    seed = build_seed(
        tmp_path / "seed.iso",
        instance_id="i-0test",
        hostname="web-1",
        user_data=ssh_cloud_config(
            [f"{user_key.get_name()} {user_key.get_base64()} tester"],
            {"ed25519": host_key_text},
        ),
    )
    spec = VMSpec(test_disk, seed=seed, guest_ports=(80, 22))
    with VM(spec, tmp_path / "vm") as vm:
        assert vm.wait_for_marker(timeout=BOOT_DEADLINE).endswith(
            "hostname=web-1 instance-id=i-0test"
        )
        assert vm.wait_for_http("/instance-id", timeout=10) == b"i-0test\n"
        port = vm.host_port(22)
        wrong = ssh_client(port, impostor)
        with pytest.raises(paramiko.BadHostKeyException):
            connect(wrong, port, user_key)
        wrong.close()

        client = ssh_client(port, host_key)
        connect(client, port, user_key)
        _, stdout, _ = client.exec_command("echo $(id -u) $(hostname)")
        assert stdout.read() == b"0 web-1\n"
        client.exec_command("poweroff")
        client.close()
        assert vm.wait(timeout=30) == 0  # the guest powered itself off: QEMU exits cleanly
        assert "Power down" in vm.serial_tail()


def test_a_disk_that_does_not_boot_fails_by_the_deadline(tmp_path: Path) -> None:
    zeros = tmp_path / "zeros.raw"
    with zeros.open("wb") as disk:
        disk.truncate(1024 * 1024)
    deadline = 4.0
    with VM(VMSpec(zeros), tmp_path / "vm") as vm:
        started = time.monotonic()
        with pytest.raises(HealthError) as failure:
            vm.wait_for_marker(timeout=deadline)
        assert time.monotonic() - started < deadline + 2
    message = str(failure.value)
    assert "within 4 s" in message
    assert "not a bootable disk" in message or "No bootable device" in message


def test_a_port_taken_before_qemu_binds_it_is_picked_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Real QEMU, real bind failure; only the port choice is steered into the race it guards.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        picks = iter([taken])
        real_free_port = qemu.free_port
        monkeypatch.setattr(qemu, "free_port", lambda: next(picks, None) or real_free_port())
        zeros = tmp_path / "zeros.raw"
        zeros.write_bytes(bytes(512))
        with VM(VMSpec(zeros), tmp_path / "vm") as vm:
            assert vm.running()
            assert vm.host_port(80) != taken
