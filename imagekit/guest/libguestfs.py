"""The edge of the guest stage: a libguestfs session through the agent program.

``GuestfsSession`` starts ``agent.py`` under the system Python (where Debian's
``python3-guestfs`` lives), opens the disks once, and passes requests and answers as JSON lines.
Everything the agent prints on stderr (libguestfs and supermin) goes to a log file, whose last
lines are quoted when something fails.

Environment, set for the agent only:

- ``LIBGUESTFS_BACKEND=direct``: QEMU started by libguestfs itself (no libvirt daemon);
- ``LIBGUESTFS_BACKEND_SETTINGS=force_tcg`` unless the caller found KVM usable (the nested
  paravirtual KVM some hosts offer hangs libguestfs silently);
- ``SUPERMIN_KERNEL``/``SUPERMIN_MODULES`` from ``IMAGEKIT_GUESTFS_KERNEL`` (a folder holding
  ``boot/vmlinuz-*`` and ``lib/modules/<version>``) when the host has no kernel in /boot, as in
  containers: supermin builds its appliance from a kernel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from imagekit.errors import GuestError

AGENT = Path(__file__).with_name("agent.py")
PYTHON_ENV = "IMAGEKIT_GUESTFS_PYTHON"
KERNEL_ENV = "IMAGEKIT_GUESTFS_KERNEL"
#: The system interpreter Debian's python3-guestfs is built for.
SYSTEM_PYTHON = "/usr/bin/python3"
INSTALL_HINT = "apt-get install libguestfs-tools python3-guestfs (Debian/Ubuntu)"
#: 768 MiB: update-initramfs with zstd in the appliance needs more than libguestfs's default.
MEMSIZE = 768
#: Formats libguestfs (through QEMU) writes in place; the others are adapted as raw first.
WRITABLE_FORMATS = frozenset({"raw", "qcow2", "vpc", "vhdx"})


def kernel_environment(folder: Path) -> dict[str, str]:
    """``SUPERMIN_KERNEL``/``SUPERMIN_MODULES`` for a kernel unpacked into ``folder``."""
    kernels = sorted(folder.glob("boot/vmlinuz-*"))
    if not kernels:
        raise GuestError(
            f"{KERNEL_ENV}={folder}: no boot/vmlinuz-* in it",
            hint="unpack a kernel package there (see docs/guests.md)",
        )
    version = kernels[-1].name[len("vmlinuz-") :]
    modules = folder / "lib" / "modules" / version
    if not (modules / "modules.dep").is_file():
        raise GuestError(
            f"{KERNEL_ENV}={folder}: {modules}/modules.dep is missing",
            hint=f"run depmod -b {folder} {version}",
        )
    return {"SUPERMIN_KERNEL": str(kernels[-1]), "SUPERMIN_MODULES": str(modules)}


def agent_environment(accel: str) -> dict[str, str]:
    env = dict(os.environ)
    env["LIBGUESTFS_BACKEND"] = "direct"
    if accel != "kvm":
        env["LIBGUESTFS_BACKEND_SETTINGS"] = "force_tcg"
    folder = os.environ.get(KERNEL_ENV)
    if folder and "SUPERMIN_KERNEL" not in os.environ:
        env.update(kernel_environment(Path(folder)))
    return env


class GuestfsSession:
    """One appliance over ``disks`` ((path, qemu format) pairs, the boot disk first)."""

    def __init__(
        self,
        disks: Sequence[tuple[Path, str]],
        *,
        writable: bool,
        log: Path,
        accel: str = "tcg",
    ):
        self.disks = [(Path(p), f) for p, f in disks]
        self.writable = writable
        self.log = log
        self.accel = accel
        self._proc: subprocess.Popen[str] | None = None
        self._log_file: IO[bytes] | None = None
        self.launch_seconds = 0.0

    def __enter__(self) -> GuestfsSession:
        python = os.environ.get(PYTHON_ENV, SYSTEM_PYTHON)
        if shutil.which(python) is None:
            raise GuestError(f"inspecting a guest needs {python}", hint=INSTALL_HINT)
        for path, fmt in self.disks:
            if self.writable and fmt not in WRITABLE_FORMATS:
                raise GuestError(f"{path}: libguestfs cannot write {fmt} disks in place")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log, "ab")  # closed in _stop
        self._proc = subprocess.Popen(
            [python, "-I", str(AGENT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            text=True,
            env=agent_environment(self.accel),
        )
        try:
            answer = self.request(
                "open",
                disks=[{"path": str(p), "format": f} for p, f in self.disks],
                writable=self.writable,
                memsize=MEMSIZE,
            )
        except BaseException:
            self._stop()
            raise
        self.launch_seconds = float(answer.get("seconds", 0.0))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None and self._proc is not None and self._proc.poll() is None:
                self.request("close")  # flushes what was written to the disk files
        finally:
            self._stop()

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.stdin:
                proc.stdin.close()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()  # our own child, by its handle
                proc.wait()
            if proc.stdout:
                proc.stdout.close()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def _tail(self) -> str:
        try:
            lines = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdout is None:
            raise GuestError("the libguestfs session is not open")
        try:
            proc.stdin.write(json.dumps({"op": op, **fields}) + "\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
        except (BrokenPipeError, OSError) as exc:
            raise GuestError(f"libguestfs agent stopped: {self._tail() or exc}") from exc
        if not line:
            tail = self._tail()
            hint = INSTALL_HINT if "guestfs" in tail and "No module" in tail else None
            raise GuestError(
                f"libguestfs agent stopped during {op}: {tail or 'no output'} (log {self.log})",
                hint=hint,
            )
        answer: dict[str, Any] = json.loads(line)
        if not answer.get("ok"):
            error = answer.get("error") or "failed"
            raise GuestError(f"libguestfs {op}: {error} (log {self.log})", hint=_hint(error))
        return answer

    def inspect(self) -> dict[str, Any]:
        facts: dict[str, Any] = self.request("inspect")["facts"]
        return facts

    def apply(self, edits: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        applied: list[dict[str, Any]] = self.request("apply", edits=list(edits))["applied"]
        return applied


def _hint(error: str) -> str | None:
    if "supermin" in error or "kernel" in error.lower():
        return (
            "libguestfs needs a kernel to build its appliance: install linux-image-amd64, or "
            f"set {KERNEL_ENV} to an unpacked kernel (docs/guests.md)"
        )
    return None


__all__ = ["KERNEL_ENV", "WRITABLE_FORMATS", "GuestfsSession", "agent_environment"]
