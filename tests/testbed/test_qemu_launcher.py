"""The QEMU launcher's pure parts: command line, spec checks, accelerator choice, log tails."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from imagekit.errors import UsageError
from imagekit.providers.local import qemu
from imagekit.providers.local.qemu import VMSpec, qemu_argv


def argv_for(spec: VMSpec) -> list[str]:
    return qemu_argv(
        spec,
        accel="tcg",
        ports={80: 18080, 22: 12222},
        serial_log=Path("/tmp/x/serial.log"),
        pid_file=Path("/tmp/x/qemu.pid"),
    )


def option(argv: list[str], name: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == name]


def test_argv_boots_the_disk_read_only_with_its_format() -> None:
    argv = argv_for(VMSpec(Path("/images/web,1.qcow2"), disk_format="qcow2"))
    assert "-kernel" not in argv
    assert option(argv, "-drive") == [
        "file=/images/web,,1.qcow2,if=virtio,format=qcow2,snapshot=on"
    ]
    for flag in ("-nodefaults", "-nographic", "-no-reboot"):
        assert flag in argv
    assert option(argv, "-monitor") == ["none"]
    assert option(argv, "-serial") == ["file:/tmp/x/serial.log"]
    assert option(argv, "-pidfile") == ["/tmp/x/qemu.pid"]
    assert option(argv, "-accel") == ["tcg"]


def test_argv_forwards_only_loopback_ports_on_a_restricted_network() -> None:
    argv = argv_for(VMSpec(Path("d.raw"), guest_ports=(80, 22)))
    (netdev,) = option(argv, "-netdev")
    assert netdev == (
        "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:12222-:22,hostfwd=tcp:127.0.0.1:18080-:80"
    )
    assert "virtio-net-pci,netdev=n0,romfile=" in option(argv, "-device")


def test_argv_attaches_the_seed_as_a_cd() -> None:
    argv = argv_for(VMSpec(Path("d.raw"), seed=Path("/s/seed.iso")))
    assert "file=/s/seed.iso,if=ide,media=cdrom,format=raw" in option(argv, "-drive")


def test_spec_refuses_unknown_formats_and_repeated_ports() -> None:
    with pytest.raises(UsageError, match="vdi"):
        VMSpec(Path("d"), disk_format="vdi")
    with pytest.raises(UsageError, match="repeated"):
        VMSpec(Path("d"), guest_ports=(80, 80))


def test_accel_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(qemu.ACCEL_ENV, "KVM")
    assert qemu.detect_accel() == "kvm"
    monkeypatch.setenv(qemu.ACCEL_ENV, "tcg")
    assert qemu.detect_accel() == "tcg"
    monkeypatch.setenv(qemu.ACCEL_ENV, "hvf")
    with pytest.raises(UsageError, match="hvf"):
        qemu.detect_accel()


def test_probe_sector_is_a_boot_sector() -> None:
    assert len(qemu.PROBE_SECTOR) == 512
    assert qemu.PROBE_SECTOR.endswith(b"\x55\xaa")


def test_tail_drops_escape_codes_and_blank_lines(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    log.write_bytes(
        b"\x1bc\x1b[?7l\x1b[2JSeaBIOS\r\n\r\n" + b"".join(b"l%d\r\n" % i for i in range(30))
    )
    assert qemu.tail(log, 3) == "l27\nl28\nl29"
    assert qemu.tail(log, 100).startswith("SeaBIOS\nl0")
    assert qemu.tail(tmp_path / "missing") == ""


def test_free_ports_are_distinct_loopback_ports() -> None:
    ports = {qemu.free_port() for _ in range(5)}
    assert len(ports) == 5 and all(1024 < p < 65536 for p in ports)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which(qemu.QEMU) is None, reason="needs qemu-system-x86_64")
def test_probe_boot_runs_the_sector_under_tcg() -> None:
    # The same probe that vets KVM must succeed where emulation is known to work.
    assert qemu.probe_boot("tcg")
