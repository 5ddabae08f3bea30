"""The openstack provider and its rackspace profile, request by request, against hand-written
responses.

The responses are written from the OpenStack API references: Identity v3 (POST
/v3/auth/tokens), Image service v2 (images, image data, tasks), Compute v2.1 (servers,
flavors/detail) and Networking v2.0 (security groups and rules, floating IPs, ports), and for
Rackspace from its Identity v2.0 (RAX-KSKEY API key), Cloud Files (Swift v1) and Cloud Images
(Glance v2 import tasks) documentation. Only the fields libcloud 3.9.1 reads are kept. The
uploaded bytes are compared with the converted image; health is a real TCP connection.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from libcloud.compute.base import Node
from libcloud.compute.types import NodeState

from imagekit.errors import ProviderError, UsageError
from imagekit.providers import health
from imagekit.providers.base import NodeRequest, PreparedImage
from imagekit.providers.boot import BootOptions, boot
from imagekit.providers.openstack import glance
from imagekit.providers.openstack.provider import OpenStackProvider, RackspaceProvider
from imagekit.providers.runs import RunStore
from imagekit.providers.sources import FileImageSource
from tests.providers.clouds.flow import boot_and_teardown, instant
from tests.providers.clouds.recorded import Call, Cloud, Reply, recorded

KEYSTONE = "https://keystone.example:5000"
NOVA, GLANCE, NEUTRON = (
    "https://nova.example:8774/v2.1/proj1",
    "https://glance.example:9292",
    "https://neutron.example:9696",
)


def _catalog(
    region: str, nova: str, glance: str, extra: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    entries = [
        ("compute", "nova", nova),
        ("image", "glance", glance),
        ("network", "neutron", NEUTRON),
        ("volumev3", "cinderv3", "https://cinder.example:8776/v3/proj1"),
    ]
    return [
        {
            "type": t,
            "name": n,
            "endpoints": [{"interface": "public", "region": region, "region_id": region, "url": u}],
        }
        for t, n, u in entries
    ] + extra


def _server(status: str, fault: str | None = None) -> Reply:
    body: dict[str, Any] = {
        "id": "srv-1",
        "name": "x",
        "status": status,
        "addresses": {"private": [{"addr": "10.0.0.5", "version": 4, "OS-EXT-IPS:type": "fixed"}]},
        "hostId": "h",
        "tenant_id": "proj1",
        "user_id": "u",
        "flavor": {"id": "m1.medium"},
        "image": {"id": "img-1"},
        "links": [{"rel": "self", "href": f"{NOVA}/servers/srv-1"}],
        "metadata": {},
        "created": "2026-01-01T00:00:00Z",
        "updated": "2026-01-01T00:00:00Z",
    }
    if fault:
        body["fault"] = {"message": fault, "code": 500}
    return Reply(200, {"server": body})


FLAVORS = {
    "flavors": [
        {"id": fid, "name": fid, "ram": ram, "vcpus": cpus, "disk": 20, "links": [], "swap": ""}
        for fid, cpus, ram in [
            ("m1.small", 1, 2048),
            ("m1.medium", 2, 8192),
            ("m1.large", 4, 16384),
        ]
    ]
}


def _glance_routes(cloud: Cloud, image_states: tuple[str, ...]) -> None:
    cloud.route("POST", GLANCE + r"/v2/images$", Reply(201, {"id": "img-1", "status": "queued"}))
    cloud.route("PUT", GLANCE + r"/v2/images/img-1/file$", Reply(204, b""))
    cloud.route(
        "GET",
        GLANCE + r"/v2/images/img-1$",
        *[Reply(200, {"id": "img-1", "name": "n", "status": s}) for s in image_states],
    )
    cloud.route("DELETE", GLANCE + r"/v2/images/img-1$", Reply(204, b""))


def _nova_routes(cloud: Cloud, boot_reply: Reply | None = None) -> None:
    cloud.route("GET", NOVA + r"/flavors/detail", Reply(200, FLAVORS))
    cloud.route(
        "POST",
        NOVA + r"/servers$",
        boot_reply or Reply(202, {"server": {"id": "srv-1", "adminPass": "p"}}),
    )
    cloud.route(
        "GET",
        NOVA + r"/servers/srv-1$",
        _server("BUILD"),
        _server("ACTIVE"),
        Reply(404, {"itemNotFound": {"message": "gone", "code": 404}}),
    )
    cloud.route("DELETE", NOVA + r"/servers/srv-1$", Reply(204, b""))


def _neutron_routes(cloud: Cloud) -> None:
    cloud.route(
        "POST",
        NEUTRON + r"/v2.0/security-groups$",
        Reply(
            201,
            {
                "security_group": {
                    "id": "sg-1",
                    "name": "g",
                    "description": "",
                    "tenant_id": "proj1",
                    "security_group_rules": [],
                }
            },
        ),
    )
    cloud.route(
        "POST",
        NEUTRON + r"/v2.0/security-group-rules$",
        lambda c: Reply(
            201,
            {
                "security_group_rule": {
                    **c.json()["security_group_rule"],
                    "id": "r",
                    "tenant_id": "proj1",
                    "ethertype": "IPv4",
                }
            },
        ),
    )
    cloud.route(
        "GET",
        NEUTRON + r"/v2.0/networks\?",
        Reply(
            200,
            {
                "networks": [
                    {
                        "id": "ext-1",
                        "name": "public",
                        "router:external": True,
                        "subnets": [],
                        "status": "ACTIVE",
                        "tenant_id": "admin",
                    }
                ]
            },
        ),
    )
    cloud.route(
        "POST",
        NEUTRON + r"/v2.0/floatingips$",
        Reply(
            201,
            {
                "floatingip": {
                    "id": "fip-1",
                    "floating_ip_address": "127.0.0.1",
                    "floating_network_id": "ext-1",
                    "port_id": None,
                    "status": "DOWN",
                }
            },
        ),
    )
    cloud.route(
        "GET",
        NOVA + r"/servers/srv-1/os-interface$",
        Reply(
            200,
            {
                "interfaceAttachments": [
                    {
                        "port_id": "port-1",
                        "port_state": "ACTIVE",
                        "mac_addr": "fa:16:3e:00:00:01",
                        "net_id": "n",
                        "fixed_ips": [],
                    }
                ]
            },
        ),
    )
    cloud.route(
        "PUT",
        NEUTRON + r"/v2.0/floatingips/fip-1$",
        Reply(200, {"floatingip": {"id": "fip-1", "port_id": "port-1"}}),
    )
    for kind in ("floatingips/fip-1", "security-groups/sg-1"):
        cloud.route("DELETE", NEUTRON + rf"/v2.0/{kind}$", Reply(204, b""))


def _openstack(
    cloud: Cloud,
    *,
    image_states: tuple[str, ...] = ("saving", "active"),
    boot_reply: Reply | None = None,
) -> None:
    cloud.route(
        "POST",
        KEYSTONE + r"/v3/auth/tokens",
        Reply(
            201,
            {
                "token": {
                    "expires_at": "2099-01-01T00:00:00.000000Z",
                    "catalog": _catalog("RegionOne", NOVA, GLANCE, []),
                }
            },
            {"X-Subject-Token": "gAAAA-token"},
        ),
    )
    _glance_routes(cloud, image_states)
    _nova_routes(cloud, boot_reply)
    _neutron_routes(cloud)


@pytest.fixture
def os_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, value in {
        "OS_AUTH_URL": KEYSTONE,
        "OS_PROJECT_NAME": "proj1",
        "OS_REGION_NAME": "RegionOne",
        "OS_USERNAME": "demo",
        "OS_PASSWORD": "pw-secret",
        "IMAGEKIT_OS_FLOATING_POOL": "public",
        "IMAGEKIT_OS_NETWORK": "net-1",
    }.items():
        monkeypatch.setenv(name, value)
    return tmp_path


openstack, rackspace = instant(OpenStackProvider), instant(RackspaceProvider)


def _boot(make: Any, state: Path, disk: Path, runs: RunStore, **options: Any) -> None:
    """A boot of ``disk`` expected to fail (the tests of this file that call it say how); no
    guest stage, as in ``boot_and_teardown``: these are the HTTP flows."""
    options = {"adapt": False, **options}
    boot(make(state_dir=state), FileImageSource(disk), BootOptions(**options), runs)


def _api(call: Call) -> bool:
    return "/auth/tokens" not in call.url and "/tokens" not in call.path


def test_openstack_full_flow(os_env: Path, test_disk: Path, listener: int) -> None:
    runs = RunStore(os_env / "state")
    source = FileImageSource(test_disk, name="db", metadata={"instance_type": "m5.large"})
    with recorded() as cloud:
        _openstack(cloud)
        record, qcow2, report = boot_and_teardown(
            openstack, runs, source, listener, image="disk.qcow2"
        )
    rid = record.run_id
    assert cloud.sequence(skip=lambda c: not _api(c)) == [
        "GET /v2.1/proj1/flavors/detail",
        "POST /v2/images",
        "PUT /v2/images/img-1/file",
        "GET /v2/images/img-1",  # saving
        "GET /v2/images/img-1",  # active
        "POST /v2.0/security-groups",
        "POST /v2.0/security-group-rules",
        "POST /v2.1/proj1/servers",
        "GET /v2.1/proj1/servers/srv-1",  # libcloud reads the new server
        "GET /v2.1/proj1/servers/srv-1",  # our poll: ACTIVE
        "GET /v2.0/networks",  # floating IP pools
        "POST /v2.0/floatingips",
        "GET /v2.1/proj1/servers/srv-1/os-interface",
        "PUT /v2.0/floatingips/fip-1",
        "DELETE /v2.0/floatingips/fip-1",
        "DELETE /v2.1/proj1/servers/srv-1",
        "GET /v2.1/proj1/servers/srv-1",  # gone: the group is free
        "DELETE /v2.0/security-groups/sg-1",
        "DELETE /v2/images/img-1",
    ]
    create = cloud.find("POST", "/v2/images")[0]
    assert create.json() == {
        "name": f"{rid}-image",
        "disk_format": "qcow2",
        "container_format": "bare",
        "visibility": "private",
        "min_disk": 1,
        "imagekit_run": rid,
        "architecture": "x86_64",
    }
    upload = cloud.find("PUT", "/file")[0]
    assert upload.headers["Content-Type"] == "application/octet-stream"
    assert upload.headers["X-Auth-Token"] == "gAAAA-token"
    assert upload.body == qcow2
    rule = cloud.find("POST", "/security-group-rules")[0].json()["security_group_rule"]
    assert (rule["protocol"], rule["port_range_min"], rule["port_range_max"]) == (
        "tcp",
        listener,
        listener,
    )
    server = cloud.find("POST", "/servers")[0].json()["server"]
    assert server["flavorRef"] == "m1.medium"  # m5.large: 2 vCPU, 8 GiB
    assert server["imageRef"] == "img-1"
    assert server["config_drive"] == "True"  # libcloud sends a string; Nova parses booleans
    import base64

    assert base64.b64decode(server["user_data"]).decode().startswith("#cloud-config")
    assert server["networks"] == [{"uuid": "net-1"}]
    assert server["security_groups"] == [{"name": "g"}]
    assert cloud.find("PUT", "/floatingips/fip-1")[0].json() == {
        "floatingip": {"port_id": "port-1"}
    }
    assert record.nodes[0].endpoints[0].host == "127.0.0.1"  # the floating IP
    assert not report.failed and runs.list() == []
    assert not any(b"pw-secret" in c.body for c in cloud.calls if _api(c))


def test_quota_at_boot_tears_down_group_and_image(os_env: Path, test_disk: Path) -> None:
    runs = RunStore(os_env / "state")
    quota = Reply(
        403,
        {
            "forbidden": {
                "message": "Quota exceeded for cores: Requested 2, but already used 20 of 20 cores",
                "code": 403,
            }
        },
    )
    with recorded() as cloud:
        _openstack(cloud, boot_reply=quota)
        with pytest.raises(ProviderError, match="quota") as info:
            boot(
                openstack(state_dir=os_env / "state"),
                FileImageSource(test_disk),
                BootOptions(adapt=False),
                runs,
            )
    assert "cores" in str(info.value) and "torn down" in str(info.value)
    assert [str(c) for c in cloud.calls if c.method == "DELETE"] == [
        "DELETE /v2.0/security-groups/sg-1",
        "DELETE /v2/images/img-1",
    ]


def test_glance_killing_the_image_is_an_image_rejected_error(os_env: Path, test_disk: Path) -> None:
    runs = RunStore(os_env / "state")
    with recorded() as cloud:
        _openstack(cloud, image_states=("saving", "killed"))
        with pytest.raises(ProviderError, match="Glance rejected image img-1"):
            boot(
                openstack(state_dir=os_env / "state"),
                FileImageSource(test_disk),
                BootOptions(adapt=False),
                runs,
            )
    assert [str(c) for c in cloud.calls if c.method == "DELETE"] == ["DELETE /v2/images/img-1"]
    assert runs.list() == []


# --- rackspace ---------------------------------------------------------------------------------

RAX_ID = "https://identity.api.rackspacecloud.com"
RAX_NOVA = "https://dfw.servers.api.rackspacecloud.com/v2/123456"
RAX_GLANCE = "https://dfw.images.api.rackspacecloud.com"
RAX_FILES = "https://storage101.dfw1.clouddrive.com/v1/MossoCloudFS_abc"


@pytest.fixture
def rax_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, value in {
        "RACKSPACE_REGION": "DFW",
        "RACKSPACE_USERNAME": "demo",
        "RACKSPACE_API_KEY": "rax-key-secret",
    }.items():
        monkeypatch.setenv(name, value)
    return tmp_path


def _rackspace(cloud: Cloud, task: Reply) -> None:
    def v2(type_: str, name: str, url: str) -> dict[str, Any]:
        return {
            "type": type_,
            "name": name,
            "endpoints": [{"region": "DFW", "tenantId": "123456", "publicURL": url}],
        }

    cloud.route(
        "POST",
        RAX_ID + r"/v2\.0/tokens",
        Reply(
            200,
            {
                "access": {
                    "token": {
                        "id": "rax-token",
                        "expires": "2099-01-01T00:00:00.000Z",
                        "tenant": {"id": "123456"},
                    },
                    "serviceCatalog": [
                        v2("compute", "cloudServersOpenStack", RAX_NOVA),
                        v2("image", "cloudImages", RAX_GLANCE),
                        v2("object-store", "cloudFiles", RAX_FILES),
                        v2(
                            "rax:object-cdn",
                            "cloudFilesCDN",
                            "https://cdn1.clouddrive.com/v1/MossoCloudFS_abc",
                        ),
                    ],
                    "user": {"id": "u", "name": "demo"},
                }
            },
        ),
    )
    cloud.route("PUT", RAX_FILES + r"/imagekit/", Reply(201, b""))
    cloud.route("DELETE", RAX_FILES + r"/imagekit/", Reply(204, b""))
    cloud.route(
        "POST",
        RAX_GLANCE + r"/v2/tasks$",
        Reply(201, {"id": "task-1", "status": "pending", "type": "import"}),
    )
    cloud.route(
        "GET",
        RAX_GLANCE + r"/v2/tasks/task-1$",
        Reply(200, {"id": "task-1", "status": "processing"}),
        task,
    )
    cloud.route(
        "GET",
        RAX_GLANCE + r"/v2/images/img-9$",
        Reply(200, {"id": "img-9", "name": "n", "status": "active"}),
    )
    cloud.route("DELETE", RAX_GLANCE + r"/v2/images/img-9$", Reply(204, b""))
    cloud.route("GET", RAX_NOVA + r"/flavors/detail", Reply(200, FLAVORS))
    cloud.route(
        "POST", RAX_NOVA + r"/servers$", Reply(202, {"server": {"id": "srv-1", "adminPass": "p"}})
    )
    server = _server("ACTIVE").body["server"]
    server["addresses"] = {"public": [{"addr": "127.0.0.1", "version": 4}]}
    cloud.route(
        "GET",
        RAX_NOVA + r"/servers/srv-1$",
        Reply(200, {"server": server}),
        Reply(200, {"server": server}),
        Reply(404, {"itemNotFound": {"code": 404}}),
    )
    cloud.route("DELETE", RAX_NOVA + r"/servers/srv-1$", Reply(204, b""))


TASK_DONE = Reply(200, {"id": "task-1", "status": "success", "result": {"image_id": "img-9"}})


def test_rackspace_full_flow_imports_the_vhd_from_cloud_files(
    rax_env: Path, test_disk: Path, listener: int
) -> None:
    runs = RunStore(rax_env / "state")
    with recorded() as cloud:
        _rackspace(cloud, TASK_DONE)
        record, vhd, report = boot_and_teardown(
            rackspace, runs, FileImageSource(test_disk), listener, image="disk.vhd", size="m1.small"
        )
    rid = record.run_id
    assert cloud.sequence(skip=lambda c: not _api(c)) == [
        "GET /v2/123456/flavors/detail",
        f"PUT /v1/MossoCloudFS_abc/imagekit/{rid}.vhd",
        "POST /v2/tasks",
        "GET /v2/tasks/task-1",
        "GET /v2/tasks/task-1",
        "GET /v2/images/img-9",
        "POST /v2/123456/servers",
        "GET /v2/123456/servers/srv-1",
        "GET /v2/123456/servers/srv-1",
        "DELETE /v2/123456/servers/srv-1",
        "GET /v2/123456/servers/srv-1",
        "DELETE /v2/images/img-9",
        f"DELETE /v1/MossoCloudFS_abc/imagekit/{rid}.vhd",
    ]
    assert cloud.find("PUT", ".vhd")[0].body == vhd
    assert cloud.find("POST", "/v2/tasks")[0].json() == {
        "type": "import",
        "input": {
            "import_from": f"imagekit/{rid}.vhd",
            "import_from_format": "vhd",
            "image_properties": {"name": f"{rid}-image", "disk_format": "vhd"},
        },
    }
    server = cloud.find("POST", "/servers")[0].json()["server"]
    assert server["flavorRef"] == "m1.small" and "security_groups" not in server
    assert not report.failed and runs.list() == []


def test_rackspace_import_failure_removes_the_uploaded_object(
    rax_env: Path, test_disk: Path
) -> None:
    runs = RunStore(rax_env / "state")
    failed = Reply(
        200, {"id": "task-1", "status": "failure", "message": "Image is not a valid VHD"}
    )
    with recorded() as cloud:
        _rackspace(cloud, failed)
        with pytest.raises(ProviderError, match="import was rejected: Image is not a valid VHD"):
            boot(
                rackspace(state_dir=rax_env / "state"),
                FileImageSource(test_disk),
                BootOptions(adapt=False),
                runs,
            )
    assert [c.method for c in cloud.calls if c.method == "DELETE"] == ["DELETE"]
    assert runs.list() == []


def test_dry_runs_make_no_request(os_env: Path, rax_env: Path) -> None:
    size = type("S", (), {"id": "m1.small"})()
    request = NodeRequest(1, size, "", (22,))  # type: ignore[arg-type]
    with recorded() as cloud:
        os_calls = openstack(state_dir=os_env).planned_calls(request, "openstack-x")
        rax_calls = rackspace(state_dir=rax_env).planned_calls(request, "rackspace-x")
    assert cloud.calls == []
    assert os_calls[0].startswith("POST /v2/images") and "floatingips" in os_calls[-1]
    assert rax_calls[0].startswith("PUT cloudFiles") and not any("security" in c for c in rax_calls)


def test_import_task_never_done_is_a_timeout_naming_its_status() -> None:
    answer = SimpleNamespace(object={"id": "task-1", "status": "processing"})
    conn = SimpleNamespace(request=lambda path: answer)
    with pytest.raises(ProviderError, match="task-1 not done in time \\(status processing\\)"):
        glance.wait_task(conn, "task-1", time.monotonic() + 1, interval=5.0)


CONSOLE = """[    2.1] cloud-init[612]: Cloud-init v. 23.1 running 'modules:final'
ci-info: no authorized SSH keys fingerprints found for user root.
-----BEGIN SSH HOST KEY KEYS-----
ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB6kt9Cm8V0HqdlLgnXD16Un4cVVzLYk0k0r6u2ZEv1B root@x
-----END SSH HOST KEY KEYS-----
"""


def test_console_output_comes_from_nova_and_yields_the_host_keys(os_env: Path) -> None:
    """Compute v2.1 ``POST /servers/{id}/action`` with ``os-getConsoleOutput``: the console that
    ``serial:`` checks read and that pins the host key for ``ssh:``; refused by policy → none."""
    provider = openstack(state_dir=os_env / "state")
    run = RunStore(os_env / "state").create("openstack")
    with recorded() as cloud:
        _openstack(cloud)
        cloud.route(
            "POST",
            NOVA + r"/servers/srv-1/action$",
            Reply(200, {"output": CONSOLE}),
            Reply(403, {"forbidden": {"message": "Policy doesn't allow it", "code": 403}}),
        )
        node = Node("srv-1", "x", NodeState.RUNNING, ["127.0.0.1"], [], provider.driver())
        target = provider.health_target(node, run)
        console = target.console()
        refused = target.console()
    assert console == CONSOLE
    assert health.console_host_keys(console) == [
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB6kt9Cm8V0HqdlLgnXD16Un4cVVzLYk0k0r6u2ZEv1B"
    ]
    action = cloud.find("POST", "/servers/srv-1/action")
    assert [c.json() for c in action] == [{"os-getConsoleOutput": {"length": None}}] * 2
    assert refused is None


# --- interoperable image import, min_disk and boot from volume --------------------------------

CINDER = "https://cinder.example:8776/v3/proj1"
INFO_IMPORT = {
    "import-methods": {
        "description": "Import methods available.",
        "type": "array",
        "value": ["glance-direct", "web-download"],
    }
}


def _refusing_direct_upload(cloud: Cloud, image_states: tuple[dict[str, Any], ...]) -> None:
    """Glance with the upload policy off: PUT /file is 403, the import flow is offered."""
    cloud.route(
        "PUT",
        GLANCE + r"/v2/images/img-1/file$",
        Reply(403, {"forbidden": {"message": "Not allowed to upload image data", "code": 403}}),
    )
    cloud.route("GET", GLANCE + r"/v2/info/import$", Reply(200, INFO_IMPORT))
    cloud.route("PUT", GLANCE + r"/v2/images/img-1/stage$", Reply(204, b""))
    cloud.route("POST", GLANCE + r"/v2/images/img-1/import$", Reply(202, b""))
    cloud.route(
        "GET",
        GLANCE + r"/v2/images/img-1$",
        *[Reply(200, {"id": "img-1", "name": "n", **state}) for state in image_states],
    )


def _glance_calls(cloud: Cloud) -> list[str]:
    return [str(c) for c in cloud.calls if "glance.example" in c.url]


def test_a_refused_direct_upload_goes_through_the_import_flow(
    os_env: Path, test_disk: Path, listener: int
) -> None:
    runs = RunStore(os_env / "state")
    states = ({"status": "importing"}, {"status": "active"})
    with recorded() as cloud:
        _openstack(cloud)
        _refusing_direct_upload(cloud, states)
        record, qcow2, report = boot_and_teardown(
            openstack, runs, FileImageSource(test_disk), listener, image="disk.qcow2"
        )
    assert _glance_calls(cloud) == [
        "POST /v2/images",
        "PUT /v2/images/img-1/file",  # 403: this cloud takes data only through import
        "GET /v2/info/import",  # glance-direct is offered
        "PUT /v2/images/img-1/stage",
        "POST /v2/images/img-1/import",
        "GET /v2/images/img-1",  # importing
        "GET /v2/images/img-1",  # active
        "DELETE /v2/images/img-1",
    ]
    stage = cloud.find("PUT", "/stage")[0]
    assert stage.headers["Content-Type"] == "application/octet-stream"
    assert stage.body == qcow2
    assert cloud.find("POST", "/import")[0].json() == {"method": {"name": "glance-direct"}}
    assert any("glance-direct" in n for n in record.notes)
    assert record.status == "healthy" and not report.failed


def test_a_failed_import_quotes_the_import_task_and_removes_the_image(
    os_env: Path, test_disk: Path
) -> None:
    """Glance reverts a failed import to ``queued``, names the store in
    ``os_glance_failed_import`` and keeps the reason in the image's task (API 2.12)."""
    runs = RunStore(os_env / "state")
    states = (
        {"status": "importing"},
        {"status": "queued", "os_glance_failed_import": "ceph"},
    )
    task = {
        "id": "task-7",
        "type": "api_image_import",
        "status": "failure",
        "message": "Image format qcow2 with a backing file is not allowed",
        "updated_at": "2026-01-01T00:00:05Z",
    }
    with recorded() as cloud:
        _openstack(cloud)
        _refusing_direct_upload(cloud, states)
        cloud.route("GET", GLANCE + r"/v2/images/img-1/tasks$", Reply(200, {"tasks": [task]}))
        with pytest.raises(ProviderError) as info:
            _boot(openstack, os_env / "state", test_disk, runs)
    assert info.value.message.startswith(
        "Glance import of image img-1 to store ceph failed: Image format qcow2 with a backing "
        "file is not allowed"
    )
    assert "torn down" in str(info.value)
    assert [str(c) for c in cloud.calls if c.method == "DELETE"] == ["DELETE /v2/images/img-1"]


def test_a_refused_upload_without_glance_direct_is_a_clear_error(
    os_env: Path, test_disk: Path
) -> None:
    runs = RunStore(os_env / "state")
    with recorded() as cloud:
        _openstack(cloud)
        _refusing_direct_upload(cloud, ({"status": "queued"},))
        only_web = {"import-methods": {"type": "array", "value": ["web-download"]}}
        cloud.route("GET", GLANCE + r"/v2/info/import$", Reply(200, only_web))
        with pytest.raises(ProviderError, match="refused the direct upload") as info:
            _boot(openstack, os_env / "state", test_disk, runs)
    assert info.value.hint == "the cloud's import methods: web-download"
    assert not cloud.find("PUT", "/stage")


def test_image_upload_import_skips_the_direct_upload(
    os_env: Path, test_disk: Path, monkeypatch: pytest.MonkeyPatch, listener: int
) -> None:
    monkeypatch.setenv("IMAGEKIT_OS_IMAGE_UPLOAD", "import")
    runs = RunStore(os_env / "state")
    with recorded() as cloud:
        _openstack(cloud)
        _refusing_direct_upload(cloud, ({"status": "active"},))
        boot_and_teardown(openstack, runs, FileImageSource(test_disk), listener, image="disk.qcow2")
    assert not cloud.find("PUT", "/file")
    assert cloud.find("PUT", "/stage") and cloud.find("POST", "/import")


def test_image_upload_must_be_a_known_mode(os_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEKIT_OS_IMAGE_UPLOAD", "web-download")
    with pytest.raises(UsageError, match="image_upload 'web-download': use one of auto"):
        openstack(state_dir=os_env / "state")


BFV_FLAVORS = {
    "flavors": [
        {"id": fid, "name": fid, "ram": 8192, "vcpus": 2, "disk": disk, "links": [], "swap": ""}
        for fid, disk in [("gp.small-disk", 20), ("gp.volume", 0), ("gp.big-disk", 40)]
    ]
}


def _big_image(path: Path, architecture: str = "x86_64") -> PreparedImage:
    """A 30 GiB disk as far as flavor choice is concerned (the file is the small test disk)."""
    metadata = {"instance_type": "m5.large", "architecture": architecture}
    return PreparedImage(path, "qcow2", "db", "img", 30 << 30, metadata=metadata)


@pytest.mark.parametrize(
    ("flavors", "chosen"),
    [
        # 2 vCPU / 8 GiB all three: the 20 GiB disk is too small for a 30 GiB image; the local
        # 40 GiB disk outranks the volume boot on the tie.
        (BFV_FLAVORS, "gp.big-disk"),
        ({"flavors": BFV_FLAVORS["flavors"][:2]}, "gp.volume"),
    ],
)
def test_flavors_are_chosen_by_min_disk(
    os_env: Path, test_disk: Path, flavors: dict[str, Any], chosen: str
) -> None:
    with recorded() as cloud:
        _openstack(cloud)
        cloud.route("GET", NOVA + r"/flavors/detail", Reply(200, flavors))
        size, _ = openstack(state_dir=os_env / "state").choose_size(None, _big_image(test_disk))
    assert size.id == chosen


def test_a_named_flavor_smaller_than_the_image_is_refused(os_env: Path, test_disk: Path) -> None:
    with recorded() as cloud:
        _openstack(cloud)
        cloud.route("GET", NOVA + r"/flavors/detail", Reply(200, BFV_FLAVORS))
        with pytest.raises(UsageError, match=r"gp\.small-disk: its 20 GiB root disk is smaller"):
            openstack(state_dir=os_env / "state").choose_size(
                "gp.small-disk", _big_image(test_disk)
            )


def test_a_diskless_flavor_boots_from_a_volume_recorded_for_teardown(
    os_env: Path, test_disk: Path
) -> None:
    runs = RunStore(os_env / "state")
    prepared = _big_image(test_disk, architecture="arm64")
    attached = {"os-extended-volumes:volumes_attached": [{"id": "vol-1"}]}
    with recorded() as cloud:
        _openstack(cloud)
        cloud.route(
            "GET", NOVA + r"/flavors/detail", Reply(200, {"flavors": BFV_FLAVORS["flavors"][1:2]})
        )
        server = _server("ACTIVE").body["server"] | attached
        cloud.route(
            "GET",
            NOVA + r"/servers/srv-1$",
            Reply(200, {"server": server}),
            Reply(200, {"server": server}),
            Reply(404, {"itemNotFound": {"message": "gone", "code": 404}}),
        )
        cloud.route(
            "DELETE",
            CINDER + r"/volumes/vol-1$",
            Reply(404, {"itemNotFound": {"message": "Volume vol-1 could not be found."}}),
        )
        provider = openstack(state_dir=os_env / "state")
        run = runs.create("openstack", settings=provider.settings)
        size, _ = provider.choose_size(None, prepared)
        uploaded = provider.upload(prepared, run)
        image = provider.register_image(uploaded, run)
        provider.create_nodes(image, NodeRequest(1, size, "#cloud-config\n", (22,)), run)
        kinds = [r.kind for r in runs.open(run.run_id).record.resources]
        report = provider.teardown(run)
    create = cloud.find("POST", "/v2/images")[0].json()
    assert (create["min_disk"], create["architecture"]) == (30, "aarch64")
    server_body = cloud.find("POST", "/servers")[0].json()["server"]
    assert server_body["flavorRef"] == "gp.volume"
    assert server_body["block_device_mapping_v2"] == [
        {
            "boot_index": 0,
            "uuid": "img-1",
            "source_type": "image",
            "destination_type": "volume",
            "volume_size": 30,
            "delete_on_termination": True,
        }
    ]
    assert not server_body.get("imageRef")  # the volume is the root, not the image
    # The volume is recorded before its server, so the server goes first and takes it along.
    assert kinds == ["image", "security-group", "volume", "node", "floating-ip"]
    deletes = [str(c) for c in cloud.calls if c.method == "DELETE"]
    assert deletes == [
        "DELETE /v2.0/floatingips/fip-1",
        "DELETE /v2.1/proj1/servers/srv-1",
        "DELETE /v3/proj1/volumes/vol-1",  # gone with its server: "already gone"
        "DELETE /v2.0/security-groups/sg-1",
        "DELETE /v2/images/img-1",
    ]
    assert [r.kind for r in report.already_gone] == ["volume"] and not report.failed


def test_the_project_domain_is_a_setting(os_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keystone v3 password auth scoped to the project by name within the domain named here."""
    monkeypatch.setenv("OS_PROJECT_DOMAIN_ID", "dr-domain")
    with recorded() as cloud:
        _openstack(cloud)
        provider = openstack(state_dir=os_env / "state")
        provider.list_sizes()
        default = openstack(state_dir=os_env / "state", settings={"project_domain": "default"})
        default.list_sizes()
    scopes = [c.json()["auth"]["scope"] for c in cloud.find("POST", "/v3/auth/tokens")]
    assert scopes == [
        {"project": {"name": "proj1", "domain": {"id": "dr-domain"}}},
        {"project": {"name": "proj1", "domain": {"id": "default"}}},
    ]
    assert provider.settings["project_domain"] == "dr-domain"  # recorded for teardown


# --- rackspace: images above one Cloud Files object go up as a static large object -----------

SEGMENT = 24 << 20  # the 64 MiB test disk's VHD in three segments: 24 + 24 + 16 MiB + 512


class SmallObjects(RackspaceProvider):
    """Rackspace with Cloud Files' 5 GiB object limit and 1 GiB segments scaled down, so that
    the test disk takes the segmented path (the HTTP is recorded, as above)."""

    object_limit = 1 << 20
    segment_size = SEGMENT


def _swift_put(call: Call) -> Reply:
    """Swift's answer to an object PUT: 201 with the body's MD5 as ETag (a manifest PUT answers
    the MD5 of the segments' ETags, quoted)."""
    if call.query.get("multipart-manifest") == "put":
        etags = "".join(entry["etag"] for entry in json.loads(call.body))
        return Reply(201, b"", {"ETag": f'"{hashlib.md5(etags.encode()).hexdigest()}"'})
    return Reply(201, b"", {"ETag": hashlib.md5(call.body).hexdigest()})


def _files_calls(cloud: Cloud) -> list[str]:
    def show(c: Call) -> str:
        manifest = c.query.get("multipart-manifest")
        return f"{c} ?multipart-manifest={manifest}" if manifest else str(c)

    return [show(c) for c in cloud.calls if "clouddrive" in c.url]


def test_rackspace_uploads_a_large_image_as_a_static_large_object(
    rax_env: Path, test_disk: Path, listener: int
) -> None:
    runs = RunStore(rax_env / "state")
    with recorded() as cloud:
        _rackspace(cloud, TASK_DONE)
        cloud.route("PUT", RAX_FILES + r"/imagekit/", _swift_put)
        cloud.route(
            "DELETE",
            RAX_FILES + r"/imagekit/[^?]+\.segments/",
            # gone with their manifest
            Reply(404, b"<html><h1>Not Found</h1></html>", {"Content-Type": "text/html"}),
        )
        record, vhd, report = boot_and_teardown(
            instant(SmallObjects),
            runs,
            FileImageSource(test_disk),
            listener,
            image="disk.vhd",
            size="m1.small",
        )
    rid = record.run_id
    obj = f"/v1/MossoCloudFS_abc/imagekit/{rid}.vhd"
    assert _files_calls(cloud) == [
        f"PUT {obj}.segments/00000",
        f"PUT {obj}.segments/00001",
        f"PUT {obj}.segments/00002",
        f"PUT {obj} ?multipart-manifest=put",
        # teardown, newest first: the manifest takes its segments along
        f"DELETE {obj} ?multipart-manifest=delete",
        f"DELETE {obj}.segments/00002",
        f"DELETE {obj}.segments/00001",
        f"DELETE {obj}.segments/00000",
    ]
    pieces = [c for c in cloud.calls if ".segments/" in c.path and c.method == "PUT"]
    assert [len(p.body) for p in pieces] == [SEGMENT, SEGMENT, len(vhd) - 2 * SEGMENT]
    assert b"".join(p.body for p in pieces) == vhd
    assert all(p.headers["Content-Length"] == str(len(p.body)) for p in pieces)
    manifest = cloud.find("PUT", f"/imagekit/{rid}.vhd")[-1]
    assert manifest.headers["Content-Type"] == "application/json"
    assert json.loads(manifest.body) == [
        {
            "path": f"/imagekit/{rid}.vhd.segments/{i:05d}",
            "etag": hashlib.md5(p.body).hexdigest(),
            "size_bytes": len(p.body),
        }
        for i, p in enumerate(pieces)
    ]
    # The import task reads the manifest's name: Swift serves it as the whole VHD.
    task = cloud.find("POST", "/v2/tasks")[0].json()
    assert task["input"]["import_from"] == f"imagekit/{rid}.vhd"
    assert any("static large object of 3 segments" in n for n in record.notes)
    assert [str(r) for r in report.already_gone] == [
        f"object {rid}.vhd.segments/{i:05d}" for i in (2, 1, 0)
    ]
    assert not report.failed and runs.list() == []


def test_a_segment_stored_with_another_etag_is_an_error(rax_env: Path, test_disk: Path) -> None:
    runs = RunStore(rax_env / "state")
    with recorded() as cloud:
        _rackspace(cloud, Reply(200, {"id": "task-1", "status": "processing"}))
        cloud.route("PUT", RAX_FILES + r"/imagekit/", Reply(201, b"", {"ETag": "0" * 32}))
        with pytest.raises(ProviderError, match=r"with ETag 0+, not its MD5"):
            _boot(instant(SmallObjects), rax_env / "state", test_disk, runs, size="m1.small")
    assert not [c for c in cloud.calls if c.query.get("multipart-manifest") == "put"]
    # The one segment sent is deleted again with the failed boot.
    assert [str(c) for c in cloud.calls if c.method == "DELETE"] == [
        f"DELETE {cloud.find('PUT', '.segments/00000')[0].path}"
    ]
