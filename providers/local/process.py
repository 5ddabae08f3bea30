"""QEMU processes that outlive the command that started them, found again by their pid files.

``qemu.VM`` owns its process for one Python session. A local node must keep running after
``imagekit boot`` exits, until ``imagekit teardown`` — possibly another process — stops it. So
QEMU is started in its own session (a Ctrl-C or hang-up of the terminal does not reach it), and
later signalled by the pid QEMU wrote, but only after ``/proc/PID/cmdline`` shows it is still
that node's QEMU: pids are reused, and other QEMUs run on the same machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from imagekit.errors import ProviderError
from imagekit.providers.local.qemu import QEMU, free_port, tail

START_CHECK = 0.3  # QEMU fails on a bad option or a taken port within this many seconds
STOP_GRACE = 5.0  # SIGTERM → SIGKILL; QEMU exits on SIGTERM within a second
KILL_WAIT = 5.0  # after SIGKILL the kernel needs a moment to release the ports
POLL = 0.05
START_ATTEMPTS = 3  # another process may take a picked port before QEMU binds it

# Children started by this process, kept so they can be reaped (no zombies, no warnings).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class Launched:
    pid: int
    ports: Mapping[int, int]  # guest port → host port on 127.0.0.1
    argv: tuple[str, ...]


def launch(
    argv_for: Callable[[Mapping[int, int]], Sequence[str]],
    guest_ports: Sequence[int],
    stderr_log: Path,
) -> Launched:
    """Start QEMU detached; ``argv_for(ports)`` builds its command line for picked host ports."""
    for attempt in range(START_ATTEMPTS):
        ports = {guest: free_port() for guest in guest_ports}
        argv = tuple(argv_for(ports))
        with stderr_log.open("wb") as err:
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    start_new_session=True,
                )
            except FileNotFoundError as exc:
                raise ProviderError(
                    f"{QEMU} not found", hint="apt-get install qemu-system-x86"
                ) from exc
        try:
            proc.wait(timeout=START_CHECK)
        except subprocess.TimeoutExpired:
            _CHILDREN[proc.pid] = proc
            return Launched(proc.pid, ports, argv)
        message = stderr_log.read_text(errors="replace").strip()
        if "host forwarding" in message and attempt + 1 < START_ATTEMPTS:
            continue
        raise ProviderError(f"QEMU failed to start: {message or 'no message'}")
    raise AssertionError("unreachable")  # the loop returns or raises


def adopt(proc: subprocess.Popen[bytes]) -> None:
    """Keep a detached child started elsewhere (a twin's supervisor) so it is reaped too."""
    _CHILDREN[proc.pid] = proc


def _reap(pid: int) -> None:
    proc = _CHILDREN.get(pid)
    if proc is not None and proc.poll() is not None:
        del _CHILDREN[pid]


def is_running(pid: int, marker: str) -> bool:
    """Whether ``pid`` is a live process whose command line contains ``marker``.

    A zombie has an empty command line, so an exited-but-unreaped QEMU counts as gone.
    """
    _reap(pid)
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return marker in cmdline.replace(b"\0", b" ").decode("utf-8", "replace")


def _wait_gone(pid: int, marker: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while is_running(pid, marker):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL)
    return True


def stop(pid: int, marker: str, grace: float = STOP_GRACE) -> bool:
    """Stop the QEMU ``pid`` if it is still the one with ``marker``: True if it was running."""
    if not is_running(pid, marker):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, marker, grace):
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    except PermissionError as exc:
        raise ProviderError(f"cannot signal QEMU pid {pid}: {exc}") from exc
    if not _wait_gone(pid, marker, KILL_WAIT):
        raise ProviderError(f"QEMU pid {pid} survived SIGKILL")
    return True


def exit_reason(stderr_log: Path) -> str:
    """Why a QEMU ended, from its stderr: the last few lines, or a generic phrase."""
    return tail(stderr_log, 3) or "QEMU is no longer running"


__all__ = ["Launched", "adopt", "exit_reason", "is_running", "launch", "stop"]
