"""A real Debian AMI through the whole pipeline: exported from the AWS emulator, inspected from
the store, adapted and booted on the GCE twin with its data volume mounted.

The AMI is the ``ec2-nvme`` customer image: Debian's EC2 configuration (cloud-init trusts only
EC2) and a second EBS volume its fstab mounts as ``/dev/nvme1n1`` without ``nofail``. It is
seeded into the emulator through the EBS direct API (one snapshot per disk), exported like any
AMI, then: ``imagekit inspect`` names what stops it on the GCE twin; ``imagekit boot`` adapts
the restored copy (datasource, fstab by the data volume's UUID) and must prove, over SSH with
the run's key, that the data volume is mounted where the AMI mounted it; the store is left as
it was (``store verify --read-data`` clean, no new image).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import imagekit.cli.boot_cmds
import imagekit.cli.export_cmd
import imagekit.cli.guest_cmd
import imagekit.cli.store_cmds  # noqa: F401
from imagekit.cli.app import main
from testbed.debian.guests import debian_guest, seed_guest_ami
from testbed.moto_aws import MotoAWS
from tests.providers.twins.conftest import imagekit_namespaces, needs_root

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


def _json(capsys: pytest.CaptureFixture[str]) -> object:
    return json.loads(capsys.readouterr().out)


def test_an_exported_debian_ami_is_inspected_adapted_and_boots_with_its_data(
    aws: MotoAWS,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    needs_root()
    guest = debian_guest("ec2-nvme")
    if guest.missing():
        pytest.fail(f"{guest.missing()[0]} is missing: run `make debian-images`")
    for key, value in aws.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("IMAGEKIT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("IMAGEKIT_PASSPHRASE", "exported ami passphrase")
    ami = seed_guest_ami(aws.client("ebs"), aws.client("ec2"), guest)
    store = str(tmp_path / "store")
    assert main(["store", "init", store, "--passphrase"]) == 0
    capsys.readouterr()
    assert main(["export", ami.image_id, "--store", store, "--json"]) == 0
    (exported,) = _json(capsys)  # type: ignore[misc]
    image_id = exported["id"]

    # inspect, from the store: the facts of both volumes, the verdict per target.
    args = ["inspect", image_id, "--store", store, "--target", "gcp-twin", "--json"]
    assert main(args) == 0
    doc = _json(capsys)
    assert isinstance(doc, dict)
    fstab = {e["mountpoint"]: e["spec"] for e in doc["facts"]["fstab"]}
    assert fstab[guest.data_mount] == "/dev/nvme1n1"
    found = {f["code"]: f for f in doc["findings"]}
    assert set(found) == {"datasource", "fstab-device-name"}
    assert f"UUID={guest.data_uuid}" in found["fstab-device-name"]["message"]
    assert doc["bootable_on"] == {"gcp-twin": True}

    # boot, adapted by default on a twin; the check reads the data volume's file over SSH.
    namespaces = imagekit_namespaces()
    check = f"ssh:cat {guest.data_mount}/{guest.data_file}"
    args = ["boot", image_id, "--store", store, "--provider", "gcp-twin", "--size", "local-1g"]
    code = main([*args, "--health", check, "--json"])
    booted = _json(capsys)
    assert isinstance(booted, dict)
    try:
        assert code == 0, booted
        assert booted["status"] == "healthy"
        changes = [a["change"] for a in booted["guest"]["applied"]]
        assert any(c.startswith("rewrite /etc/fstab") for c in changes), changes
        assert booted["stages"]["adapt"] > 0
    finally:
        assert main(["teardown", booted["run_id"]]) == 0
    assert imagekit_namespaces() == namespaces

    # The store holds what the export wrote and nothing the boot changed.
    assert main(["store", "verify", store, "--read-data"]) == 0
    capsys.readouterr()
    assert main(["images", "--store", store, "--json"]) == 0
    assert [i["id"] for i in _json(capsys)] == [image_id]  # type: ignore[union-attr]
