"""``ssh:`` checks against a real SSH server (paramiko's server side) on 127.0.0.1.

Three ways to trust the host key: pinned by the caller, pinned from the host keys cloud-init
printed on the serial console (what GCE and Azure expose), and trust on first use (flagged).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from imagekit.errors import HealthError
from imagekit.providers.health import (
    HealthTarget,
    SshAccess,
    SshCheck,
    console_host_keys,
    wait_for,
)


class _Server(paramiko.ServerInterface):
    """Accepts one public key and runs ``true`` (exit 0) or anything else (exit 3)."""

    def __init__(self, allowed: paramiko.PKey):
        self.allowed = allowed
        self.command = threading.Event()
        self.exit_status = 0

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        ok = username == "root" and key.asbytes() == self.allowed.asbytes()
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        self.exit_status = 0 if command == b"true" else 3
        self.command.set()
        return True


@pytest.fixture
def ssh_server(tmp_path: Path) -> Iterator[tuple[int, paramiko.PKey, Path]]:
    """A listening SSH server: (port, its host key, the client's private key file)."""
    host_key = paramiko.Ed25519Key.from_private_key_file(_keyfile(tmp_path, "host"))
    client_file = _keyfile(tmp_path, "client")
    client_key = paramiko.Ed25519Key.from_private_key_file(client_file)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            threading.Thread(target=_session, args=(conn,), daemon=True).start()

    def _session(conn: socket.socket) -> None:
        transport = paramiko.Transport(conn)
        transport.add_server_key(host_key)
        server = _Server(client_key)
        try:
            transport.start_server(server=server)
            channel = transport.accept(5)
            if channel is not None and server.command.wait(5):
                channel.send_exit_status(server.exit_status)
                time.sleep(0.1)
        except (paramiko.SSHException, EOFError, OSError):
            pass
        finally:
            transport.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], host_key, client_file
    stop.set()
    thread.join()
    listener.close()


def _keyfile(folder: Path, name: str) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    path = folder / name
    path.write_bytes(pem)
    return str(path)


def _public(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.get_base64()}"


def _target(port: int, access: SshAccess, console: str | None = None) -> HealthTarget:
    return HealthTarget(
        name="n-1", endpoint=lambda _: ("127.0.0.1", port), console=lambda: console, ssh=access
    )


def _console(*keys: str) -> str:
    lines = [
        "[   3.1] cloud-init[412]: Cloud-init v. 23.4 running 'modules:config'",
        "-----BEGIN SSH HOST KEY KEYS-----",
        *keys,
        "-----END SSH HOST KEY KEYS-----",
        "ci-info: no authorized SSH keys fingerprints found for user ubuntu.",
    ]
    return "\n".join(lines) + "\n"


def test_console_host_keys_reads_only_cloud_inits_block() -> None:
    ed = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGk4m5wP4xP4mR1O9B0zRgk3yV7q2h0cQ8yQ3p1S7m1b"
    ec = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBA=="
    console = "ssh-rsa AAAAB3Nza-noise-before\n" + _console(f"ec2: {ec} root@vm", f"{ed} root@vm")
    assert console_host_keys(console) == [ec, ed]
    assert console_host_keys("no markers here ssh-ed25519 AAAA") == []
    assert console_host_keys(None) == []


def test_ssh_pinned_from_the_console_passes_without_a_flag(
    ssh_server: tuple[int, paramiko.PKey, Path],
) -> None:
    port, host_key, client = ssh_server
    access = SshAccess("root", Path(client), None)
    result = wait_for(
        SshCheck("true"),
        _target(port, access, _console(_public(host_key) + " root@vm")),
        time.monotonic() + 20,
    )
    assert not result.flagged and "pinned from the serial console" in result.detail


def test_ssh_refuses_a_host_key_other_than_the_consoles(
    ssh_server: tuple[int, paramiko.PKey, Path], tmp_path: Path
) -> None:
    port, _, client = ssh_server
    other = paramiko.Ed25519Key.from_private_key_file(_keyfile(tmp_path, "other"))
    access = SshAccess("root", Path(client), None)
    with pytest.raises(HealthError, match="refusing to trust it"):
        wait_for(
            SshCheck("true"), _target(port, access, _console(_public(other))), time.monotonic() + 20
        )


def test_ssh_without_console_keys_trusts_on_first_use_and_flags_it(
    ssh_server: tuple[int, paramiko.PKey, Path],
) -> None:
    port, _, client = ssh_server
    result = wait_for(
        SshCheck("true"), _target(port, SshAccess("root", Path(client))), time.monotonic() + 20
    )
    assert result.flagged and "trusted on first use" in result.detail


def test_ssh_command_failure_names_the_exit_status(
    ssh_server: tuple[int, paramiko.PKey, Path],
) -> None:
    port, host_key, client = ssh_server
    access = SshAccess("root", Path(client), _public(host_key))
    with pytest.raises(HealthError, match="exited 3"):
        wait_for(SshCheck("false"), _target(port, access), time.monotonic() + 3)
