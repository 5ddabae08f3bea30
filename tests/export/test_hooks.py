"""App-consistency hooks against a real SSH server (paramiko's server side) on 127.0.0.1.

Order pre → CreateSnapshots → post, a failing pre (no snapshot, post still runs), a hanging pre
(abandoned at the timeout, post still runs), a host key other than the pinned one (nothing runs).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from imagekit.errors import ExportError
from imagekit.export.hooks import HookSpec, app_consistent
from imagekit.export.instance import InstanceSelection
from imagekit.export.instance_job import InstanceSource, export_instance, resolve_instances
from imagekit.store.repository import Repository
from testbed.moto_aws import MotoAWS
from testbed.seed_ami import VolumeSpec, pattern_block, seed_ami
from testbed.seed_instance import launch_instance

pytestmark = pytest.mark.slow

#: Exit status per command the test server knows; "hang" never exits.
EXITS = {"freeze": 0, "thaw": 0, "fail": 3, "thaw-fail": 1}


@dataclass
class Guest:
    port: int
    host_key: str
    identity: Path
    events: list[str] = field(default_factory=list)

    def spec(self, pre: str | None, post: str | None, **changes: Any) -> HookSpec:
        base = {"host": "127.0.0.1", "port": self.port, "host_key": self.host_key}
        return HookSpec(identity=self.identity, pre=pre, post=post, **{**base, **changes})


class _Server(paramiko.ServerInterface):
    def __init__(self, allowed: paramiko.PKey, events: list[str]):
        self.allowed = allowed
        self.events = events
        self.channels: dict[int, bytes] = {}
        self.ready = threading.Condition()

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        ok = username == "root" and key.asbytes() == self.allowed.asbytes()
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        self.events.append(command.decode())
        name = command.decode()
        if name in EXITS:
            if EXITS[name]:
                channel.sendall(f"{name}: not today\n".encode())
            channel.send_exit_status(EXITS[name])
        return True  # "hang": accepted, never answered


def _key(path: Path) -> paramiko.Ed25519Key:
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    path.write_bytes(pem)
    return paramiko.Ed25519Key.from_private_key_file(str(path))


@pytest.fixture
def guest(tmp_path: Path) -> Iterator[Guest]:
    host_key = _key(tmp_path / "host")
    client_key = _key(tmp_path / "client")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()
    found = Guest(
        listener.getsockname()[1],
        f"{host_key.get_name()} {host_key.get_base64()}",
        tmp_path / "client",
    )
    transports: list[paramiko.Transport] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            transport = paramiko.Transport(conn)
            transport.add_server_key(host_key)
            transport.start_server(server=_Server(client_key, found.events))
            transports.append(transport)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield found
    stop.set()
    thread.join()
    for transport in transports:
        transport.close()
    listener.close()


def test_pre_then_body_then_post(guest: Guest) -> None:
    warnings: list[str] = []
    with app_consistent(guest.spec("freeze", "thaw"), warnings):
        guest.events.append("snapshot")
    assert guest.events == ["freeze", "snapshot", "thaw"]
    assert warnings == []


def test_failing_pre_skips_the_body_and_still_runs_post(guest: Guest) -> None:
    with (
        pytest.raises(ExportError, match=r"pre command exited 3: fail \(fail: not today\)"),
        app_consistent(guest.spec("fail", "thaw"), []),
    ):
        guest.events.append("snapshot")
    assert guest.events == ["fail", "thaw"]


def test_hanging_pre_is_abandoned_and_post_still_runs(guest: Guest) -> None:
    with (
        pytest.raises(ExportError, match=r"pre command did not finish within 0.5 s"),
        app_consistent(guest.spec("hang", "thaw", timeout=0.5), []),
    ):
        guest.events.append("snapshot")
    assert guest.events == ["hang", "thaw"]


def test_failing_post_is_a_warning(guest: Guest) -> None:
    warnings: list[str] = []
    with app_consistent(guest.spec("freeze", "thaw-fail"), warnings):
        pass
    assert len(warnings) == 1 and "post command exited 1" in warnings[0]


def test_a_host_key_other_than_the_pinned_one_runs_nothing(guest: Guest, tmp_path: Path) -> None:
    other = _key(tmp_path / "other")
    pinned = f"{other.get_name()} {other.get_base64()}"
    with (
        pytest.raises(ExportError, match="other than the pinned one"),
        app_consistent(guest.spec("freeze", "thaw", host_key=pinned), []),
    ):
        guest.events.append("snapshot")
    assert guest.events == []


def test_instance_export_runs_hooks_around_create_snapshots(
    aws: MotoAWS, guest: Guest, store: tuple[str, Repository], tmp_path: Path
) -> None:
    _, repo = store
    ec2, ebs = aws.client("ec2"), aws.client("ebs")
    ami = seed_ami(ebs, ec2, "db-base", [VolumeSpec("/dev/xvda", pattern_block("r"))])
    seeded = launch_instance(ec2, ami)
    (instance,) = resolve_instances(ec2, "us-east-1", InstanceSelection((seeded.instance_id,)))
    ec2.meta.events.register(
        "before-call.ec2.CreateSnapshots", lambda **_: guest.events.append("CreateSnapshots")
    )

    def run(pre: str) -> Any:
        source = InstanceSource("shop", "db", hooks=guest.spec(pre, "thaw"), poll_interval=0.0)
        return export_instance(
            repo, ec2, ebs, instance, source, image_name="db", state_dir=tmp_path / "state"
        )

    run("freeze")
    assert guest.events == ["freeze", "CreateSnapshots", "thaw"]
    guest.events.clear()
    aws.reset_counters()
    with pytest.raises(ExportError, match="pre command exited 3"):
        run("fail")
    assert guest.events == ["fail", "thaw"]
    assert aws.counters()["CreateSnapshots"] == 0
