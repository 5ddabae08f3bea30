"""NoCloud seed ISOs, and the test disk's reading of the cloud-config they carry."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pycdlib
import pytest

from imagekit.errors import UsageError
from imagekit.providers.local.seed import build_seed, meta_data, ssh_cloud_config

AWK_SCRIPT = Path(__file__).resolve().parents[2] / "testbed" / "testdisk" / "guest-cloud-config.awk"
HOST_KEY = """-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACBfakefakefakefakefakefakefakefakefakefakefakefakeAAAAA==
-----END OPENSSH PRIVATE KEY-----
"""
PUBLIC_KEYS = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFake alice@example", "ssh-rsa AAAAB3Nza bob"]


def read_iso(path: Path) -> tuple[str, dict[str, bytes]]:
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        files = {}
        for child in iso.list_children(rr_path="/"):
            name = child.rock_ridge.name().decode()
            if name in (".", ".."):
                continue
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, rr_path=f"/{name}")
            files[name] = out.getvalue()
        label = iso.pvd.volume_identifier.decode().strip()
        return label, files
    finally:
        iso.close()


def test_seed_has_the_cidata_label_and_lowercase_names(tmp_path: Path) -> None:
    path = build_seed(
        tmp_path / "seed.iso",
        instance_id="i-0abc",
        hostname="web-1",
        user_data="#cloud-config\n",
        network_config=b"version: 2\n",
    )
    label, files = read_iso(path)
    assert label == "cidata"
    assert files == {
        "meta-data": b"instance-id: i-0abc\nlocal-hostname: web-1\n",
        "user-data": b"#cloud-config\n",
        "network-config": b"version: 2\n",
    }
    assert [p.name for p in tmp_path.iterdir()] == ["seed.iso"]  # no temporary left behind


def test_network_config_is_optional(tmp_path: Path) -> None:
    path = build_seed(tmp_path / "s.iso", instance_id="i", hostname="h", user_data=b"")
    assert set(read_iso(path)[1]) == {"meta-data", "user-data"}


@pytest.mark.parametrize("hostname", ["", "has space", "-lead", "a" * 64, "x\nlocal-hostname: y"])
def test_bad_hostnames_are_refused(hostname: str) -> None:
    with pytest.raises(UsageError, match="hostname"):
        meta_data("i-1", hostname)


def test_bad_instance_id_is_refused() -> None:
    with pytest.raises(UsageError, match="instance id"):
        meta_data("i-1\nlocal-hostname: evil", "web")


def test_cloud_config_refuses_multiline_keys_and_unknown_types() -> None:
    with pytest.raises(UsageError):
        ssh_cloud_config(["ssh-ed25519 AAAA\nssh-rsa BBBB"])
    with pytest.raises(UsageError, match="dsa"):
        ssh_cloud_config(PUBLIC_KEYS, {"dsa": HOST_KEY})


@pytest.mark.skipif(shutil.which("busybox") is None, reason="needs busybox (the guest's awk)")
def test_guest_parser_reads_what_ssh_cloud_config_writes(tmp_path: Path) -> None:
    user_data = ssh_cloud_config(PUBLIC_KEYS, {"ed25519": HOST_KEY})
    user_data += "hostname: from-user-data\nruncmd:\n  - echo ignored\n"
    (tmp_path / "user-data").write_text(user_data)
    keys = tmp_path / "authorized_keys"
    printed = subprocess.run(
        [
            "busybox",
            "awk",
            "-v",
            f"keys={keys}",
            "-v",
            f"keydir={tmp_path}",
            "-f",
            str(AWK_SCRIPT),
            str(tmp_path / "user-data"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert printed == "hostname from-user-data\n"
    assert keys.read_text().splitlines() == PUBLIC_KEYS
    assert (tmp_path / "ed25519").read_text() == HOST_KEY


@pytest.mark.skipif(shutil.which("busybox") is None, reason="needs busybox (the guest's awk)")
def test_guest_parser_reads_hand_written_cloud_config(tmp_path: Path) -> None:
    user_data = (
        "#cloud-config\n"
        "# a comment\n"
        "ssh_authorized_keys:\n"
        "- ssh-ed25519 AAAA plain\n"
        "-   'ssh-rsa BBBB quoted'\n"
        "ssh_keys:\n"
        "    rsa_private: |-\n"
        "        line one\n"
        "\n"
        "        line two\n"
        "    rsa_public: ssh-rsa CCCC\n"
        "users: []\n"
    )
    (tmp_path / "user-data").write_text(user_data)
    keys = tmp_path / "authorized_keys"
    subprocess.run(
        [
            "busybox",
            "awk",
            "-v",
            f"keys={keys}",
            "-v",
            f"keydir={tmp_path}",
            "-f",
            str(AWK_SCRIPT),
            str(tmp_path / "user-data"),
        ],
        check=True,
    )
    assert keys.read_text() == "ssh-ed25519 AAAA plain\nssh-rsa BBBB quoted\n"
    assert (tmp_path / "rsa").read_text() == "line one\n\nline two\n"
