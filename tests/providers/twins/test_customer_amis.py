"""The customer AMIs (``testbed/debian/build.py``: Debian's EC2 image with one defect each) fail
off AWS, each with its own cause named from the console — before any adaptation exists.

Each boots through ``providers.boot`` as the real-guest matrix does (``ssh:true``, 1 GiB nodes,
two boots at a time), from its disk files: ``ec2-nvme`` with its data volume attached as the
second disk, ``ec2-uefi`` with the boot mode its AMI records. They call ``providers.boot``
directly, below the guest stage: nothing adapts them, so each shows what the stage must fix.
The host-only initramfs is no broken image: on NVMe disks (``gcp-twin``, ``disk_interface=nvme``)
it gets past the initramfs and fails only as the EC2 image does (checked once by hand, 175 s;
left out to keep this module at five boots).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from testbed.debian.guests import GuestDisksSource, debian_guest
from tests.providers.twins.conftest import (
    HEALTH_TIMEOUT,
    Outcome,
    assert_nothing_left,
    boot_cases,
    boot_outcome,
    needs_root,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


@dataclass(frozen=True)
class Case:
    variant: str
    provider: str
    settings: Mapping[str, str] = field(default_factory=dict)


CASES = {
    # virtio-blk: the host-only initramfs has no driver for it.
    "hostonly-on-local": Case("ec2-hostonly", "local"),
    # The data volume is /dev/vdb here, not /dev/nvme1n1.
    "nvme-on-local": Case("ec2-nvme", "local"),
    # Nova's metadata service answers the EC2 datasource too: only the network stands between.
    "macpin-on-openstack-twin": Case("ec2-macpin", "openstack-twin", {"metadata": "service"}),
    "uefi-on-gcp-twin": Case("ec2-uefi", "gcp-twin"),
    # The same pin in netplan (systemd-networkd renames only the NIC with EC2's MAC).
    "netplan-on-gcp-twin": Case("ec2-netplan", "gcp-twin"),
}


def _run(case: Case, state: Path) -> Outcome:
    return boot_outcome(
        case.provider, case.settings, GuestDisksSource(debian_guest(case.variant)), state
    )


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    needs_root()
    missing = [p for c in CASES.values() for p in debian_guest(c.variant).missing()]
    if missing:
        pytest.fail(f"{missing[0]} is missing: run `make debian-images` (make test does it)")
    return boot_cases(CASES, _run, tmp_path_factory)


def test_a_host_only_initramfs_finds_no_root_on_virtio(outcomes) -> None:
    outcome = outcomes["hostonly-on-local"]
    assert not outcome.healthy
    assert "found no root filesystem" in outcome.error
    assert "does not exist" in outcome.error or "Gave up waiting for root" in outcome.error
    assert outcome.seconds < HEALTH_TIMEOUT  # fatal: named when the initramfs gives up
    assert_nothing_left(outcome)


def test_a_data_volume_by_its_nvme_name_stops_the_boot_in_emergency_mode(outcomes) -> None:
    outcome = outcomes["nvme-on-local"]
    assert not outcome.healthy
    assert "emergency mode: /data could not be mounted" in outcome.error
    assert "/dev/nvme1n1" in outcome.error
    assert outcome.seconds < HEALTH_TIMEOUT
    assert_nothing_left(outcome)


@pytest.mark.parametrize("name", ["macpin-on-openstack-twin", "netplan-on-gcp-twin"])
def test_a_mac_pinned_network_leaves_the_guest_without_an_address(outcomes, name) -> None:
    outcome = outcomes[name]
    assert not outcome.healthy
    assert "no network address" in outcome.error
    assert_nothing_left(outcome)


def test_a_uefi_only_ami_boots_through_ovmf_and_then_fails_as_the_ec2_image(outcomes) -> None:
    # Booted at all (through BIOS it stalls after the hand-over: test_real_guests), it is
    # Debian's EC2 image on GCE: no key, no user-data.
    outcome = outcomes["uefi-on-gcp-twin"]
    assert not outcome.healthy
    assert "handed over to the disk" not in outcome.error
    assert "never read that user-data" in outcome.error or "fell back to none" in outcome.error
    assert_nothing_left(outcome)
