"""Start, watch and stop one QEMU virtual machine: the edge the local provider builds on.

The guest always boots through its own disk's bootloader (never ``-kernel``), as it would on a
cloud, with user-mode networking restricted to port forwards on 127.0.0.1 and the disk opened
``snapshot=on`` so a boot never changes the image. Software emulation (TCG) is the default: KVM
is used only when a hardware KVM module is loaded *and* a probe boot works, because some hosts
offer a ``/dev/kvm`` (nested, paravirtual) that fails on ordinary guests.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

from imagekit.errors import HealthError, ProviderError, UsageError

Accel = Literal["tcg", "kvm"]
QEMU = "qemu-system-x86_64"
DISK_FORMATS = frozenset({"raw", "qcow2", "vmdk", "vpc", "vhdx"})  # what convert/ produces
ACCEL_ENV = "IMAGEKIT_QEMU_ACCEL"
READY_MARKER = "IMAGEKIT-READY"  # printed on ttyS0 by the test disk once it serves HTTP
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL; QEMU exits on SIGTERM within a second
TAIL_LINES = 20  # serial lines quoted in errors: enough to see the bootloader or kernel message
POLL = 0.1  # seconds between looks at the serial log / the process
# Working KVM (and TCG) run the probe in ~0.1-0.3 s; the nested paravirtual KVM described in
# the module docstring runs it too, but in ~3 s, as every port I/O traps slowly, and then fails
# on bootloaders. Too slow counts as failed: a false "no" only costs speed, a false "yes" hangs.
PROBE_TIMEOUT = 2.0
_ANSI = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|c)")  # SeaBIOS/syslinux clear the screen


@dataclass(frozen=True)
class VMSpec:
    """What to boot. Host ports for ``guest_ports`` are picked free on 127.0.0.1 at start."""

    disk: Path
    disk_format: str = "raw"
    seed: Path | None = None  # a NoCloud ISO (see seed.py), attached as a CD drive
    guest_ports: tuple[int, ...] = (80,)
    memory_mib: int = 256
    cpus: int = 1
    accel: Accel | None = None  # None: detect_accel()

    def __post_init__(self) -> None:
        if self.disk_format not in DISK_FORMATS:
            raise UsageError(
                f"unknown disk format {self.disk_format!r}: use one of {sorted(DISK_FORMATS)}"
            )
        if len(set(self.guest_ports)) != len(self.guest_ports):
            raise UsageError(f"guest ports repeated: {self.guest_ports}")


def drive_path(path: Path) -> str:
    # QEMU's option parser splits on commas; a doubled comma is a literal one.
    return str(path).replace(",", ",,")


def qemu_argv(
    spec: VMSpec,
    *,
    accel: Accel,
    ports: Mapping[int, int],
    serial_log: Path,
    pid_file: Path,
) -> list[str]:
    """The QEMU command line for ``spec``; ``ports`` maps guest port → host port."""
    forwards = "".join(
        f",hostfwd=tcp:127.0.0.1:{host}-:{guest}" for guest, host in sorted(ports.items())
    )
    argv = machine_argv(spec, accel=accel, serial_log=serial_log, pid_file=pid_file)
    argv += [
        "-drive",
        f"file={drive_path(spec.disk)},if=virtio,format={spec.disk_format},snapshot=on",
    ]
    if spec.seed is not None:
        argv += ["-drive", f"file={drive_path(spec.seed)},if=ide,media=cdrom,format=raw"]
    # restrict=on: the guest reaches nothing but the forwards; romfile=: no iPXE, the disk boots.
    argv += [
        "-netdev",
        f"user,id=n0,restrict=on{forwards}",
        "-device",
        "virtio-net-pci,netdev=n0,romfile=",
        *ENTROPY,
    ]
    return argv


OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")  # Debian's ovmf: UEFI firmware for QEMU
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")  # its empty variable store, copied per VM


def firmware_argv(firmware: str, vars_copy: Path) -> list[str]:
    """Nothing for BIOS (SeaBIOS is QEMU's default); OVMF as two flash drives for UEFI, the
    variable store a private copy at ``vars_copy`` (UEFI writes boot entries into it)."""
    if firmware == "bios":
        return []
    if firmware != "uefi":
        raise UsageError(f"unknown firmware {firmware!r}: bios or uefi")
    if not OVMF_CODE.is_file():
        raise ProviderError(
            f"{OVMF_CODE} not found: UEFI images need it", hint="apt-get install ovmf"
        )
    shutil.copyfile(OVMF_VARS, vars_copy)
    return [
        "-drive",
        f"if=pflash,format=raw,unit=0,readonly=on,file={drive_path(OVMF_CODE)}",
        "-drive",
        f"if=pflash,format=raw,unit=1,file={drive_path(vars_copy)}",
    ]


# An entropy source, as clouds give: without one an emulated guest's random pool takes about a
# second to seed, and sshd waits for it.
ENTROPY = ("-device", "virtio-rng-pci")


def machine_argv(spec: VMSpec, *, accel: Accel, serial_log: Path, pid_file: Path) -> list[str]:
    """QEMU's machine, memory, console and process options: everything but disks and NICs."""
    return [
        QEMU,
        "-nodefaults",
        "-nographic",
        "-monitor",
        "none",
        "-serial",
        f"file:{serial_log}",
        "-accel",
        accel,
        "-m",
        str(spec.memory_mib),
        "-smp",
        str(spec.cpus),
        "-no-reboot",  # a guest reboot or panic ends the VM instead of looping
        "-pidfile",
        str(pid_file),
    ]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks; QEMU binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _clean(text: str) -> str:
    return _ANSI.sub("", text).replace("\r", "")


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` non-empty lines of a log, without terminal escape codes."""
    try:
        text = _clean(path.read_bytes().decode("utf-8", "replace"))
    except FileNotFoundError:
        return ""
    kept = [line for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


# --- accelerator --------------------------------------------------------------------------------

# A boot sector that writes "KVMOK" to COM1 with port I/O and halts: real-mode code, the part
# a broken nested KVM fails on. mov dx,0x3f8 / (mov al,c / out dx,al)* / cli / hlt.
_PROBE_TEXT = b"\r\nKVMOK\r\n"  # on a line of its own: SeaBIOS leaves its line open
_PROBE_CODE = (
    b"\xba\xf8\x03"
    + b"".join(b"\xb0" + bytes([c]) + b"\xee" for c in _PROBE_TEXT)
    + b"\xfa\xf4\xeb\xfd"
)
PROBE_SECTOR = _PROBE_CODE.ljust(510, b"\0") + b"\x55\xaa"


def _hardware_kvm() -> bool:
    loaded = any(Path(f"/sys/module/{m}").exists() for m in ("kvm_intel", "kvm_amd"))
    return loaded and os.access("/dev/kvm", os.R_OK | os.W_OK)


def probe_boot(accel: Accel) -> bool:
    """Whether QEMU with ``accel`` runs a real-mode boot sector (PROBE_SECTOR) correctly.

    On a broken nested KVM the sector's output comes out garbled or QEMU reports "KVM internal
    error"; only the exact line counts as success.
    """
    with tempfile.TemporaryDirectory(prefix="imagekit-accel-probe-") as tmp:
        disk, log, err = (Path(tmp) / name for name in ("probe.img", "serial.log", "stderr"))
        disk.write_bytes(PROBE_SECTOR)
        argv = [QEMU, "-nodefaults", "-nographic", "-monitor", "none", "-accel", accel]
        argv += ["-m", "16", "-no-reboot", "-serial", f"file:{log}"]
        argv += ["-drive", f"file={drive_path(disk)},format=raw,if=ide"]
        expected = _PROBE_TEXT.decode().strip()
        with err.open("wb") as stderr:
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            deadline = time.monotonic() + PROBE_TIMEOUT
            while time.monotonic() < deadline and proc.poll() is None:
                if expected in tail(log).splitlines():
                    return True
                if "internal error" in err.read_text(errors="replace"):
                    return False
                time.sleep(POLL)
            return False
        finally:
            proc.kill()
            proc.wait()


def detect_accel() -> Accel:
    """``kvm`` if ``IMAGEKIT_QEMU_ACCEL`` says so, or hardware KVM is there and a probe boots."""
    forced = os.environ.get(ACCEL_ENV, "").strip().lower()
    if forced in ("tcg", "kvm"):
        return "kvm" if forced == "kvm" else "tcg"
    if forced:
        raise UsageError(f"{ACCEL_ENV}={forced!r}: use tcg or kvm")
    if shutil.which(QEMU) is None:
        raise ProviderError(f"{QEMU} not found", hint="apt-get install qemu-system-x86")
    return "kvm" if _hardware_kvm() and _kvm_probe() else "tcg"


@functools.cache
def _kvm_probe() -> bool:
    # Once per process: the answer cannot change while we run, and a probe costs ~0.3 s.
    return probe_boot("kvm")


# --- the running VM -----------------------------------------------------------------------------


class VM:
    """One QEMU process for ``spec``; files (serial log, pid, stderr) go to ``workdir``.

    Use as a context manager, or call ``start()`` and ``stop()``. Only the process started here
    is ever signalled.
    """

    def __init__(self, spec: VMSpec, workdir: Path) -> None:
        self.spec = spec
        self.workdir = Path(workdir)
        self.ports: dict[int, int] = {}  # guest port -> host port, once started
        self.accel: Accel | None = None
        self.started_at: float | None = None  # time.monotonic() at start, to time boots
        self._proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"VM(disk={self.spec.disk}, pid={self.pid}, ports={self.ports})"

    @property
    def serial_log(self) -> Path:
        return self.workdir / "serial.log"

    @property
    def pid_file(self) -> Path:
        return self.workdir / "qemu.pid"

    @property
    def stderr_log(self) -> Path:
        return self.workdir / "qemu.stderr"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, attempts: int = 3) -> VM:
        if self._proc is not None:
            raise ProviderError("this VM was already started")
        for path in (self.spec.disk, self.spec.seed):
            if path is not None and not path.is_file():
                raise UsageError(f"{path} does not exist")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.accel = self.spec.accel or detect_accel()
        for attempt in range(attempts):
            self.ports = {guest: free_port() for guest in self.spec.guest_ports}
            self.serial_log.unlink(missing_ok=True)
            argv = qemu_argv(
                self.spec,
                accel=self.accel,
                ports=self.ports,
                serial_log=self.serial_log,
                pid_file=self.pid_file,
            )
            with self.stderr_log.open("wb") as err:
                try:
                    self._proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
                except FileNotFoundError as exc:
                    raise ProviderError(
                        f"{QEMU} not found", hint="apt-get install qemu-system-x86"
                    ) from exc
            self.started_at = time.monotonic()
            # QEMU fails on a bad option or a taken port within a few hundred ms.
            try:
                self._proc.wait(timeout=0.3)
            except subprocess.TimeoutExpired:
                return self
            message = self.stderr_log.read_text(errors="replace").strip()
            self._proc = None
            # Another process took the picked port between our check and QEMU's bind: retry.
            if "host forwarding" in message and attempt + 1 < attempts:
                continue
            raise ProviderError(f"QEMU failed to start: {message or 'no message'}")
        raise AssertionError("unreachable")  # the loop returns or raises

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def host_port(self, guest_port: int) -> int:
        try:
            return self.ports[guest_port]
        except KeyError:
            raise UsageError(f"guest port {guest_port} is not forwarded") from None

    def serial_tail(self, lines: int = TAIL_LINES) -> str:
        return tail(self.serial_log, lines)

    def _failure(self, error: type[ProviderError], what: str) -> ProviderError:
        stderr = tail(self.stderr_log, 5)
        detail = f"\n--- serial console (last lines) ---\n{self.serial_tail() or '(empty)'}"
        if stderr:
            detail += f"\n--- qemu stderr ---\n{stderr}"
        return error(f"{what}{detail}")

    def _check_alive(self, waiting_for: str) -> None:
        if self._proc is None:
            raise ProviderError("the VM is not started")
        code = self._proc.poll()
        if code is not None:
            raise self._failure(HealthError, f"QEMU exited (status {code}) before {waiting_for}")

    def wait_for_marker(self, marker: str = READY_MARKER, timeout: float = 60.0) -> str:
        """The first serial line with ``marker``; HealthError with the tail at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                text = _clean(self.serial_log.read_bytes().decode("utf-8", "replace"))
            except FileNotFoundError:
                text = ""
            for line in text.splitlines():
                if marker in line:
                    return line.strip()
            self._check_alive(f"{marker!r} appeared on the serial console")
            if time.monotonic() >= deadline:
                raise self._failure(
                    HealthError, f"no {marker!r} on the serial console within {timeout:g} s"
                )
            time.sleep(POLL)

    def wait_for_http(
        self, path: str = "/health", *, guest_port: int = 80, timeout: float = 60.0
    ) -> bytes:
        """The body of the first 200 answer from the guest's HTTP server at ``path``.

        slirp accepts a forwarded connection before the guest listens, so each try has a short
        timeout and a refused or reset connection just means "not yet".
        """
        url = f"http://127.0.0.1:{self.host_port(guest_port)}{path}"
        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            self._check_alive(f"{url} answered")
            try:
                with urllib.request.urlopen(url, timeout=1.0) as response:
                    body: bytes = response.read()
                    return body
            except (OSError, urllib.error.URLError) as exc:
                last = str(exc)
            if time.monotonic() >= deadline:
                raise self._failure(HealthError, f"{url} not healthy within {timeout:g} s ({last})")
            time.sleep(POLL * 2)

    def wait(self, timeout: float) -> int:
        """Wait for QEMU to exit by itself (the guest powered off); its exit status."""
        if self._proc is None:
            raise ProviderError("the VM is not started")
        try:
            return self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise self._failure(
                ProviderError, f"QEMU still running {timeout:g} s after shutdown was asked"
            ) from None

    def stop(self, grace: float = STOP_GRACE) -> None:
        """Terminate this VM's QEMU (SIGTERM, then SIGKILL after ``grace`` seconds). Idempotent."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.pid_file.unlink(missing_ok=True)

    def __enter__(self) -> VM:
        return self.start() if self._proc is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


__all__ = [
    "DISK_FORMATS",
    "READY_MARKER",
    "VM",
    "Accel",
    "VMSpec",
    "detect_accel",
    "drive_path",
    "firmware_argv",
    "free_port",
    "machine_argv",
    "probe_boot",
    "qemu_argv",
    "tail",
]
