"""``imagekit convert`` with real qemu-img: every target written, validated, and round-tripped."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from imagekit.cli import main
from imagekit.convert import convert_image, gce, qemu_img
from imagekit.convert.targets import TARGETS, GiB, MiB
from imagekit.errors import ConvertError, InputError, UsageError
from imagekit.fsutil import allocated_bytes, check_free_space

#: Not a whole MiB, so vhd-azure and gce must round the size up.
DISK_SIZE = 20 * MiB + 3 * 512

#: Where the synthetic disk holds data; everything else is a hole.
DATA_AT = (0, 1 * MiB + 512, 7 * MiB, 19 * MiB)


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("src") / "disk.raw"
    rng = random.Random(42)
    with path.open("wb") as handle:
        handle.truncate(DISK_SIZE)
        for offset in DATA_AT:
            handle.seek(offset)
            handle.write(rng.randbytes(300 * 1024))
        handle.seek(DISK_SIZE - 512)
        handle.write(b"\xee" * 512)  # the last sector, to catch truncation in round trips
    return path


def read_back_raw(image: Path, target: str, work: Path) -> Path:
    """Convert a target output back to raw the way a user would."""
    if target == "gce":
        return gce.unpack(image, work)
    back = work / "back.raw"
    source_format = TARGETS[target].qemu_format
    convert_image(image, back, "raw", source_format=source_format)
    return back


@pytest.mark.parametrize("target", list(TARGETS))
def test_each_target_is_valid_and_round_trips(disk: Path, tmp_path: Path, target: str) -> None:
    dst = tmp_path / f"out{TARGETS[target].suffix}"
    result = convert_image(disk, dst, target)
    assert result.output == dst and dst.is_file()
    assert [p.name for p in tmp_path.iterdir()] == [dst.name], "staging folder left behind"

    back = read_back_raw(dst, target, tmp_path)
    original = disk.read_bytes()
    restored = back.read_bytes()
    # Byte-exact over the source's size; anything the target added is zeros.
    assert restored[: len(original)] == original
    assert restored[len(original) :].count(0) == len(restored) - len(original)
    expected_size = {"vhd-azure": 21 * MiB, "gce": GiB}.get(target, DISK_SIZE)
    assert len(restored) == expected_size
    assert allocated_bytes(back) < 4 * MiB, "round trip lost sparseness"


def test_vhd_azure_file_is_whole_mib_plus_footer(disk: Path, tmp_path: Path) -> None:
    dst = tmp_path / "a.vhd"
    convert_image(disk, dst, "vhd-azure")
    assert dst.stat().st_size == 21 * MiB + 512
    assert qemu_img.info(dst, "vpc").virtual_size == 21 * MiB


def test_vmdk_is_stream_optimized(disk: Path, tmp_path: Path) -> None:
    dst = tmp_path / "a.vmdk"
    convert_image(disk, dst, "vmdk")
    assert qemu_img.info(dst, "vmdk").subformat == "streamOptimized"


def test_compressed_qcow2_is_smaller(disk: Path, tmp_path: Path) -> None:
    zeros = tmp_path / "zeros.raw"
    with zeros.open("wb") as handle:
        handle.write(b"imagekit " * 200_000)  # compressible data
        handle.truncate(4 * MiB)
    plain, packed = tmp_path / "p.qcow2", tmp_path / "c.qcow2"
    convert_image(zeros, plain, "qcow2")
    convert_image(zeros, packed, "qcow2", compress=True)
    assert packed.stat().st_size < plain.stat().st_size / 4


def test_qcow2_input_is_read(disk: Path, tmp_path: Path) -> None:
    q = tmp_path / "in.qcow2"
    convert_image(disk, q, "qcow2")
    out = tmp_path / "o.raw"
    result = convert_image(q, out, "raw")
    assert result.source_format == "qcow2"
    assert out.read_bytes() == disk.read_bytes()


# --- bad input: one line on stderr, exit 2, nothing written ------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["convert", *args])
    err = capsys.readouterr().err.strip()
    return code, err


def assert_clean(folder: Path, allowed: set[str]) -> None:
    assert {p.name for p in folder.iterdir()} == allowed


def test_missing_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(
        capsys, str(tmp_path / "nope.raw"), "-o", str(tmp_path / "o"), "--target", "raw"
    )
    assert code == 2
    assert err == f"imagekit: error: {tmp_path / 'nope.raw'}: no such file"
    assert_clean(tmp_path, set())


def test_not_a_disk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("this is not a disk image\n")
    code, err = run_cli(capsys, str(junk), "-o", str(tmp_path / "o.raw"), "--target", "raw")
    assert code == 2
    assert "not a disk image" in err and len(err.splitlines()) == 1
    assert_clean(tmp_path, {"notes.txt"})


@pytest.mark.parametrize("fmt", ["qcow2", "vmdk"])
def test_truncated_input(
    disk: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    whole = tmp_path / f"whole.{fmt}"
    convert_image(disk, whole, fmt)
    cut = tmp_path / f"cut.{fmt}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    whole.unlink()
    code, err = run_cli(capsys, str(cut), "-o", str(tmp_path / "o.raw"), "--target", "vhdx")
    assert code == 2
    assert "corrupt or truncated" in err and len(err.splitlines()) == 1
    assert_clean(tmp_path, {cut.name})


def test_existing_output_needs_force(
    disk: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dst = tmp_path / "o.raw"
    dst.write_bytes(b"precious")
    code, err = run_cli(capsys, str(disk), "-o", str(dst), "--target", "raw")
    assert code == 2 and "--force" in err
    assert dst.read_bytes() == b"precious"
    assert main(["convert", str(disk), "-o", str(dst), "--target", "raw", "--force"]) == 0
    assert dst.read_bytes() == disk.read_bytes()


def test_compress_only_for_qcow2(disk: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--compress"):
        convert_image(disk, tmp_path / "o.vhdx", "vhdx", compress=True)


def test_free_space_is_checked_before_work(tmp_path: Path) -> None:
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    check_free_space(tmp_path, 1)
    with pytest.raises(UsageError, match="MiB free"):
        check_free_space(tmp_path, free + 2**40)


def test_qemu_img_failure_carries_argv_code_and_stderr(tmp_path: Path) -> None:
    with pytest.raises(qemu_img.QemuImgFailed) as err:
        qemu_img.run(["info", "-f", "qcow2", str(tmp_path / "absent.qcow2")])
    assert err.value.returncode == 1
    assert err.value.argv[1:] == ["info", "-f", "qcow2", str(tmp_path / "absent.qcow2")]
    assert any("absent.qcow2" in line for line in err.value.stderr_tail)
    assert isinstance(err.value, ConvertError)


def test_wrong_source_format_is_input_error(disk: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a readable disk image"):
        convert_image(disk, tmp_path / "o.raw", "raw", source_format="qcow2")


class RecordingProgress:
    """Records what the library reports, to check qemu-img -p parsing end to end."""

    visible = True

    def __init__(self) -> None:
        self.started: list[tuple[str, float | None]] = []
        self.updates: list[float] = []
        self.finished = 0

    def start(self, description: str, total: float | None) -> None:
        self.started.append((description, total))

    def update(self, completed: float) -> None:
        self.updates.append(completed)

    def advance(self, amount: float) -> None:
        self.updates.append((self.updates[-1] if self.updates else 0) + amount)

    def finish(self) -> None:
        self.finished += 1


def test_progress_is_parsed_from_qemu_img(disk: Path, tmp_path: Path) -> None:
    bar = RecordingProgress()
    convert_image(disk, tmp_path / "o.qcow2", "qcow2", progress=bar)
    assert bar.started == [("convert → qcow2", float(DISK_SIZE))]
    assert bar.updates, "no progress line was parsed"
    assert bar.updates == sorted(bar.updates)
    assert bar.updates[-1] == pytest.approx(DISK_SIZE)
    assert bar.finished == 1
