"""Bad input: hostile and broken disks, keys, plans and store URLs, and a full disk.

Each case runs the CLI as a user would and holds it to the same promise: one line on stderr
(``imagekit: error: …``, no traceback), the documented exit code (2 for what the user gave,
1 for an operation that failed: ``imagekit/errors.py``), nothing partial left where the output
was to go or in the temporary directory, and the store untouched.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imagekit.store.identity import Identity, write_identity
from tests.reliability.bench import PASSPHRASE, ingest, init_store, make_disk, run_cli


def _qemu_img(*args: object) -> None:
    subprocess.run(["qemu-img", *map(str, args)], check=True, capture_output=True)


def _qcow2(path: Path, size: str = "8M", *extra: object) -> Path:
    _qemu_img("create", "-f", "qcow2", *extra, path, size)
    return path


def _backing_to_host_file(tmp: Path) -> Path:
    secret = tmp / "host-secret.raw"
    secret.write_bytes(b"host secret " * 4096)
    secret.write_bytes(secret.read_bytes()[: 48 * 1024])
    return _qcow2(tmp / "backed.qcow2", "1M", "-b", secret, "-F", "raw")


def _vmdk_naming_a_host_file(tmp: Path) -> Path:
    """A VMDK descriptor whose extent is a file of the host: qemu-img would read it."""
    secret = tmp / "host-secret.bin"
    secret.write_bytes(b"host secret " * 512)
    secret.write_bytes(secret.read_bytes()[:4096])
    path = tmp / "descriptor.vmdk"
    path.write_text(
        "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n"
        f'createType="monolithicFlat"\n\nRW 8 FLAT "{secret}" 0\n'
    )
    return path


def _header_claims_more(tmp: Path) -> Path:
    """A qcow2 whose header's size field was rewritten to 2^62 bytes."""
    path = _qcow2(tmp / "forged.qcow2")
    data = bytearray(path.read_bytes())
    data[24:32] = (1 << 62).to_bytes(8, "big")
    path.write_bytes(data)
    return path


def _zero_length(tmp: Path) -> Path:
    path = tmp / "empty.raw"
    path.write_bytes(b"")
    return path


def _unaligned_raw(tmp: Path) -> Path:
    path = tmp / "odd.raw"
    path.write_bytes(os.urandom(512 * 8 + 100))
    return path


def _not_an_image(tmp: Path) -> Path:
    path = tmp / "notes.txt"
    path.write_text("these are not the sectors you are looking for\n")
    return path


def _truncated_qcow2(tmp: Path) -> Path:
    path = tmp / "cut.qcow2"
    src = tmp / "full.raw"
    src.write_bytes(os.urandom(2 << 20))
    _qemu_img("convert", "-f", "raw", "-O", "qcow2", src, path)
    path.write_bytes(path.read_bytes()[: 300 * 1024])
    return path


def _corrupt_qcow2(tmp: Path) -> Path:
    """A qcow2 whose L1 table points far past the file."""
    path = tmp / "corrupt.qcow2"
    src = tmp / "full.raw"
    src.write_bytes(os.urandom(1 << 20))
    _qemu_img("convert", "-f", "raw", "-O", "qcow2", src, path)
    data = bytearray(path.read_bytes())
    l1_offset = int.from_bytes(data[40:48], "big")
    data[l1_offset : l1_offset + 8] = (0x80 << 56 | 1 << 40).to_bytes(8, "big")
    path.write_bytes(data)
    return path


DISKS: dict[str, tuple[Callable[[Path], Path], int]] = {
    # name: (how to make it, the exit code documented for it)
    "qcow2 backed by a host file": (_backing_to_host_file, 2),
    "vmdk extent naming a host file": (_vmdk_naming_a_host_file, 2),
    "header forged to 2^62 bytes": (_header_claims_more, 2),
    "zero-length": (_zero_length, 2),
    "raw not whole sectors": (_unaligned_raw, 2),
    "not an image": (_not_an_image, 2),
    "truncated qcow2": (_truncated_qcow2, 2),
    "corrupt qcow2": (_corrupt_qcow2, 2),
}


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("IMAGEKIT_PASSPHRASE", PASSPHRASE)
    path = tmp_path / "store"
    init_store(str(path))
    return path


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The temporary directory the command may use, checked empty afterwards."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    yield tmp
    assert list(tmp.iterdir()) == [], "left behind in the temporary directory"


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("imagekit: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.slow
@pytest.mark.parametrize("case", list(DISKS))
@pytest.mark.timeout(120)
def test_ingest(case: str, store: Path, scratch: Path, tmp_path: Path) -> None:
    make, code = DISKS[case]
    disk = make(tmp_path)
    before = _tree(store)
    result = run_cli("ingest", disk, "--store", store, "--name", "web")
    assert result.code == code, result.err
    assert str(disk) in _one_line(result.err)
    assert _tree(store) == before, "the store changed"


@pytest.mark.slow
@pytest.mark.parametrize("case", list(DISKS))
@pytest.mark.timeout(120)
def test_convert(case: str, scratch: Path, tmp_path: Path) -> None:
    make, code = DISKS[case]
    disk = make(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    result = run_cli("convert", disk, "-o", out / "disk.qcow2", "--target", "qcow2")
    assert result.code == code, result.err
    assert str(disk) in _one_line(result.err)
    assert list(out.iterdir()) == [], "partial output left"


KEY_CASES = ["wrong passphrase", "other identity", "identity, wrong passphrase", "not an identity"]


@pytest.mark.parametrize("case", KEY_CASES)
def test_wrong_key(case: str, store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args: list[object] = ["images", "--store", store]
    identity = tmp_path / "id.key"
    if case == "wrong passphrase":
        monkeypatch.setenv("IMAGEKIT_PASSPHRASE", "not the passphrase")
    elif case == "other identity":
        write_identity(identity, Identity.generate(), PASSPHRASE)
        args += ["--identity", identity]
    elif case == "identity, wrong passphrase":
        write_identity(identity, Identity.generate(), "another")
        args += ["--identity", identity]
    else:
        identity.write_text("# imagekit identity\nnot json\n")
        args += ["--identity", identity]
    before = _tree(store)
    result = run_cli(*args)
    assert result.code == 2, result.err
    _one_line(result.err)
    assert _tree(store) == before


URLS = {
    "s3://user:hunter2@bucket/x": "carries credentials",
    "s3://[bucket/x": "malformed",
    "ftp://bucket/x": "unknown store scheme",
    "s3://bucket/x?retries=0": "at least 1",
    "s3://bucket/x?bogus=1": "unknown option",
    "s3://bucket/x?retries=many": "not a valid value",
    "s3://bucket:9000/x": "expected s3://CONTAINER",
    "file://host/x": "local path",
    "s3://bucket/x#frag": "fragment",
}


@pytest.mark.parametrize("url", list(URLS))
def test_store_url(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEKIT_PASSPHRASE", PASSPHRASE)
    result = run_cli("images", "--store", url)
    assert result.code == 2, result.err
    line = _one_line(result.err)
    assert URLS[url] in line
    assert "hunter2" not in result.err  # a URL's secret is never echoed


PLANS = {
    "not YAML": "version: [1\n",
    "control character": "version: 1\x07\n",
    "a list": "- 1\n- 2\n",
    "unknown key": "version: 1\nname: x\nbogus: 1\n",
    "an alias inside itself": "a: &a [*a]\n",
    "aliases that multiply": "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
    + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    ),
    "inline secret": "version: 1\nname: x\nstores:\n  primary:\n    password: hunter2\n",
}


@pytest.mark.parametrize("case", list(PLANS))
@pytest.mark.timeout(60)
def test_plan(case: str, tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLANS[case])
    result = run_cli("plan", "validate", plan)
    assert result.code == 2, result.err
    lines = [ln for ln in result.err.splitlines() if ln.strip()]
    assert lines[0].startswith("imagekit: error: ") and "Traceback" not in result.err
    # Each problem on a line of its own, pointing into the file.
    assert all(ln.startswith(str(plan)) for ln in lines[1:]), lines
    assert "hunter2" not in result.err


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs made for the test, unmounted after it."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mount], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", mount], check=True)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_full_disk_restore(
    fmt: str, store: Path, small_fs: Path, tmp_path: Path, scratch: Path
) -> None:
    """A 12 MiB image restored onto 8 MiB: one line naming the lack of space, no file left."""
    disk = make_disk(tmp_path / "big.raw", 24, seed=3)
    ingest(str(store), disk)
    before = _tree(store)
    result = run_cli(
        "restore", "web", "--store", store, "-o", small_fs / "web.img", "--format", fmt
    )
    assert result.code in (1, 2), result.err
    line = _one_line(result.err)
    assert "space" in line.lower(), line
    assert list(small_fs.iterdir()) == [], "partial output left"
    assert _tree(store) == before


@pytest.mark.slow
def test_full_disk_convert(small_fs: Path, tmp_path: Path, scratch: Path) -> None:
    disk = make_disk(tmp_path / "big.raw", 24, seed=4)
    result = run_cli("convert", disk, "-o", small_fs / "big.qcow2", "--target", "qcow2")
    assert result.code in (1, 2), result.err
    assert "space" in _one_line(result.err).lower()
    assert list(small_fs.iterdir()) == []
