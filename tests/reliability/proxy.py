"""A fault-injecting HTTP proxy on 127.0.0.1, in front of an emulator (moto's S3, Azurite).

The store talks to the proxy as its endpoint; the proxy forwards each request to the real
server and, when the schedule says so, breaks the exchange the way networks and clouds do:
an error status or a throttling answer instead of the server's, added latency, the response
cut off mid-body with the connection reset, a body shorter than its ``Content-Length``, or a
slow drip. One request per connection (``Connection: close`` both ways) keeps the framing
simple and gives every request its own fault.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

#: What a cloud answers when it throttles or fails, per kind (status, S3 code, body).
ANSWERS = {
    "500": (500, b"<Error><Code>InternalError</Code><Message>injected</Message></Error>"),
    "503": (503, b"<Error><Code>ServiceUnavailable</Code><Message>injected</Message></Error>"),
    "slowdown": (503, b"<Error><Code>SlowDown</Code><Message>injected</Message></Error>"),
    "busy": (503, b"<Error><Code>ServerBusy</Code><Message>injected</Message></Error>"),
    "429": (429, b"<Error><Code>TooManyRequests</Code><Message>injected</Message></Error>"),
}
FAULTS = [*ANSWERS, "reset", "truncate", "latency", "drip"]


@dataclass
class Schedule:
    """Which requests get which fault: request ``n`` (from 1) is faulted with probability
    ``rate``, the kind drawn from ``kinds``; seeded, so a case reruns the same way."""

    seed: int
    kinds: list[str]
    rate: float = 0.25
    #: Requests (numbers, from 1) that all fail: an outage longer than the retries last.
    outage: range = range(0)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self.injected: list[tuple[int, str, str]] = []  # (request number, fault, request line)
        self.count = 0
        self.enabled = True

    def next(self, request_line: str) -> str | None:
        with self._lock:
            self.count += 1
            if not self.enabled:
                return None
            if self.count not in self.outage and self._rng.random() >= self.rate:
                return None
            fault = self._rng.choice(self.kinds)
            self.injected.append((self.count, fault, request_line))
            return fault


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            raise ConnectionError("closed before the headers ended")
        data += piece
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


def _closing(head: bytes) -> bytes:
    """The head with ``Connection: close`` (one exchange per connection)."""
    lines = [ln for ln in head.split(b"\r\n") if not ln.lower().startswith(b"connection:")]
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n"


def _reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN: what a dropped connection looks like to the client."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class FaultProxy:
    """``with FaultProxy(upstream_port, schedule) as proxy:`` → ``proxy.endpoint``."""

    def __init__(self, upstream_port: int, schedule: Schedule):
        self.upstream_port = upstream_port
        self.schedule = schedule
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self.port = self._server.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        # Closing a listening socket does not wake a thread blocked in accept; shutting it
        # down does.
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            self._exchange(client)
        except OSError:
            pass
        finally:
            client.close()

    def _exchange(self, client: socket.socket) -> None:
        head, body = _read_head(client)
        length = _content_length(head)
        while len(body) < length:
            piece = client.recv(min(1 << 20, length - len(body)))
            if not piece:
                return
            body += piece
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        fault = self.schedule.next(request_line)
        if fault in ANSWERS:
            status, payload = ANSWERS[fault]
            client.sendall(
                b"HTTP/1.1 %d Injected\r\nContent-Type: application/xml\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n"
                % (status, len(payload))
                + payload
            )
            return
        if fault == "latency":
            time.sleep(0.5)
        with socket.create_connection(("127.0.0.1", self.upstream_port)) as upstream:
            upstream.sendall(_closing(head) + body)
            response = b""
            while piece := upstream.recv(1 << 20):
                response += piece
        self._answer(client, response, fault)

    def _answer(self, client: socket.socket, response: bytes, fault: str | None) -> None:
        head, _, payload = response.partition(b"\r\n\r\n")
        whole = _closing(head) + payload
        if fault == "reset":
            client.sendall(whole[: len(_closing(head)) + len(payload) // 2])
            _reset(client)
        elif fault == "truncate":
            client.sendall(whole[: len(_closing(head)) + len(payload) // 2])
            client.shutdown(socket.SHUT_WR)  # a clean close, the body short of its length
        elif fault == "drip":
            send: Callable[[bytes], object] = client.sendall
            for start in range(0, len(whole), 4096):
                send(whole[start : start + 4096])
                time.sleep(0.001)
        else:
            client.sendall(whole)


__all__ = ["FAULTS", "FaultProxy", "Schedule"]
