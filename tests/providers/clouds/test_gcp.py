"""The gcp provider, request by request, against hand-written responses.

The responses are written from the Compute Engine API v1 reference (images, firewalls,
instances, zoneOperations/globalOperations, instances.getSerialPortOutput), the Cloud Storage
XML API (PUT/DELETE Object) and Google's OAuth2 token endpoint, trimmed to the fields libcloud
3.9.1 reads. The upload is checked byte for byte against the converted ``gce`` tar.gz; the
health check is a real TCP connection to a listener standing in for the instance's address.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from libcloud.compute.base import NodeImage

from imagekit.convert import convert_image
from imagekit.errors import ProviderError, UsageError
from imagekit.guest.profile import GuestProfile
from imagekit.providers.base import NodeRequest, PreparedImage, Resource
from imagekit.providers.gcp import api
from imagekit.providers.gcp.provider import GcpProvider
from imagekit.providers.runs import RunStore
from imagekit.providers.sources import FileImageSource
from tests.providers.clouds.flow import boot_and_teardown, instant
from tests.providers.clouds.recorded import Call, Cloud, Reply, recorded

PROJECT, ZONE, BUCKET = "demo-project", "europe-west1-b", "demo-images"
API = f"https://www.googleapis.com/compute/v1/projects/{PROJECT}"
COMPUTE = r"https://www\.googleapis\.com/compute/v1/projects/demo-project"


@pytest.fixture(scope="module")
def gce_tar(test_disk: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gce") / "disk.tar.gz"
    return convert_image(test_disk, out, "gce").output


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    key_file = tmp_path / "sa.json"
    key_file.write_text(
        json.dumps(
            {
                "type": "service_account",
                "client_email": "imagekit@demo-project.iam.gserviceaccount.com",
                "private_key": pem,
            }
        )
    )
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    for name, value in (("GCP_PROJECT", PROJECT), ("GCP_ZONE", ZONE), ("GCP_BUCKET", BUCKET)):
        monkeypatch.setenv(name, value)
    return tmp_path


def _op(
    name: str,
    scope: str = "global",
    error: dict[str, Any] | list[dict[str, Any]] | None = None,
    status: str = "DONE",
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "compute#operation",
        "name": name,
        "status": status,
        "selfLink": f"{API}/{scope}/operations/{name}",
    }
    if error:
        body["error"] = {"errors": error if isinstance(error, list) else [error]}
    return body


def _image(name: str, status: str) -> dict[str, Any]:
    return {
        "kind": "compute#image",
        "id": "4711",
        "name": name,
        "status": status,
        "selfLink": f"{API}/global/images/{name}",
        "creationTimestamp": "2026-01-01T00:00:00.000-00:00",
    }


def _instance(call: Call) -> Reply:
    name = call.path.rsplit("/", 1)[1]
    return Reply(
        body={
            "kind": "compute#instance",
            "id": "9001",
            "name": name,
            "status": "RUNNING",
            "zone": f"{API}/zones/{ZONE}",
            "machineType": f"{API}/zones/{ZONE}/machineTypes/e2-standard-2",
            "selfLink": f"{API}/zones/{ZONE}/instances/{name}",
            "creationTimestamp": "2026-01-01T00:00:00.000-00:00",
            "tags": {"items": [], "fingerprint": "abc"},
            "disks": [],
            "networkInterfaces": [
                {"networkIP": "10.0.0.2", "accessConfigs": [{"natIP": "127.0.0.1"}]}
            ],
        }
    )


ZONE_BODY = {
    "kind": "compute#zone",
    "id": "2101",
    "name": ZONE,
    "status": "UP",
    "region": f"{API}/regions/europe-west1",
    "selfLink": f"{API}/zones/{ZONE}",
    "description": ZONE,
    "creationTimestamp": "2026-01-01T00:00:00.000-00:00",
}
SIZES = [
    {
        "kind": "compute#machineType",
        "id": str(100 + i),
        "name": name,
        "guestCpus": cpus,
        "memoryMb": mem,
        "zone": ZONE,
        "selfLink": f"{API}/zones/{ZONE}/machineTypes/{name}",
        "description": name,
        "creationTimestamp": "2026-01-01T00:00:00.000-00:00",
        "maximumPersistentDisks": 128,
        "maximumPersistentDisksSizeGb": "263168",
        "imageSpaceGb": 0,
        "isSharedCpu": False,
    }
    for i, (name, cpus, mem) in enumerate(
        [("e2-small", 2, 2048), ("e2-standard-2", 2, 8192), ("e2-standard-4", 4, 16384)]
    )
]


def _routes(
    cloud: Cloud,
    *,
    image_status: str = "READY",
    boot_error: dict[str, Any] | None = None,
    image_error: list[dict[str, Any]] | None = None,
) -> None:
    cloud.route(
        "POST",
        r"https://accounts\.google\.com/o/oauth2/token",
        Reply(body={"access_token": "ya29.test", "token_type": "Bearer", "expires_in": 3600}),
    )
    cloud.route("PUT", r"https://storage\.googleapis\.com/demo-images/", Reply(200, b""))
    cloud.route("DELETE", r"https://storage\.googleapis\.com/demo-images/", Reply(204, b""))
    # images.insert answers a running operation; its look answers it done (or failed).
    cloud.route("POST", COMPUTE + r"/global/images$", Reply(body=_op("op-image", status="RUNNING")))
    cloud.route(
        "GET",
        COMPUTE + r"/global/images/",
        lambda c: Reply(body=_image(c.path.rsplit("/", 1)[1], image_status)),
    )
    cloud.route("POST", COMPUTE + r"/global/firewalls$", Reply(body=_op("op-fw")))
    cloud.route(
        "GET",
        COMPUTE + r"/global/firewalls/",
        lambda c: Reply(
            body={
                "kind": "compute#firewall",
                "id": "77",
                "name": c.path.rsplit("/", 1)[1],
                "network": f"{API}/global/networks/default",
                "allowed": [],
                "sourceRanges": ["0.0.0.0/0"],
                "targetTags": [],
                "selfLink": f"{API}/global/firewalls/x",
                "creationTimestamp": "2026-01-01T00:00:00.000-00:00",
            }
        ),
    )
    cloud.route(
        "GET",
        COMPUTE + r"/global/operations/",
        lambda c: Reply(
            body=_op(
                c.path.rsplit("/", 1)[1],
                error=image_error if c.path.endswith("/op-image") else None,
            )
        ),
    )
    cloud.route(
        "GET",
        COMPUTE + r"/zones/[^/]+/operations/",
        lambda c: Reply(body=_op(c.path.rsplit("/", 1)[1], f"zones/{ZONE}", boot_error)),
    )
    cloud.route("GET", COMPUTE + r"/zones$", Reply(body={"items": [ZONE_BODY]}))
    cloud.route("GET", COMPUTE + r"/zones/" + ZONE + "$", Reply(body=ZONE_BODY))
    cloud.route("GET", COMPUTE + r"/zones/[^/]+/machineTypes$", Reply(body={"items": SIZES}))
    cloud.route(
        "GET",
        COMPUTE + r"/global/networks/default$",
        Reply(
            body={
                "kind": "compute#network",
                "id": "5",
                "name": "default",
                "selfLink": f"{API}/global/networks/default",
                "autoCreateSubnetworks": True,
                "subnetworks": [],
            }
        ),
    )
    cloud.route(
        "GET",
        COMPUTE + r"/zones/[^/]+/diskTypes/pd-balanced$",
        Reply(
            body={
                "kind": "compute#diskType",
                "id": "30003",
                "name": "pd-balanced",
                "zone": f"{API}/zones/{ZONE}",
                "selfLink": f"{API}/zones/{ZONE}/diskTypes/pd-balanced",
                "defaultDiskSizeGb": "10",
                "validDiskSize": "10GB-65536GB",
                "creationTimestamp": "2026-01-01T00:00:00.000-00:00",
            }
        ),
    )
    cloud.route(
        "POST",
        COMPUTE + r"/zones/[^/]+/instances$",
        Reply(body=_op("op-node", f"zones/{ZONE}", status="RUNNING")),
    )
    cloud.route("GET", COMPUTE + r"/zones/[^/]+/instances/[^/]+$", _instance)
    cloud.route(
        "GET",
        COMPUTE + r"/zones/[^/]+/instances/[^/]+/serialPort$",
        Reply(body={"contents": "SeaBIOS\nBooting from Hard Disk...\nkernel panic: no init\n"}),
    )
    for kind in ("zones/[^/]+/instances", "global/firewalls", "global/images"):
        cloud.route("DELETE", COMPUTE + rf"/{kind}/[^/]+$", Reply(body=_op("op-del")))


gcp = instant(GcpProvider)


def _prepared(path: Path) -> PreparedImage:
    return PreparedImage(
        path, "gce", "web", "img-1", 1 << 30, metadata={"instance_type": "m5.large"}
    )


def _interesting(call: Call) -> bool:
    return "oauth2" not in call.url


def test_full_flow_upload_register_boot_health_teardown(
    env: Path, test_disk: Path, listener: int
) -> None:
    runs = RunStore(env / "state")
    source = FileImageSource(test_disk, name="web", metadata={"instance_type": "m5.large"})
    with recorded() as cloud:
        _routes(cloud)
        record, tar, report = boot_and_teardown(gcp, runs, source, listener, image="disk.tar.gz")
    rid = record.run_id
    image_name, fw, node = f"{rid}-image", f"{rid}-allow", f"{rid}-1"
    base = f"/compute/v1/projects/{PROJECT}"
    assert cloud.sequence(skip=lambda c: not _interesting(c)) == [
        f"GET {base}/zones",  # libcloud resolves the zone name once, cached afterwards
        f"GET {base}/zones/{ZONE}/machineTypes",  # size mapping, before the long work
        f"PUT /{BUCKET}/imagekit/{rid}/disk.tar.gz",
        f"POST {base}/global/images",
        f"GET {base}/global/operations/op-image",  # our poll of the insert: DONE, no error
        f"GET {base}/global/images/{image_name}",  # READY
        f"GET {base}/global/networks/default",  # ex_create_firewall resolves the network
        f"POST {base}/global/firewalls",
        f"GET {base}/global/operations/op-fw",
        f"GET {base}/global/firewalls/{fw}",
        f"GET {base}/global/networks/default",  # libcloud reads the new rule's network
        f"POST {base}/zones/{ZONE}/instances",  # our body: no lookups of network or disk type
        f"GET {base}/zones/{ZONE}/operations/op-node",
        f"GET {base}/zones/{ZONE}/instances/{node}",
        # Once the checks pass, the console is read for warnings (a fallback datasource…).
        f"GET {base}/zones/{ZONE}/instances/{node}/serialPort",
        f"DELETE {base}/zones/{ZONE}/instances/{node}",
        f"GET {base}/global/operations/op-del",
        f"DELETE {base}/global/firewalls/{fw}",
        f"GET {base}/global/operations/op-del",
        f"DELETE {base}/global/images/{image_name}",
        f"GET {base}/global/operations/op-del",
        f"DELETE /{BUCKET}/imagekit/{rid}/disk.tar.gz",
    ]
    put = cloud.find("PUT", "/disk.tar.gz")[0]
    assert put.body == tar
    assert put.headers["Authorization"] == "Bearer ya29.test"
    assert put.headers["x-goog-hash"].startswith("md5=")
    # The operation is read raw (every error kept), signed like every other call.
    assert cloud.find("GET", "/operations/op-image")[0].headers["Authorization"] == (
        "Bearer ya29.test"
    )
    insert = cloud.find("POST", "/global/images")[0].json()
    assert insert["rawDisk"] == {
        "source": f"https://storage.googleapis.com/{BUCKET}/imagekit/{rid}/disk.tar.gz",
        "containerType": "TAR",
    }
    assert insert["guestOsFeatures"] == [{"type": "VIRTIO_SCSI_MULTIQUEUE"}]
    firewall = cloud.find("POST", "/global/firewalls")[0].json()
    assert firewall["allowed"] == [{"IPProtocol": "tcp", "ports": [str(listener)]}]
    assert firewall["targetTags"] == [f"{rid}-nodes"]
    boot_body = cloud.find("POST", "/instances")[0].json()
    assert boot_body["name"] == node
    assert boot_body["machineType"].endswith("/machineTypes/e2-standard-2")  # m5.large: 2/8
    assert boot_body["tags"]["items"] == [f"{rid}-nodes"]
    metadata = {i["key"]: i["value"] for i in boot_body["metadata"]["items"]}
    assert metadata["user-data"].startswith("#cloud-config")
    assert metadata["ssh-keys"].startswith("imagekit:ssh-ed25519 ")
    assert boot_body["disks"] == [
        {
            "boot": True,
            "autoDelete": True,
            "type": "PERSISTENT",
            "mode": "READ_WRITE",
            "deviceName": node,
            "initializeParams": {
                "diskName": node,
                "diskType": f"{API}/zones/{ZONE}/diskTypes/pd-balanced",
                "sourceImage": f"{API}/global/images/{image_name}",
            },
        }
    ]  # not inspected: no interface asked, GCE's default (SCSI) as before
    assert boot_body["networkInterfaces"] == [
        {
            "network": f"{API}/global/networks/default",
            "accessConfigs": [{"name": "External NAT", "type": "ONE_TO_ONE_NAT"}],
        }
    ]  # not inspected: no nicType, GCE's default (virtio-net)
    assert "serviceAccounts" not in boot_body
    assert record.status == "healthy"
    assert [h["check"] for h in record.health] == [f"tcp:{listener}"]
    assert record.nodes[0].endpoints[0].host == "127.0.0.1"
    assert set(record.stages) == {"prepare", "upload", "register", "create", "health"}
    assert len(report.deleted) == 4 and not report.failed
    assert runs.list() == []


def test_rejected_import_fails_and_teardown_removes_what_exists(env: Path, gce_tar: Path) -> None:
    runs = RunStore(env / "state")
    with recorded() as cloud:
        _routes(cloud, image_status="FAILED")
        provider = gcp(state_dir=env / "state")
        run = runs.create("gcp", settings=provider.settings)
        uploaded = provider.upload(_prepared(gce_tar), run)
        with pytest.raises(ProviderError, match="GCE rejected image") as info:
            provider.register_image(uploaded, run)
        assert info.value.hint and "disk.raw" in info.value.hint
        # A later process tears down from the record alone.
        again = gcp(state_dir=env / "state")
        report = again.teardown(runs.open(run.run_id))
    assert [r.kind for r in report.deleted] == ["image", "gcs-object"]
    assert cloud.sequence(skip=lambda c: not _interesting(c))[-3:] == [
        f"DELETE /compute/v1/projects/{PROJECT}/global/images/{run.run_id}-image",
        f"GET /compute/v1/projects/{PROJECT}/global/operations/op-del",
        f"DELETE /{BUCKET}/imagekit/{run.run_id}/disk.tar.gz",
    ]


def test_quota_error_at_boot_is_clear_and_teardown_cleans_up(env: Path, gce_tar: Path) -> None:
    runs = RunStore(env / "state")
    quota = {"code": "QUOTA_EXCEEDED", "message": "Quota 'CPUS' exceeded. Limit: 8.0 in region."}
    with recorded() as cloud:
        _routes(cloud, boot_error=quota)
        provider = gcp(state_dir=env / "state")
        run = runs.create("gcp", settings=provider.settings)
        image = provider.register_image(provider.upload(_prepared(gce_tar), run), run)
        size, _ = provider.choose_size("e2-small", _prepared(gce_tar))
        with pytest.raises(ProviderError, match="quota refused") as info:
            provider.create_nodes(image, NodeRequest(1, size, "", (22,)), run)
        assert "CPUS" in str(info.value) and info.value.hint
        kinds = [r.kind for r in runs.open(run.run_id).record.resources]
        assert kinds == ["gcs-object", "image", "firewall", "node"]
        report = provider.teardown(run)
    # The instance never came to be: its delete answers 404 in GCE; here it is accepted.
    assert not report.failed
    deletes = [c.path for c in cloud.calls if c.method == "DELETE"]
    assert len(deletes) == 4


def test_missing_node_is_already_gone(env: Path) -> None:
    runs = RunStore(env / "state")
    with recorded() as cloud:
        _routes(cloud)
        cloud.route(
            "DELETE",
            COMPUTE + r"/zones/[^/]+/instances/[^/]+$",
            Reply(404, {"error": {"errors": [{"reason": "notFound", "message": "gone"}]}}),
        )
        provider = gcp(state_dir=env / "state")
        run = runs.create("gcp", settings=provider.settings)
        run.add_resource(Resource("node", "ik-x-node-1", "ik-x-node-1", {"zone": ZONE}))
        report = provider.teardown(run)
    assert [str(r) for r in report.already_gone] == ["node ik-x-node-1"]


def test_dry_run_lists_calls_without_any_request(env: Path) -> None:
    with recorded() as cloud:
        provider = gcp(state_dir=env / "state")
        size = type("S", (), {"id": "e2-small"})()
        calls = provider.planned_calls(NodeRequest(2, size, "", (22, 80)), "gcp-x")  # type: ignore[arg-type]
    assert cloud.calls == []
    assert calls[0].startswith(f"PUT https://storage.googleapis.com/{BUCKET}/")
    assert sum("instances" in c for c in calls) == 2


def test_image_never_ready_is_a_timeout_naming_its_status() -> None:
    answer = SimpleNamespace(object={"status": "PENDING"})
    driver = SimpleNamespace(connection=SimpleNamespace(request=lambda path: answer))
    with pytest.raises(
        ProviderError, match="GCE image img-1 not ready in time \\(status PENDING\\)"
    ):
        api.wait_image_ready(driver, "img-1", time.monotonic() + 1, interval=5.0)


def _guest(*drivers: str, boot_mode: str = "bios") -> GuestProfile:
    return GuestProfile(boot_mode=boot_mode, drivers=frozenset(drivers))


@pytest.mark.parametrize(
    ("guest", "features", "nic", "interface"),
    [
        # gve in the guest: the image may be given gVNIC, and the instance asks for it.
        (
            _guest("virtio_scsi", "gve", "virtio_net", boot_mode="uefi"),
            ["VIRTIO_SCSI_MULTIQUEUE", "UEFI_COMPATIBLE", "GVNIC"],
            "GVNIC",
            "SCSI",
        ),
        # No gve: no GVNIC feature, virtio-net asked for by name; nvme alone changes nothing
        # on a family whose persistent disks are SCSI.
        (
            _guest("virtio_scsi", "virtio_net", "nvme"),
            ["VIRTIO_SCSI_MULTIQUEUE"],
            "VIRTIO_NET",
            "SCSI",
        ),
    ],
)
def test_the_guests_drivers_choose_image_features_nic_and_disk_interface(
    env: Path, gce_tar: Path, guest: GuestProfile, features: list[str], nic: str, interface: str
) -> None:
    runs = RunStore(env / "state")
    prepared = replace(_prepared(gce_tar), guest=guest)
    with recorded() as cloud:
        _routes(cloud)
        provider = gcp(state_dir=env / "state")
        run = runs.create("gcp", settings=provider.settings)
        size, _ = provider.choose_size(None, prepared)
        image = provider.register_image(provider.upload(prepared, run), run)
        provider.create_nodes(image, NodeRequest(1, size, "#cloud-config\n", (22,)), run)
    insert = cloud.find("POST", "/global/images")[0].json()
    assert insert["guestOsFeatures"] == [{"type": f} for f in features]
    body = cloud.find("POST", "/instances")[0].json()
    assert body["networkInterfaces"][0]["nicType"] == nic
    assert body["disks"][0]["interface"] == interface
    assert body["disks"][0]["initializeParams"]["diskType"].endswith("/diskTypes/pd-balanced")


def test_a_failed_image_insert_quotes_every_error_of_its_operation(
    env: Path, gce_tar: Path
) -> None:
    """globalOperations.get of a failed insert: status DONE with ``error.errors[]``."""
    runs = RunStore(env / "state")
    errors = [
        {"code": "INVALID_USAGE", "message": "The disk image is not a valid tar.gz archive."},
        {"code": "IMAGE_IMPORT_FAILED", "message": "disk.raw was not found in the archive."},
    ]
    with recorded() as cloud:
        _routes(cloud, image_error=errors)
        provider = gcp(state_dir=env / "state")
        run = runs.create("gcp", settings=provider.settings)
        uploaded = provider.upload(_prepared(gce_tar), run)
        with pytest.raises(ProviderError) as info:
            provider.register_image(uploaded, run)
        report = provider.teardown(run)
    assert str(info.value) == (
        "GCE images.insert failed (operation op-image): [INVALID_USAGE] The disk image is not a "
        "valid tar.gz archive.; [IMAGE_IMPORT_FAILED] disk.raw was not found in the archive."
    )
    # The image is never looked at once its operation failed; what was made is removed.
    assert not cloud.find("GET", "/global/images/")
    assert [r.kind for r in report.deleted] == ["image", "gcs-object"]


def test_a_hyperdisk_family_asked_by_name_needs_a_guest_with_nvme_and_gve(
    env: Path, gce_tar: Path
) -> None:
    n4 = {**SIZES[1], "name": "n4-standard-2", "id": "200"}
    n4["selfLink"] = f"{API}/zones/{ZONE}/machineTypes/n4-standard-2"
    with recorded() as cloud:
        _routes(cloud)
        cloud.route("GET", COMPUTE + r"/zones/[^/]+/machineTypes$", Reply(body={"items": [n4]}))
        provider = gcp(state_dir=env / "state")
        with pytest.raises(UsageError, match="n4-standard-2: the N4 family boots from Hyperdisk"):
            provider.choose_size("n4-standard-2", _prepared(gce_tar))
        able = replace(_prepared(gce_tar), guest=_guest("nvme", "gve"))
        size, _ = provider.choose_size("n4-standard-2", able)
        run = RunStore(env / "state").create("gcp", settings=provider.settings)
        image = NodeImage("1", "img", provider.compute(), extra={"selfLink": f"{API}/x"})
        provider.create_nodes(image, NodeRequest(1, size, "", (22,)), run)
    body = cloud.find("POST", "/instances")[0].json()
    assert body["machineType"] == n4["selfLink"]
    disk = body["disks"][0]
    assert (disk["interface"], disk["initializeParams"]["diskType"].rsplit("/", 1)[1]) == (
        "NVME",
        "hyperdisk-balanced",
    )
    assert body["networkInterfaces"][0]["nicType"] == "GVNIC"
