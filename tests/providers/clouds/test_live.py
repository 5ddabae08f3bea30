"""Live boots on the real clouds, run only when their credentials are in the environment.

Each boots the project's bootable test disk (it answers HTTP on port 80 once up), waits for it,
and tears everything down, checking that no recorded resource is left. They cost money and
minutes, so they are marked ``live`` and skipped unless every variable the provider needs is set.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imagekit.providers.azure.provider import AzureProvider
from imagekit.providers.base import Provider
from imagekit.providers.boot import BootOptions, boot, teardown
from imagekit.providers.gcp.provider import GcpProvider
from imagekit.providers.openstack.provider import OpenStackProvider, RackspaceProvider
from imagekit.providers.runs import RunStore
from imagekit.providers.sources import FileImageSource

pytestmark = [pytest.mark.live, pytest.mark.slow]

NEEDS = {
    "gcp": ("GCP_PROJECT", "GCP_ZONE", "GCP_BUCKET", "GOOGLE_APPLICATION_CREDENTIALS"),
    "azure": (
        "AZURE_SUBSCRIPTION_ID",
        "AZURE_RESOURCE_GROUP",
        "AZURE_LOCATION",
        "AZURE_STORAGE_ACCOUNT",
        "AZURE_STORAGE_KEY",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET",
    ),
    "openstack": ("OS_AUTH_URL", "OS_PROJECT_NAME", "OS_USERNAME", "OS_PASSWORD"),
    "rackspace": ("RACKSPACE_REGION", "RACKSPACE_USERNAME", "RACKSPACE_API_KEY"),
}
CLASSES: dict[str, type[Provider]] = {
    "gcp": GcpProvider,
    "azure": AzureProvider,
    "openstack": OpenStackProvider,
    "rackspace": RackspaceProvider,
}
#: A cloud import plus a first boot: GCE and Azure take 5-15 minutes for a small disk.
LIVE_HEALTH_TIMEOUT = 900.0


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_live_boot_and_teardown(name: str, test_disk: Path, tmp_path: Path) -> None:
    missing = [var for var in NEEDS[name] if not os.environ.get(var)]
    if missing:
        pytest.skip(f"no {name} credentials ({', '.join(missing)} unset)")
    runs = RunStore(tmp_path / "state")
    provider = CLASSES[name](state_dir=runs.root)
    options = BootOptions(
        checks=("http:80/",), timeout=LIVE_HEALTH_TIMEOUT, size="t3.small", adapt=False
    )
    record = boot(provider, FileImageSource(test_disk, name="imagekit-live"), options, runs)
    try:
        assert record.status == "healthy"
    finally:
        report = teardown(runs, record.run_id, factory=lambda n, **kw: CLASSES[n](**kw))
    assert not report.failed
    for resource in (*report.deleted, *report.already_gone):
        assert not provider.exists(resource), f"{resource} still exists after teardown"
