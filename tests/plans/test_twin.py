"""``rehearse --twin``: a cloud target's stack mapped onto its twin (pure)."""

from __future__ import annotations

import pytest

from imagekit.errors import UsageError
from imagekit.plans.model import TargetSpec
from imagekit.plans.twin import twin_spec, with_twin


def spec(provider: str, **settings: str) -> TargetSpec:
    return TargetSpec.model_validate(
        {
            "provider": provider,
            "settings": settings,
            "credentials": {"env": ["GOOGLE_APPLICATION_CREDENTIALS"]},
            "stack": {
                "web": {"size": "e2-medium", "count": 2, "health": ["http:80/health~ok"]},
                "db": {"depends_on": ["web"], "ports": [22, 5432]},
            },
        }
    )


def test_a_gcp_target_maps_to_gcp_twin_keeping_the_stack():
    twin = twin_spec("gcp", spec("gcp", project="shop", zone="europe-west1-b", region="x"))
    assert twin.provider == "gcp-twin"
    assert twin.settings == {"project": "shop", "zone": "europe-west1-b"}  # region: not presented
    assert twin.credentials.env == []  # a twin needs no cloud credentials
    web, db = twin.stack["web"], twin.stack["db"]
    assert web.count == 2 and web.health == ["http:80/health~ok"] and web.size is None
    assert db.depends_on == ["web"] and db.ports == [22, 5432]


@pytest.mark.parametrize(
    ("provider", "twin", "settings"),
    [
        ("azure", "azure-twin", {}),  # os_state follows the guest, as the azure provider
        ("openstack", "openstack-twin", {"metadata": "both"}),
        ("rackspace", "openstack-twin", {"metadata": "configdrive"}),
    ],
)
def test_each_cloud_has_its_twin_with_the_metadata_it_presents(provider, twin, settings):
    mapped = twin_spec("t", spec(provider))
    assert (mapped.provider, mapped.settings) == (twin, settings)


def test_local_has_no_twin():
    with pytest.raises(UsageError, match="runs on local, which has no twin"):
        twin_spec("lab", spec("local"))


def test_with_twin_adds_a_target_named_for_the_twin():
    from pathlib import Path

    from imagekit.plans.load import load_plan

    root = Path(__file__).resolve().parents[2]
    plan = load_plan(root / "templates" / "plans" / "stack.yaml")
    twinned, name = with_twin(plan, "gcp")
    assert name == "gcp-twin" and twinned.targets[name].provider == "gcp-twin"
    assert twinned.targets["gcp"] == plan.targets["gcp"]  # the real target is untouched
    assert set(twinned.targets[name].stack) == set(plan.targets["gcp"].stack)
    assert twinned.boot_order(name) == plan.boot_order("gcp")
    with pytest.raises(UsageError, match="no twin"):
        with_twin(plan, "local")
    with pytest.raises(UsageError, match="has no target"):
        with_twin(plan, "nowhere")
