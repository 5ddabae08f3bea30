"""Health checks against real sockets and a real HTTP server on 127.0.0.1 (no QEMU)."""

from __future__ import annotations

import http.server
import itertools
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagekit.errors import HealthError, UsageError
from imagekit.providers.health import (
    HealthTarget,
    HttpCheck,
    SerialCheck,
    SshCheck,
    TcpCheck,
    guest_ports,
    parse_check,
    wait_for,
    wait_healthy,
)


@pytest.mark.parametrize(
    ("spec", "check"),
    [
        ("tcp:22", TcpCheck(22)),
        ("http:80/health~ok", HttpCheck(80, "/health", contains="ok")),
        ("https:8443/", HttpCheck(8443, "/", tls=True)),
        ("http:80", HttpCheck(80, "/")),
        ("http:80/ready#204", HttpCheck(80, "/ready", status=204)),
        (
            "http:80/a?b=c#301~moved here",
            HttpCheck(80, "/a?b=c", status=301, contains="moved here"),
        ),
        ("ssh:systemctl is-system-running", SshCheck("systemctl is-system-running")),
        ("serial:login: ", SerialCheck("login: ")),
    ],
)
def test_parse_check_round_trips(spec: str, check: object) -> None:
    assert parse_check(spec) == check
    assert parse_check(str(check)) == check


@pytest.mark.parametrize("spec", ["tcp", "tcp:", "tcp:0", "tcp:70000", "http:x/", "ftp:21", "ssh:"])
def test_parse_check_rejects(spec: str) -> None:
    with pytest.raises(UsageError, match="health check"):
        parse_check(spec)


def test_guest_ports_needed_by_checks() -> None:
    checks = [parse_check(c) for c in ("tcp:5432", "http:8080/", "ssh:true", "serial:x")]
    assert guest_ports(checks) == {5432, 8080, 22}


def _target(port: int, **kwargs: object) -> HealthTarget:
    return HealthTarget("n1", endpoint=lambda guest: ("127.0.0.1", port), **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, int]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock, sock.getsockname()[1]
    sock.close()


def _serve(sock: socket.socket, banner: bytes) -> None:
    def loop() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            if banner:
                conn.sendall(banner)
            time.sleep(1.5)
            conn.close()

    threading.Thread(target=loop, daemon=True).start()


def test_tcp_silent_listener_passes_only_where_a_connect_proves_it(
    listener: tuple[socket.socket, int],
) -> None:
    sock, port = listener
    _serve(sock, b"")
    assert wait_for(TcpCheck(port), _target(port), time.monotonic() + 5).detail.endswith("accepted")
    with pytest.raises(HealthError, match="sent nothing"):
        wait_for(TcpCheck(port), _target(port, connect_proves_listener=False), time.monotonic() + 1)


def test_tcp_banner_passes_behind_a_nat(listener: tuple[socket.socket, int]) -> None:
    sock, port = listener
    _serve(sock, b"SSH-2.0-test\r\n")
    result = wait_for(
        TcpCheck(port), _target(port, connect_proves_listener=False), time.monotonic() + 5
    )
    assert "SSH-2.0-test" in result.detail


def test_closed_port_fails_by_the_deadline_with_the_reason_and_console() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends
    target = _target(port, console=lambda: "line 1\n\x00\nkernel: last words\n")
    started = time.monotonic()
    with pytest.raises(HealthError) as info:
        wait_healthy([target], [TcpCheck(port)], timeout=1.0)
    assert 0.7 < time.monotonic() - started < 3
    text = str(info.value)
    assert f"node n1: tcp:{port} not passing within 1 s" in text and "refused" in text
    assert text.endswith("--- serial console (last lines) ---\nline 1\n\x00\nkernel: last words")


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status, body = {"/health": (200, b"ok web-1\n"), "/made": (201, b"")}.get(
            self.path, (404, b"nope")
        )
        self.send_response(status)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def http_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_http_checks_status_and_body(http_port: int) -> None:
    target = _target(http_port)
    soon = time.monotonic() + 2
    assert "→ 200" in wait_for(parse_check(f"http:{http_port}/health~ok web"), target, soon).detail
    assert "→ 201" in wait_for(parse_check(f"http:{http_port}/made#201"), target, soon).detail
    with pytest.raises(HealthError, match="answered 404, expected 200"):
        wait_for(parse_check(f"http:{http_port}/missing"), target, time.monotonic() + 0.5)
    with pytest.raises(HealthError, match="body lacks 'ready'"):
        wait_for(parse_check(f"http:{http_port}/health~ready"), target, time.monotonic() + 0.5)


def test_checks_that_cannot_pass_fail_at_once_not_at_the_deadline(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(HealthError, match="exposes no serial console"):
        wait_for(SerialCheck("READY"), _target(1), started + 30)
    with pytest.raises(HealthError, match="offers no SSH access"):
        wait_for(SshCheck("true"), _target(1), started + 30)
    with pytest.raises(HealthError, match="cannot pass: QEMU exited"):
        wait_for(TcpCheck(1), _target(1, gone=lambda: "QEMU exited"), started + 30)
    assert time.monotonic() - started < 2


def test_serial_check_reads_the_console() -> None:
    # The console grows; between tries it is also read for a failure's cause.
    lines = itertools.chain(["booting"], itertools.repeat("booting\nIMAGEKIT-READY hostname=a"))
    target = _target(1, console=lambda: next(lines))
    result = wait_for(SerialCheck("IMAGEKIT-READY"), target, time.monotonic() + 5)
    assert result.detail == "IMAGEKIT-READY hostname=a"


PANIC = "[ 2.1] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)"
FALLBACK = (
    "[ 97.9] cloud-init[379]: Cloud-init v. 22.4.2 finished. Datasource DataSourceNone.  Up 97 s"
)


def test_a_fatal_console_line_fails_the_check_at_once_naming_it() -> None:
    started = time.monotonic()
    with pytest.raises(HealthError, match="cannot pass: the guest kernel panicked"):
        wait_for(SerialCheck("READY"), _target(1, console=lambda: PANIC), started + 60)
    assert time.monotonic() - started < 2


def test_a_settled_console_fails_after_the_grace_not_the_deadline(monkeypatch) -> None:
    from imagekit.providers import health

    monkeypatch.setattr(health, "SETTLE_GRACE", 0.5)
    monkeypatch.setattr(health, "DIAGNOSE_EVERY", 0.1)
    started = time.monotonic()
    with pytest.raises(HealthError, match="fell back to none") as failure:
        wait_for(TcpCheck(1), _target(1, console=lambda: FALLBACK), started + 60)
    assert time.monotonic() - started < 5
    assert "DataSourceNone" in str(failure.value)


def test_a_timeout_names_the_likely_cause_from_the_console() -> None:
    gave_up = "DataSourceEc2.py[CRITICAL]: Giving up on md from ['http://169.254.169.254/']"
    with pytest.raises(HealthError, match="likely cause: the guest could not reach the metadata"):
        wait_for(TcpCheck(1), _target(1, console=lambda: gave_up), time.monotonic() + 0.5)


def test_passing_checks_carry_console_findings_as_warnings(
    listener: tuple[socket.socket, int],
) -> None:
    sock, port = listener
    _serve(sock, b"SSH-2.0-test\r\n")
    targets = [_target(port, console=lambda: FALLBACK)]
    (result,) = wait_healthy(targets, [TcpCheck(22)], timeout=5)
    assert result.warnings and "fell back to none" in result.warnings[0]
    clean = [_target(port, console=lambda: "Cloud-init finished. Datasource DataSourceGCE.")]
    assert wait_healthy(clean, [TcpCheck(22)], timeout=5)[0].warnings == ()
