"""Every customer AMI adapted on every bench target: the full matrix, behind ``make soak-guests``.

``make test`` runs a diagonal of this matrix (test_customer_amis.py, test_adapted_boots.py,
test_exported_ami.py): each variant on the targets where its fix differs. This module boots
all six Debian EC2 variants on local and the three twins (24 boots, about 20 minutes two at a
time under TCG), each adapted and checked with an SSH login using the run's key; the NVMe
variant must also have its data volume mounted. It runs when IMAGEKIT_SOAK=1.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from testbed.debian.guests import GuestDisksSource, debian_guest
from tests.providers.twins.conftest import (
    Outcome,
    assert_nothing_left,
    boot_cases,
    boot_outcome,
    needs_root,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(3600),
    pytest.mark.skipif(
        os.environ.get("IMAGEKIT_SOAK") != "1", reason="the full matrix: make soak-guests"
    ),
]

VARIANTS = ("ec2", "ec2-hostonly", "ec2-nvme", "ec2-macpin", "ec2-netplan", "ec2-uefi")
TARGETS = {
    "local": {},
    "gcp-twin": {},
    "azure-twin": {"provisioning_timeout": "400"},
    "openstack-twin": {"metadata": "both"},
}
CASES = {f"{v}-on-{t}": (v, t) for v in VARIANTS for t in TARGETS}


def _run(case: tuple[str, str], state: Path) -> Outcome:
    variant, target = case
    guest = debian_guest(variant)
    checks = ("ssh:true", f"ssh:mountpoint -q {guest.data_mount}") if guest.data_mount else ()
    return boot_outcome(
        target, TARGETS[target], GuestDisksSource(guest), state, adapt=True, checks=checks
    )


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    needs_root()
    results = boot_cases(CASES, _run, tmp_path_factory)
    for name, outcome in results.items():
        print(f"{name}: adapt {outcome.stages.get('adapt')} s")
    return results


@pytest.mark.parametrize("name", list(CASES))
def test_every_variant_adapted_comes_up_on_every_target(
    outcomes: dict[str, Outcome], name: str
) -> None:
    outcome = outcomes[name]
    assert outcome.healthy, outcome.error
    assert outcome.guest["applied"], "nothing was adapted"
    assert_nothing_left(outcome)
