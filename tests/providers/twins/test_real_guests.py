"""Real Debian 12 guests on the twins: each boots healthy on its own cloud's twin, and fails on
another the way that cloud would fail it (a twin that passes every image proves nothing).

The guests are configured as Debian's per-cloud images are (``testbed/debian/build.py``): the
EC2 image trusts only the EC2 datasource — the AMI a user exports. Every case boots through
``providers.boot`` with the default check (``ssh:true``: a login with the run's key, the host
key the run offered pinned), on 1 GiB nodes, and must leave nothing behind: no namespace, no
process, no node folder.

Every case boots unadapted (``adapt=False``): it shows what the cloud does to the image as it
is; tests/guest/ proves the guest stage on the same images.

The boots run two at a time (one per core) from one module fixture; each test then reads its
case's outcome. Under TCG a healthy boot takes ~100-170 s, a failing one 85-260 s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from imagekit.providers.sources import FileImageSource
from tests.providers.twins.conftest import (
    HEALTH_TIMEOUT,
    Outcome,
    assert_nothing_left,
    boot_cases,
    boot_outcome,
    debian_disk,
    needs_root,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]


@dataclass(frozen=True)
class Case:
    variant: str  # which Debian image
    provider: str
    settings: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)  # as the stored image records


CASES = {
    "gce-on-gcp-twin": Case("gce", "gcp-twin"),
    "gce-on-gcp-twin-nvme": Case("gce", "gcp-twin", {"disk_interface": "nvme"}),
    "openstack-on-openstack-twin": Case("openstack", "openstack-twin", {"metadata": "configdrive"}),
    "azure-on-azure-twin": Case("azure", "azure-twin", {"provisioning_timeout": "400"}),
    "waagent-on-azure-twin": Case("azure-waagent", "azure-twin", {"provisioning_timeout": "400"}),
    "ec2-on-gcp-twin": Case("ec2", "gcp-twin"),
    "gce-on-openstack-twin": Case("gce", "openstack-twin", {"metadata": "service"}),
    "gce-on-azure-twin": Case("gce", "azure-twin", {"provisioning_timeout": "400"}),
    "ec2-on-local": Case("ec2", "local"),
    # A UEFI-only disk: through OVMF when the image says so, and stuck in BIOS when it does not.
    "uefi-on-gcp-twin": Case("gce-uefi", "gcp-twin", metadata={"boot_mode": "uefi"}),
    "uefi-as-bios": Case("gce-uefi", "gcp-twin"),
}


def _run(case: Case, state: Path) -> Outcome:
    source = FileImageSource(
        debian_disk(case.variant), source_format="raw", metadata=dict(case.metadata)
    )
    return boot_outcome(case.provider, case.settings, source, state)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    needs_root()
    for case in CASES.values():
        debian_disk(case.variant)  # fail before booting anything when an image is missing
    return boot_cases(CASES, _run, tmp_path_factory)


@pytest.mark.parametrize(
    "name", ["gce-on-gcp-twin", "gce-on-gcp-twin-nvme", "openstack-on-openstack-twin"]
)
def test_a_guest_boots_healthy_on_its_own_clouds_twin(outcomes, name) -> None:
    outcome = outcomes[name]
    assert outcome.healthy, outcome.error
    assert not [n for n in outcome.notes if n.startswith("warning:")], outcome.notes
    assert_nothing_left(outcome)


def test_an_azure_guest_reports_ready_and_boots_healthy(outcomes) -> None:
    outcome = outcomes["azure-on-azure-twin"]
    assert outcome.healthy, outcome.error
    assert any("provisioning Ready after" in n for n in outcome.notes), outcome.notes
    assert_nothing_left(outcome)


def test_the_linux_agent_provisions_reports_ready_and_boots_healthy(outcomes) -> None:
    # No cloud-init: waagent reads ovf-env.xml, makes the admin user with the run's key and
    # reports Ready through the wireserver; it prints no host key, so SSH trusts on first use.
    outcome = outcomes["waagent-on-azure-twin"]
    assert outcome.healthy, outcome.error
    assert any("provisioning Ready after" in n for n in outcome.notes), outcome.notes
    assert any("trusted on first use" in n for n in outcome.notes), outcome.notes
    assert_nothing_left(outcome)


def test_the_ec2_only_ami_never_becomes_healthy_on_the_gcp_twin(outcomes) -> None:
    # The case: Debian's EC2 image (datasource_list [Ec2, None]) on GCE gets no key and
    # no user-data; the SSH banner answers, but the login with the run's key cannot pass.
    outcome = outcomes["ec2-on-gcp-twin"]
    assert not outcome.healthy
    assert "never read that user-data" in outcome.error or "fell back to none" in outcome.error
    assert_nothing_left(outcome)


def test_a_gce_image_fails_on_the_openstack_twin(outcomes) -> None:
    outcome = outcomes["gce-on-openstack-twin"]
    assert not outcome.healthy
    assert "never read that user-data" in outcome.error or "fell back to none" in outcome.error
    assert_nothing_left(outcome)


def test_a_gce_image_never_reports_ready_on_the_azure_twin(outcomes) -> None:
    outcome = outcomes["gce-on-azure-twin"]
    assert not outcome.healthy
    assert "OSProvisioningTimedOut" in outcome.error
    assert "fell back to none" in outcome.error or "did not report Ready" in outcome.error
    assert_nothing_left(outcome)


def test_a_uefi_only_image_boots_through_ovmf_when_it_says_uefi(outcomes) -> None:
    outcome = outcomes["uefi-on-gcp-twin"]
    assert outcome.healthy, outcome.error
    assert_nothing_left(outcome)


def test_a_uefi_only_image_booted_through_bios_is_named_stalled(outcomes) -> None:
    outcome = outcomes["uefi-as-bios"]
    assert not outcome.healthy
    assert "handed over to the disk and nothing followed" in outcome.error
    assert outcome.seconds < HEALTH_TIMEOUT  # named when the stall is clear, not at the deadline
    assert_nothing_left(outcome)


def test_local_no_longer_calls_an_unreachable_guest_healthy(outcomes) -> None:
    # tcp:22 passed this guest (its sshd answers); the default check is now a real login.
    outcome = outcomes["ec2-on-local"]
    assert not outcome.healthy
    assert "ssh:true" in outcome.error
    assert_nothing_left(outcome)
