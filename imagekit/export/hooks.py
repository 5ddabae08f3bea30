"""App-consistency hooks: a pre and a post command on the instance over SSH, around its snapshot.

A crash-consistent snapshot is what a power cut leaves; a database recovers from it, but a pre
command (``fsfreeze -f /data``, ``pg_backup_start``) makes the set app-consistent, and the post
command (``fsfreeze -u /data``) undoes it. Rules that keep production safe:

- the host key is pinned (``host_key``, as in ``known_hosts``): an unknown or changed key is
  refused before any command runs;
- each command has a hard timeout; a pre command that fails or hangs means no snapshot is taken,
  and the post command **still runs** (a half-done freeze must be undone);
- once the pre command started, the post command runs whatever happens next — snapshot refused,
  throttled, interrupted.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import paramiko

from imagekit.errors import ExportError, InputError

log = logging.getLogger(__name__)

#: What is kept of a failed command's output for its error line.
OUTPUT_TAIL = 200


@dataclass(frozen=True)
class HookSpec:
    host: str
    host_key: str  # "ssh-ed25519 AAAA…": the pinned host key
    identity: Path  # the private key file that logs in
    user: str = "root"
    port: int = 22
    pre: str | None = None
    post: str | None = None
    timeout: float = 60.0  # hard limit per command
    connect_timeout: float = 10.0


def _pinned_key(spec: HookSpec) -> paramiko.PKey:
    parts = spec.host_key.split()
    if len(parts) < 2:
        raise InputError(
            f"hooks: host key {spec.host_key[:24]!r} is not 'TYPE BASE64'",
            hint="copy the line from the instance's /etc/ssh/ssh_host_ed25519_key.pub",
        )
    try:
        return paramiko.PKey.from_type_string(parts[0], base64.b64decode(parts[1]))
    except (ValueError, paramiko.SSHException) as exc:
        raise InputError(f"hooks: host key is not a valid {parts[0]} key: {exc}") from exc


def _connect(spec: HookSpec) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    known = spec.host if spec.port == 22 else f"[{spec.host}]:{spec.port}"
    key = _pinned_key(spec)
    client.get_host_keys().add(known, key.get_name(), key)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    where = f"{spec.user}@{spec.host}:{spec.port}"
    try:
        client.connect(
            spec.host,
            port=spec.port,
            username=spec.user,
            key_filename=str(spec.identity),
            timeout=spec.connect_timeout,
            banner_timeout=spec.connect_timeout,
            auth_timeout=spec.connect_timeout,
            allow_agent=False,
            look_for_keys=False,
        )
    except paramiko.BadHostKeyException as exc:
        raise ExportError(
            f"hooks: {where} presented a host key other than the pinned one",
            hint="no command was run; check the instance, then update hooks.host_key",
        ) from exc
    except paramiko.SSHException as exc:
        if "not found in known_hosts" in str(exc):
            raise ExportError(
                f"hooks: {where} presented an unknown host key", hint="check hooks.host_key"
            ) from exc
        raise ExportError(f"hooks: SSH to {where} failed: {exc}") from exc
    except (OSError, EOFError) as exc:
        raise ExportError(
            f"hooks: cannot reach {where}: {exc}", hint="check hooks.host and security groups"
        ) from exc
    return client


def run_command(client: paramiko.SSHClient, which: str, command: str, timeout: float) -> None:
    """Run ``command``; raise unless it exits 0 within ``timeout`` (then its channel is closed)."""
    transport = client.get_transport()
    if transport is None or not transport.is_active():
        raise ExportError(f"hooks: the SSH connection closed before the {which} command")
    channel = transport.open_session(timeout=timeout)
    output = bytearray()
    try:
        channel.settimeout(0.2)
        channel.set_combine_stderr(True)
        channel.exec_command(command)
        deadline = time.monotonic() + timeout
        while not channel.exit_status_ready():
            if time.monotonic() > deadline:
                raise ExportError(
                    f"hooks: the {which} command did not finish within {timeout:g} s: {command}",
                    hint="it was abandoned; raise hooks.timeout or fix the command",
                )
            try:
                output += channel.recv(4096)
            except TimeoutError:
                continue
            del output[:-OUTPUT_TAIL]  # a chatty command: only the end can go in the error
        status = channel.recv_exit_status()
        while channel.recv_ready():  # what arrived with the exit status: the error's reason
            output += channel.recv(4096)
    finally:
        channel.close()
    if status != 0:
        tail = output.decode(errors="replace").strip()[-OUTPUT_TAIL:]
        raise ExportError(
            f"hooks: the {which} command exited {status}: {command}"
            + (f" ({tail})" if tail else ""),
        )
    log.info("hooks: %s command done: %s", which, command)


@contextmanager
def app_consistent(spec: HookSpec | None, warnings: list[str]) -> Iterator[None]:
    """Run the pre command, yield (the snapshot is taken), then the post command, always.

    A failing or hanging pre command raises after the post command ran: the body does not run.
    A failing post command is a warning (the snapshot is good; the instance needs a look).
    """
    if spec is None or not (spec.pre or spec.post):
        yield
        return
    client = _connect(spec)
    try:
        try:
            if spec.pre:
                run_command(client, "pre", spec.pre, spec.timeout)
            yield
        finally:
            if spec.post:
                try:
                    run_command(client, "post", spec.post, spec.timeout)
                except ExportError as exc:
                    log.error("%s", exc)
                    warnings.append(str(exc))
    finally:
        client.close()


__all__ = ["HookSpec", "app_consistent", "run_command"]
