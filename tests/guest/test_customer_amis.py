"""The customer AMIs adapted: each comes up where unadapted it fails with a named cause.

tests/providers/twins/test_customer_amis.py boots these variants (Debian's EC2 image with one
defect each, ``testbed/debian/build.py``) unadapted and shows the cause each twin names: root
not found (host-only initramfs), emergency mode (fstab by NVMe name), no address (MAC-pinned
network), no datasource (EC2 only, here on a UEFI-only disk). Here the guest stage adapts each
for the target, and the boot must be healthy with an SSH login using the run's key; the run
record must name the change that fixed the defect. Targets differ where the fix does: the
host-only initramfs gets virtio_blk for local and virtio_scsi for the GCE twin; the UEFI disk
boots through OVMF on the Azure twin (Gen2) and the OpenStack twin (hw_firmware_type=uefi).
The NVMe-named data volume is proven end to end from an exported AMI in test_exported_ami.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from imagekit.guest.rules import DATASOURCE_DROP_IN
from testbed.debian.guests import GuestDisksSource, debian_guest
from tests.providers.twins.conftest import (
    Outcome,
    assert_nothing_left,
    boot_cases,
    boot_outcome,
    needs_root,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]


@dataclass(frozen=True)
class Case:
    variant: str
    provider: str
    settings: Mapping[str, str] = field(default_factory=dict)
    #: A change the record must list (a substring of one ``applied`` entry).
    change: str = ""


AZURE = {"provisioning_timeout": "400"}
CASES = {
    "hostonly-on-local": Case("ec2-hostonly", "local", change="update-initramfs"),
    "hostonly-on-gcp-twin": Case("ec2-hostonly", "gcp-twin", change="update-initramfs"),
    "macpin-on-openstack-twin": Case(
        "ec2-macpin", "openstack-twin", {"metadata": "service"}, "70-persistent-net.rules"
    ),
    "macpin-on-azure-twin": Case("ec2-macpin", "azure-twin", AZURE, "70-persistent-net.rules"),
    "netplan-on-gcp-twin": Case("ec2-netplan", "gcp-twin", change="netplan/50-cloud-init.yaml"),
    "uefi-on-azure-twin": Case("ec2-uefi", "azure-twin", AZURE, DATASOURCE_DROP_IN),
    "uefi-on-openstack-twin": Case(
        "ec2-uefi", "openstack-twin", {"metadata": "configdrive"}, DATASOURCE_DROP_IN
    ),
}


def _run(case: Case, state: Path) -> Outcome:
    source = GuestDisksSource(debian_guest(case.variant))
    return boot_outcome(case.provider, case.settings, source, state, adapt=True)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    needs_root()
    for case in CASES.values():
        missing = debian_guest(case.variant).missing()
        if missing:
            pytest.fail(f"{missing[0]} is missing: run `make debian-images`")
    results = boot_cases(CASES, _run, tmp_path_factory)
    for name, outcome in results.items():
        print(f"{name}: adapt {outcome.stages.get('adapt')} s")
    return results


@pytest.mark.parametrize("name", list(CASES))
def test_the_adapted_customer_ami_boots_healthy(outcomes: dict[str, Outcome], name: str) -> None:
    outcome = outcomes[name]
    assert outcome.healthy, outcome.error
    changes = [a["change"] for a in outcome.guest["applied"]]
    assert any(CASES[name].change in c for c in changes), changes
    assert outcome.stages["adapt"] > 0
    assert_nothing_left(outcome)


def test_the_host_only_initramfs_gets_each_targets_own_driver(
    outcomes: dict[str, Outcome],
) -> None:
    local = [f["message"] for f in outcomes["hostonly-on-local"].guest["findings"]]
    gcp = [f["message"] for f in outcomes["hostonly-on-gcp-twin"].guest["findings"]]
    assert any("lacks virtio_blk" in m for m in local), local
    assert any("lacks virtio_scsi" in m for m in gcp), gcp


def test_the_uefi_disk_is_booted_as_uefi_from_its_own_partitions(
    outcomes: dict[str, Outcome],
) -> None:
    for name in ("uefi-on-azure-twin", "uefi-on-openstack-twin"):
        assert outcomes[name].guest["profile"]["boot_mode"] == "uefi"
