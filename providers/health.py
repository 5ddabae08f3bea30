"""Health checks: the proof that a booted node serves, each with a deadline and a clear reason.

A check is parsed from the CLI's ``--health`` grammar (``parse_check``) into a frozen value; a
``HealthTarget`` tells the checks how to reach one node (which host:port answers for a guest
port, its serial console if the provider exposes one, whether it is still alive, SSH access).
``wait_healthy`` polls every check of every node until it passes or the shared deadline ends,
then raises ``HealthError`` naming the node, the check, the last reason and the console's tail.

    tcp:PORT                      a connection is accepted (see ``TcpCheck``)
    http:PORT/PATH[#STATUS][~TEXT]   GET answers STATUS (default 200), body contains TEXT
    https:PORT/PATH[#STATUS][~TEXT]  the same over TLS (the certificate is not verified)
    ssh:COMMAND                   COMMAND exits 0 over SSH, host key pinned when known
    serial:TEXT                   TEXT appears on the serial console
"""

from __future__ import annotations

import base64
import hashlib
import re
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import paramiko

from imagekit.errors import HealthError, UsageError
from imagekit.providers.console import SETTLE_GRACE, Finding, cause, diagnose

POLL = 0.25  # seconds between tries of a failing check: cheap probes, quick reaction
TRY_TIMEOUT = 2.0  # one HTTP/TCP try; NAT front ends accept before the guest answers
SSH_TRY_TIMEOUT = 5.0  # one SSH try: key exchange under emulation takes ~0.5 s
# A service that speaks first (SSH, SMTP) answers a fresh connection within this; silence after
# it means "listening, waits for the client" where a connect proves a listener.
BANNER_WAIT = 1.0
TAIL_LINES = 20  # console lines quoted in a failure: enough to see the last boot messages
# Reading the console is an API call on a cloud (GCE serial output, Azure boot diagnostics):
# look for a failure's cause there at this pace, not at every try.
DIAGNOSE_EVERY = 5.0
# The fragment of a URL is never sent to the server, so "#" is free to carry the status.
_HTTP = re.compile(r"^(?P<port>\d+)(?P<path>/[^#~]*)?(?:#(?P<status>\d{3}))?(?:~(?P<text>.+))?$")


@dataclass(frozen=True)
class TcpCheck:
    """A connection to ``port`` is accepted and not closed at once.

    Behind a NAT that accepts before the guest does (QEMU user networking), an open connection
    proves nothing; there the peer must speak first (an SSH banner) for the check to pass.
    """

    port: int

    def __str__(self) -> str:
        return f"tcp:{self.port}"


@dataclass(frozen=True)
class HttpCheck:
    port: int
    path: str = "/"
    tls: bool = False
    status: int = 200
    contains: str | None = None

    def __str__(self) -> str:
        text = f"{'https' if self.tls else 'http'}:{self.port}{self.path}"
        text += f"#{self.status}" if self.status != 200 else ""
        return text + (f"~{self.contains}" if self.contains is not None else "")


@dataclass(frozen=True)
class SshCheck:
    command: str

    def __str__(self) -> str:
        return f"ssh:{self.command}"


@dataclass(frozen=True)
class SerialCheck:
    text: str

    def __str__(self) -> str:
        return f"serial:{self.text}"


Check = TcpCheck | HttpCheck | SshCheck | SerialCheck


def _port(text: str, spec: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise UsageError(f"health check {spec!r}: {text!r} is not a TCP port")
    return int(text)


def parse_check(spec: str) -> Check:
    """A check from its ``--health`` form (grammar in the module docstring)."""
    kind, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise UsageError(
            f"health check {spec!r}: expected tcp:PORT, http:PORT/PATH, https:PORT/PATH, "
            "ssh:COMMAND or serial:TEXT"
        )
    if kind == "tcp":
        return TcpCheck(_port(rest, spec))
    if kind in ("http", "https"):
        match = _HTTP.match(rest)
        if match is None:
            raise UsageError(f"health check {spec!r}: expected {kind}:PORT/PATH[#STATUS][~TEXT]")
        return HttpCheck(
            port=_port(match["port"], spec),
            path=match["path"] or "/",
            tls=kind == "https",
            status=int(match["status"] or 200),
            contains=match["text"],
        )
    if kind == "ssh":
        return SshCheck(rest)
    if kind == "serial":
        return SerialCheck(rest)
    raise UsageError(
        f"health check {spec!r}: unknown kind {kind!r} (tcp, http, https, ssh, serial)"
    )


def guest_ports(checks: Sequence[Check]) -> set[int]:
    """The guest ports the checks need reachable (SSH is port 22)."""
    ports = {c.port for c in checks if isinstance(c, TcpCheck | HttpCheck)}
    return ports | ({22} if any(isinstance(c, SshCheck) for c in checks) else set())


# --- how checks reach a node --------------------------------------------------------------------


@dataclass(frozen=True)
class SshAccess:
    """Login for ``ssh:`` checks; ``host_key`` ("ssh-ed25519 AAAA…") pinned, None: trust on
    first use (the key seen is reported and flagged)."""

    user: str
    key_path: Path
    host_key: str | None = None


@dataclass(frozen=True)
class HealthTarget:
    """One node as the checks see it; the provider builds it."""

    name: str
    endpoint: Callable[[int], tuple[str, int]]  # guest port → (host, port) that reaches it
    console: Callable[[], str | None] = lambda: None  # serial console text; None: not exposed
    gone: Callable[[], str | None] = lambda: None  # why the node can no longer answer, or None
    ssh: SshAccess | None = None
    connect_proves_listener: bool = True  # False behind a NAT that accepts for the guest


@dataclass(frozen=True)
class CheckResult:
    node: str
    check: str
    seconds: float  # from the start of waiting until it passed
    detail: str = ""
    flagged: bool = False  # passed, but on weaker evidence than asked (host key not pinned)
    warnings: tuple[str, ...] = ()  # what the console showed although the check passed

    def as_dict(self) -> dict[str, object]:
        return {
            "node": self.node,
            "check": self.check,
            "seconds": round(self.seconds, 3),
            "detail": self.detail,
            "flagged": self.flagged,
            "warnings": list(self.warnings),
        }


class _Failed(Exception):
    """One try failed; ``final`` means retrying cannot help (a wrong host key)."""

    def __init__(self, reason: str, *, final: bool = False):
        super().__init__(reason)
        self.final = final


# --- one try of each check ----------------------------------------------------------------------


def _try_tcp(check: TcpCheck, target: HealthTarget, timeout: float) -> str:
    host, port = target.endpoint(check.port)
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(min(BANNER_WAIT, timeout))
            try:
                data = sock.recv(64)
            except TimeoutError:
                if target.connect_proves_listener:
                    return f"{host}:{port} accepted"
                raise _Failed(
                    f"{host}:{port} accepted but sent nothing (behind this NAT only a service "
                    "that speaks first proves it listens; use an http: or ssh: check)"
                ) from None
    except OSError as exc:
        raise _Failed(f"{host}:{port}: {exc.strerror or exc}") from exc
    if not data:
        raise _Failed(f"{host}:{port} closed the connection")
    return f"{host}:{port} answered {data.splitlines()[0][:40]!r}"


def _try_http(check: HttpCheck, target: HealthTarget, timeout: float) -> str:
    host, port = target.endpoint(check.port)
    url = f"{'https' if check.tls else 'http'}://{host}:{port}{check.path}"
    # A fresh node has a self-signed certificate at best: the check proves TLS service, not
    # identity, so verification is off.
    context = ssl._create_unverified_context() if check.tls else None
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            status, body = int(response.status), response.read(1 << 20)
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read(1 << 20)
    except (OSError, urllib.error.URLError) as exc:
        raise _Failed(f"GET {url}: {getattr(exc, 'reason', None) or exc}") from exc
    text = body.decode("utf-8", "replace")
    if status != check.status:
        raise _Failed(f"GET {url} answered {status}, expected {check.status}")
    if check.contains is not None and check.contains not in text:
        raise _Failed(f"GET {url}: body lacks {check.contains!r} (got {text[:80]!r})")
    return f"GET {url} → {status}"


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint of a public key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class _Remember(paramiko.MissingHostKeyPolicy):
    """Trust on first use: accept, and keep the key so the caller can report it."""

    def __init__(self) -> None:
        self.seen: paramiko.PKey | None = None

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        self.seen = key


_KEYS_BEGIN, _KEYS_END = "-----BEGIN SSH HOST KEY KEYS-----", "-----END SSH HOST KEY KEYS-----"
_HOST_KEY = re.compile(
    r"\b(ssh-ed25519|ecdsa-sha2-nistp(?:256|384|521)|ssh-rsa) ([A-Za-z0-9+/]+=*)"
)


def console_host_keys(console: str | None) -> list[str]:
    """The host keys cloud-init printed on the serial console ("TYPE BASE64" each).

    The console comes from the cloud's API, not from the network path to the node, so a key read
    there can be pinned: it is how a first SSH login to a new cloud VM avoids trusting blindly.
    Lines may carry prefixes (``ec2:``, timestamps); only the block between the markers counts.
    """
    if not console or _KEYS_BEGIN not in console:
        return []
    block = console.rsplit(_KEYS_BEGIN, 1)[1].split(_KEYS_END, 1)[0]
    return [f"{m[1]} {m[2]}" for m in _HOST_KEY.finditer(block)]


def _pin(client: paramiko.SSHClient, host: str, port: int, keys: Sequence[str]) -> None:
    name = host if port == 22 else f"[{host}]:{port}"
    for key in keys:
        key_type, _, blob = key.partition(" ")
        pinned = paramiko.PKey.from_type_string(key_type, base64.b64decode(blob.split()[0]))
        client.get_host_keys().add(name, key_type, pinned)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())


def _try_ssh(check: SshCheck, target: HealthTarget, timeout: float) -> tuple[str, bool]:
    access = target.ssh
    if access is None:
        raise _Failed("this node offers no SSH access (no key was given to it)", final=True)
    host, port = target.endpoint(22)
    client = paramiko.SSHClient()
    remember = _Remember()
    from_console = [] if access.host_key is not None else console_host_keys(target.console())
    if access.host_key is not None:
        _pin(client, host, port, [access.host_key])
    elif from_console:
        _pin(client, host, port, from_console)
    else:
        client.set_missing_host_key_policy(remember)
    try:
        client.connect(
            host,
            port=port,
            username=access.user,
            key_filename=str(access.key_path),
            look_for_keys=False,
            allow_agent=False,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
        )
        _, stdout, stderr = client.exec_command(check.command, timeout=timeout)
        channel = stdout.channel
        if not channel.status_event.wait(timeout):
            raise _Failed(f"ssh {check.command!r} still running after {timeout:g} s")
        status = channel.recv_exit_status()
        if status != 0:
            err = stderr.read(400).decode("utf-8", "replace").strip()
            raise _Failed(f"ssh {check.command!r} exited {status}" + (f": {err}" if err else ""))
    except paramiko.BadHostKeyException as exc:
        # The pinned key is the one the run offered in its user-data: a guest presenting
        # another never read that user-data (no datasource for this cloud, or none at all).
        offered = (
            "; the guest did not install the host key its user-data offered, so it never read"
            " that user-data"
            if access.host_key is not None
            else ""
        )
        raise _Failed(
            f"{host}:{port} presented host key {fingerprint(exc.key)}, not the pinned "
            f"{fingerprint(exc.expected_key)}: refusing to trust it{offered}",
            final=True,
        ) from exc
    except paramiko.AuthenticationException as exc:
        raise _Failed(f"ssh as {access.user} to {host}:{port}: key refused ({exc})") from exc
    except (OSError, EOFError, paramiko.SSHException) as exc:
        raise _Failed(f"ssh to {host}:{port}: {exc or type(exc).__name__}") from exc
    finally:
        client.close()
    if remember.seen is not None:
        return f"host key trusted on first use: {fingerprint(remember.seen)}", True
    how = "pinned from the serial console" if from_console else "pinned"
    return f"ssh {check.command!r} exited 0 (host key {how})", False


def _try_serial(check: SerialCheck, target: HealthTarget) -> str:
    console = target.console()
    if console is None:
        raise _Failed("this provider exposes no serial console", final=True)
    for line in console.splitlines():
        if check.text in line:
            return line.strip()
    raise _Failed(f"{check.text!r} not on the serial console yet")


def try_check(check: Check, target: HealthTarget, timeout: float) -> tuple[str, bool]:
    """One try: (detail, flagged) when it passes; ``_Failed`` with the reason when not."""
    if isinstance(check, TcpCheck):
        return _try_tcp(check, target, timeout), False
    if isinstance(check, HttpCheck):
        return _try_http(check, target, timeout), False
    if isinstance(check, SshCheck):
        return _try_ssh(check, target, timeout)
    return _try_serial(check, target), False


# --- waiting ------------------------------------------------------------------------------------


def console_tail(target: HealthTarget, lines: int = TAIL_LINES) -> str:
    text = target.console()
    if text is None:
        return ""
    kept = [line for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def _failure(
    target: HealthTarget, check: Check, what: str, findings: Sequence[Finding] = ()
) -> HealthError:
    message = f"node {target.name}: {check} {what}"
    why = cause(list(findings)) if findings and "cannot pass" not in what else None
    if why:
        message += f"\nlikely cause: {why}"
    console = target.console()
    if console is not None:
        kept = [line for line in console.splitlines() if line.strip()]
        tail = "\n".join(kept[-TAIL_LINES:])
        message += f"\n--- serial console (last lines) ---\n{tail or '(empty)'}"
    return HealthError(message)


def _console_or_none(target: HealthTarget) -> str | None:
    """The console for diagnosis only: a console the cloud cannot serve right now (an API
    error) must not fail a check that may still pass, so any error reads as no console."""
    try:
        return target.console()
    except Exception:
        return None


def wait_for(
    check: Check, target: HealthTarget, deadline: float, *, started: float | None = None
) -> CheckResult:
    """Retry ``check`` until it passes or ``deadline`` (``time.monotonic()``) passes.

    Between tries the console is read for the failure's cause (``console.py``): a fatal one
    ends the wait at once, a settled one (cloud-init gave up) after ``SETTLE_GRACE`` seconds.
    """
    started = time.monotonic() if started is None else started
    reason = "not tried"
    findings: list[Finding] = []
    next_look, settled_at = 0.0, None
    seen, grew_at = -1, time.monotonic()  # the console's length, and when it last grew
    while True:
        gone = target.gone()
        if gone is not None:
            raise _failure(target, check, f"cannot pass: {gone}", findings)
        remaining = deadline - time.monotonic()
        limit = SSH_TRY_TIMEOUT if isinstance(check, SshCheck) else TRY_TIMEOUT
        try:
            detail, flagged = try_check(check, target, max(0.2, min(limit, remaining)))
        except _Failed as exc:
            reason = str(exc)
            if exc.final:
                raise _failure(target, check, f"failed: {reason}", findings) from None
        else:
            return CheckResult(target.name, str(check), time.monotonic() - started, detail, flagged)
        now = time.monotonic()
        if now >= next_look:
            next_look = now + DIAGNOSE_EVERY
            console = _console_or_none(target)
            if console is not None and len(console) != seen:
                seen, grew_at = len(console), now
            findings = diagnose(console, idle=now - grew_at)
            fatal = next((f for f in findings if f.fatal), None)
            if fatal is not None:
                raise _failure(target, check, f"cannot pass: {fatal}; last try: {reason}")
            if settled_at is None and any(f.settled for f in findings):
                settled_at = now
        if settled_at is not None and now - settled_at >= SETTLE_GRACE:
            raise _failure(target, check, f"cannot pass: {cause(findings)}; last try: {reason}")
        if now + POLL >= deadline:
            waited = deadline - started
            raise _failure(target, check, f"not passing within {waited:.0f} s: {reason}", findings)
        time.sleep(POLL)


def wait_healthy(
    targets: Sequence[HealthTarget], checks: Sequence[Check], timeout: float
) -> list[CheckResult]:
    """Every check on every node, in order, all within one ``timeout`` (seconds) from now.

    Nodes boot in parallel, so checking them one after another costs no extra time. A node
    whose checks pass while its console shows a finding gets it as a warning on its last result.
    """
    started = time.monotonic()
    deadline = started + timeout
    results = []
    for target in targets:
        passed = [wait_for(check, target, deadline, started=started) for check in checks]
        found = diagnose(_console_or_none(target), passed=True)
        seen = tuple(f"{target.name}: {f}" for f in found)
        if passed and seen:
            passed[-1] = replace(passed[-1], warnings=seen)
        results += passed
    return results


__all__ = [
    "Check",
    "CheckResult",
    "HealthTarget",
    "HttpCheck",
    "SerialCheck",
    "SshAccess",
    "SshCheck",
    "TcpCheck",
    "console_tail",
    "fingerprint",
    "guest_ports",
    "parse_check",
    "try_check",
    "wait_for",
    "wait_healthy",
]
