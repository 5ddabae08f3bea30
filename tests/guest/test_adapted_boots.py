"""The guest stage on real Debian 12 guests: adapted, each comes up where unadapted it did not.

tests/providers/twins/test_real_guests.py boots the same images unadapted and shows each twin
failing them the way its cloud would (the EC2 image finds no datasource off EC2; a UEFI-only
disk stalls in BIOS when nothing says UEFI). Here the same boots go through the guest stage
(libguestfs under TCG) and must be healthy with the default check (an SSH login with the run's
key), list what they changed in the run record, time it as the ``adapt`` stage, and leave the
source disk as it was. Boots run two at a time from one module fixture.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from imagekit.errors import ImagekitError
from imagekit.guest.adapt import adapt
from imagekit.guest.rules import DATASOURCE_DROP_IN
from imagekit.guest.targets import TARGETS
from imagekit.providers.boot import BootOptions, boot, teardown
from imagekit.providers.registry import create_provider
from imagekit.providers.runs import RunRecord, RunStore
from imagekit.providers.sources import FileImageSource
from tests.providers.twins.conftest import debian_disk, imagekit_namespaces, needs_root

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

HEALTH_TIMEOUT = 300.0


@dataclass(frozen=True)
class Case:
    variant: str
    provider: str
    settings: Mapping[str, str] = field(default_factory=dict)


CASES = {
    "ec2-on-local": Case("ec2", "local"),
    "ec2-on-gcp-twin": Case("ec2", "gcp-twin"),
    "ec2-on-azure-twin": Case("ec2", "azure-twin", {"provisioning_timeout": "400"}),
    "ec2-on-openstack-twin": Case("ec2", "openstack-twin", {"metadata": "configdrive"}),
    # No metadata says UEFI: the guest's own partitions do (unadapted it stalls in BIOS).
    "uefi-unsaid-on-gcp-twin": Case("gce-uefi", "gcp-twin"),
}


@dataclass
class Outcome:
    seconds: float
    record: RunRecord | None
    error: str = ""
    source_unchanged: bool = True


def _run(case: Case, state: Path) -> Outcome:
    disk = debian_disk(case.variant)
    before = disk.stat().st_mtime_ns, disk.stat().st_size
    provider = create_provider(case.provider, state_dir=state, settings=dict(case.settings))
    options = BootOptions(size="local-1g", timeout=HEALTH_TIMEOUT, adapt=True)
    runs = RunStore(state)
    started = time.monotonic()
    try:
        record = boot(provider, FileImageSource(disk, source_format="raw"), options, runs)
    except ImagekitError as exc:
        return Outcome(time.monotonic() - started, None, str(exc))
    seconds = time.monotonic() - started
    teardown(runs, record.run_id)
    unchanged = (disk.stat().st_mtime_ns, disk.stat().st_size) == before
    return Outcome(seconds, record, source_unchanged=unchanged)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    needs_root()
    for case in CASES.values():
        debian_disk(case.variant)
    namespaces = imagekit_namespaces()
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {n: pool.submit(_run, c, tmp_path_factory.mktemp(n)) for n, c in CASES.items()}
        results = {name: future.result() for name, future in futures.items()}
    for name, o in results.items():
        adapt_s = o.record.stages.get("adapt") if o.record else None
        verdict = "healthy" if o.record else "failed"
        print(f"{name}: {verdict} in {o.seconds:.0f} s, adapt {adapt_s} s")
    assert imagekit_namespaces() == namespaces
    return results


@pytest.mark.parametrize("name", ["ec2-on-local", "ec2-on-gcp-twin", "ec2-on-openstack-twin"])
def test_the_ec2_ami_adapted_boots_healthy(outcomes: dict[str, Outcome], name: str) -> None:
    outcome = outcomes[name]
    assert outcome.record is not None, outcome.error
    record = outcome.record
    target = CASES[name].provider
    changes = [a["change"] for a in record.guest["applied"]]
    assert changes == [f"write {DATASOURCE_DROP_IN}: cloud-init datasources for {target}"]
    noted = f"adapted for {target}: write {DATASOURCE_DROP_IN}"
    assert any(n.startswith(noted) for n in record.notes)
    assert record.stages["adapt"] > 0
    assert outcome.source_unchanged


def test_the_ec2_ami_adapted_reports_ready_on_the_azure_twin(outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes["ec2-on-azure-twin"]
    assert outcome.record is not None, outcome.error
    assert outcome.record.guest["profile"]["azure_ready"] is True
    assert any("provisioning Ready after" in n for n in outcome.record.notes)


def test_a_uefi_only_disk_boots_through_ovmf_from_its_own_partitions(
    outcomes: dict[str, Outcome],
) -> None:
    outcome = outcomes["uefi-unsaid-on-gcp-twin"]
    assert outcome.record is not None, outcome.error
    assert outcome.record.guest["profile"]["boot_mode"] == "uefi"


def test_adaptation_is_idempotent_and_never_touches_the_source(tmp_path: Path) -> None:
    disk = debian_disk("ec2")
    work = tmp_path / "work.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(disk), "-F", "raw", str(work)],
        check=True,
    )
    before = disk.stat().st_mtime_ns
    first = adapt([(work, "qcow2")], TARGETS["gcp"], log=tmp_path / "g.log")
    second = adapt([(work, "qcow2")], TARGETS["gcp"], log=tmp_path / "g.log")
    assert [a["change"] for a in first.applied] == [
        f"write {DATASOURCE_DROP_IN}: cloud-init datasources for gcp"
    ]
    assert second.applied == () and second.findings() == []
    assert disk.stat().st_mtime_ns == before
    print(f"adapt: {first.seconds}, again: {second.seconds}")


def test_inspect_reads_a_real_guest(capsys: pytest.CaptureFixture[str]) -> None:
    import imagekit.cli.guest_cmd  # noqa: F401  (registers the command)
    from imagekit.cli.app import main

    disk = debian_disk("gce-uefi")
    assert main(["inspect", "--disk", str(disk), "--format", "raw", "--json"]) == 0
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    facts = doc["facts"]
    assert (facts["os_type"], facts["distro"]) == ("linux", "debian")
    assert facts["architecture"] == "x86_64"
    assert facts["boot_mode"] == "uefi" and facts["partition_table"] == "gpt"
    assert facts["cloud_init"]["datasources"] == ["GCE", "None"]
    (kernel,) = facts["kernels"]
    assert {"virtio_scsi", "virtio_blk", "hv_storvsc", "gve"} <= set(kernel["initrd_modules"])
    # The GCE image is ready for GCE as it is; elsewhere its datasource is adapted; Rackspace's
    # Xen starts guests through the BIOS only.
    assert [f for f in doc["findings"] if f["target"] == "gcp"] == []
    assert {f["code"] for f in doc["findings"] if f["target"] == "azure"} == {"datasource"}
    assert doc["bootable_on"]["rackspace"] is False and doc["bootable_on"]["gcp"] is True
