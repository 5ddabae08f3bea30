"""Start a local server process on a free 127.0.0.1 port, wait until it answers, stop it by PID.

Every emulator of the bench (moto, Azurite) goes through ``ServerProcess`` so that each is bound to
loopback, logged to a file, and ended by the PID we started — never by name.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

# One way to pick a loopback port, the product's (a test package may depend on the product).
from imagekit.providers.local.qemu import free_port as free_port

# One way to pick a loopback port, the product's (a test package may depend on the product).


def wait_for_port(port: int, deadline: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Block until something accepts on 127.0.0.1:port, the process dies, or the deadline passes."""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


class ServerProcess:
    """A child server process in its own session (so its own children die with it)."""

    def __init__(
        self,
        argv: Sequence[str],
        port: int,
        log_path: Path,
        env: dict[str, str] | None = None,
        ready_timeout: float = 30.0,
    ):
        self.argv = list(argv)
        self.port = port
        self.log_path = log_path
        self.env = env
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        env = dict(os.environ)
        env.update(self.env or {})
        self.proc = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        log.close()
        try:
            wait_for_port(self.port, time.monotonic() + self.ready_timeout, self.proc)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.argv[0]} did not start: {exc}\n{tail}") from exc
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """End the process group we started (by its PID), politely first."""
        if self.proc is None or self.proc.poll() is not None:
            return
        pgid = self.proc.pid  # start_new_session made the child its group leader
        try:
            os.killpg(pgid, signal.SIGTERM)
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
