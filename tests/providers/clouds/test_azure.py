"""The azure provider, request by request, against hand-written responses.

The responses are written from the Azure REST reference: Microsoft Entra ID OAuth2 token
(v1 endpoint, as libcloud 3.9.1 calls it), Blob service 2018-11-09 (Create Container, Put Blob,
Put Page, Delete Blob), ARM Resource Groups 2021-04-01, Disks 2023-01-02, Images 2023-03-01,
Network 2023-05-01 (NSG, virtual network, public IP), and the versions libcloud uses for NICs
(2018-06-01) and VMs (2021-11-01), with ``Azure-AsyncOperation`` on long operations. The page
blob upload against a real emulator is in ``test_azure_pageblob.py``.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from libcloud.compute.base import Node
from libcloud.compute.types import NodeState

from imagekit.convert import convert_image
from imagekit.errors import ProviderError
from imagekit.guest.profile import GuestProfile
from imagekit.providers import health
from imagekit.providers.azure import arm, vm
from imagekit.providers.azure.provider import AzureProvider
from imagekit.providers.base import NodeRequest, PreparedImage
from imagekit.providers.boot import BootOptions, boot
from imagekit.providers.runs import RunStore
from imagekit.providers.sources import FileImageSource
from tests.providers.clouds.flow import boot_and_teardown, instant
from tests.providers.clouds.recorded import Call, Cloud, Reply, recorded

SUB, RG, LOC, ACCOUNT = "00000000-1111-2222-3333-444444444444", "dr-rg", "westeurope", "drimages"
ARM = r"https://management\.azure\.com"
BLOB = rf"https://{ACCOUNT}\.blob\.core\.windows\.net"
ASYNC = "https://management.azure.com/subscriptions/x/providers/Microsoft.Compute/operations/op1?api-version=2023-01-02"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    values = {
        "AZURE_SUBSCRIPTION_ID": SUB,
        "AZURE_RESOURCE_GROUP": RG,
        "AZURE_LOCATION": LOC,
        "AZURE_STORAGE_ACCOUNT": ACCOUNT,
        "AZURE_TENANT_ID": "tenant-1",
        "AZURE_CLIENT_ID": "client-1",
        "AZURE_CLIENT_SECRET": "s3cret-value",
        "AZURE_STORAGE_KEY": base64.b64encode(b"k" * 64).decode(),
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return tmp_path


def _resource(call: Call) -> Reply:
    """ARM's answer to a PUT (201 + Azure-AsyncOperation) or GET of any resource we made."""
    body: dict[str, Any] = {
        "id": call.path,
        "name": call.path.rsplit("/", 1)[1],
        "location": LOC,
        "properties": {"provisioningState": "Succeeded", "ipAddress": "127.0.0.1"},
    }
    if "/networkInterfaces/" in call.path:
        body["properties"]["ipConfigurations"] = [
            {
                "name": "myip1",
                "properties": {
                    "privateIPAddress": "10.80.0.4",
                    "publicIPAddress": {
                        "id": call.path.replace("-nic", "-ip").replace(
                            "networkInterfaces", "publicIPAddresses"
                        )
                    },
                },
            }
        ]
    if "/virtualMachines/" in call.path:
        body["properties"].update(
            hardwareProfile={"vmSize": "Standard_D2s_v5"},
            networkProfile={
                "networkInterfaces": [
                    {
                        "id": call.path.replace(
                            "Microsoft.Compute/virtualMachines",
                            "Microsoft.Network/networkInterfaces",
                        )
                        + "-nic"
                    }
                ]
            },
        )
    if call.method == "PUT" and "/networkInterfaces/" not in call.path:
        return Reply(201, body, {"Azure-AsyncOperation": ASYNC})
    return Reply(200, body)


SIZES = [
    {
        "name": n,
        "numberOfCores": c,
        "memoryInMB": m,
        "resourceDiskSizeInMB": 8192,
        "osDiskSizeInMB": 1047552,
        "maxDataDiskCount": 4,
    }
    for n, c, m in [
        ("Standard_B1s", 1, 1024),
        ("Standard_D2s_v5", 2, 8192),
        ("Standard_D4s_v5", 4, 16384),
    ]
]


def _routes(
    cloud: Cloud,
    *,
    group_exists: bool = False,
    import_status: str = "Succeeded",
    vm_error: Reply | None = None,
) -> None:
    cloud.route(
        "POST",
        r"https://login\.microsoftonline\.com/tenant-1/oauth2/token",
        Reply(
            body={"access_token": "eyJ.test", "expires_on": "9999999999", "token_type": "Bearer"}
        ),
    )
    cloud.route(
        "PUT",
        BLOB + r"/imagekit\?restype=container",
        Reply(201, b"", {"ETag": "0x1", "Last-Modified": "Wed, 01 Jan 2026 00:00:00 GMT"}),
    )
    cloud.route("PUT", BLOB + r"/imagekit/[^?]+\.vhd", Reply(201, b""))
    cloud.route("DELETE", BLOB + r"/imagekit/", Reply(202, b""))
    cloud.route(
        "GET",
        ARM + rf"/subscriptions/{SUB}/resourceGroups/{RG}\?",
        Reply(200, {"id": RG})
        if group_exists
        else Reply(404, {"error": {"code": "ResourceGroupNotFound", "message": "not found"}}),
    )
    cloud.route(
        "PUT",
        ARM + rf"/subscriptions/{SUB}/resourceGroups/{RG}\?",
        Reply(201, {"id": RG, "name": RG, "location": LOC}),
    )
    cloud.route(
        "PUT", ARM + r"/subscriptions/.*/providers/Microsoft\.(Compute|Network)/", _resource
    )
    cloud.route(
        "GET",
        ARM + r"/subscriptions/.*/providers/Microsoft\.(Compute|Network)/[^?]*/[^/?]+\?",
        _resource,
    )
    cloud.route(
        "GET",
        ARM + r"/subscriptions/.*/InstanceView",
        Reply(body={"statuses": [{"code": "PowerState/running"}]}),
    )
    cloud.route(
        "GET",
        ARM + rf"/subscriptions/{SUB}/providers/Microsoft\.Compute/locations/{LOC}/vmSizes",
        Reply(body={"value": SIZES}),
    )
    cloud.route(
        "DELETE",
        ARM + r"/subscriptions/",
        Reply(202, b"", {"Location": ASYNC}),
        Reply(202, b"", {"Location": ASYNC}),
    )
    # requests_mock tries the newest route first: the operation outranks the generic GET.
    cloud.route(
        "GET",
        ARM + r"/subscriptions/x/providers/Microsoft\.Compute/operations/op1",
        Reply(body={"status": "InProgress"}),
        Reply(
            body={
                "status": import_status,
                "error": {"code": "ImageRejected", "message": "The VHD footer is not valid"},
            }
            if import_status == "Failed"
            else {"status": "Succeeded"}
        ),
        Reply(body={"status": "Succeeded"}),
    )
    if vm_error is not None:
        cloud.route("PUT", ARM + r"/subscriptions/.*/virtualMachines/", vm_error)


azure = instant(AzureProvider)
#: What teardown deletes of a run's node and network, newest first (the kinds in the paths).
NODE_DELETES = [
    "virtualMachines",
    "disks",
    "networkInterfaces",
    "publicIPAddresses",
    "virtualNetworks",
    "networkSecurityGroups",
]


def _arm_calls(call: Call) -> bool:
    return "oauth2" not in call.url and "comp=page" not in call.url


def test_full_flow_upload_register_boot_health_teardown(
    env: Path, test_disk: Path, listener: int
) -> None:
    runs = RunStore(env / "state")
    source = FileImageSource(test_disk, name="web", metadata={"instance_type": "m5.large"})
    with recorded() as cloud:
        _routes(cloud)
        record, vhd, report = boot_and_teardown(azure, runs, source, listener, image="disk.vhd")
    rid = record.run_id
    rg = f"/subscriptions/{SUB}/resourceGroups/{RG}"
    net, comp = f"{rg}/providers/Microsoft.Network", f"{rg}/providers/Microsoft.Compute"
    op = "/subscriptions/x/providers/Microsoft.Compute/operations/op1"
    node = f"{rid}-1"
    sequence = cloud.sequence(skip=lambda c: not _arm_calls(c))
    assert sequence == [
        f"GET /subscriptions/{SUB}/providers/Microsoft.Compute/locations/{LOC}/vmSizes",
        "PUT /imagekit",  # Create Container (already there is fine too)
        f"PUT /imagekit/{rid}.vhd",  # Put Blob: the empty page blob
        f"GET {rg}",  # the group is missing → created and recorded
        f"PUT {rg}",
        f"PUT {comp}/disks/{rid}-disk",
        f"GET {op}",  # InProgress
        f"GET {op}",  # Succeeded
        f"GET {comp}/disks/{rid}-disk",
        f"PUT {comp}/images/{rid}-image",
        f"GET {op}",
        f"GET {comp}/images/{rid}-image",
        f"PUT {net}/networkSecurityGroups/{rid}-nsg",
        f"GET {op}",
        f"GET {net}/networkSecurityGroups/{rid}-nsg",
        f"PUT {net}/virtualNetworks/{rid}-vnet",
        f"GET {op}",
        f"GET {net}/virtualNetworks/{rid}-vnet",
        f"PUT {net}/publicIPAddresses/{node}-ip",
        f"GET {op}",
        f"GET {net}/publicIPAddresses/{node}-ip",
        f"PUT {net}/networkInterfaces/{node}-nic",
        f"PUT {comp}/virtualMachines/{node}",
        f"GET {comp}/virtualMachines/{node}",  # our poll: Succeeded
        f"GET {comp}/virtualMachines/{node}",  # the node as it is now
        f"GET {net}/networkInterfaces/{node}-nic",
        f"GET {net}/publicIPAddresses/{node}-ip",
        f"GET {comp}/virtualMachines/{node}/InstanceView",
        # teardown, newest first
        f"DELETE {comp}/virtualMachines/{node}",
        f"GET {op}",
        f"DELETE {comp}/disks/{node}",
        f"GET {op}",
        f"DELETE {net}/networkInterfaces/{node}-nic",
        f"GET {op}",
        f"DELETE {net}/publicIPAddresses/{node}-ip",
        f"GET {op}",
        f"DELETE {net}/virtualNetworks/{rid}-vnet",
        f"GET {op}",
        f"DELETE {net}/networkSecurityGroups/{rid}-nsg",
        f"GET {op}",
        f"DELETE {comp}/images/{rid}-image",
        f"GET {op}",
        f"DELETE {comp}/disks/{rid}-disk",
        f"GET {op}",
        f"DELETE {rg}",  # made by this run (recorded after the upload)
        f"GET {op}",
        f"DELETE /imagekit/{rid}.vhd",
    ]
    # The page blob: created empty at the VHD's size, then only its data ranges written.
    create = cloud.find("PUT", f"/imagekit/{rid}.vhd")[0]
    assert create.headers["x-ms-blob-type"] == "PageBlob"
    assert create.headers["x-ms-blob-content-length"] == str(len(vhd))
    assert create.headers["Authorization"].startswith(f"SharedKey {ACCOUNT}:")
    pages = [c for c in cloud.calls if c.query.get("comp") == "page"]
    rebuilt = bytearray(len(vhd))
    for page in pages:
        first, last = map(int, page.headers["x-ms-range"].removeprefix("bytes=").split("-"))
        assert first % 512 == 0 and (last + 1) % 512 == 0 and last - first < 4 << 20
        rebuilt[first : last + 1] = page.body
    assert bytes(rebuilt) == vhd  # what was skipped is zeros
    assert sum(len(p.body) for p in pages) < len(vhd) // 2
    # The managed disk imports that blob; the image is made of the disk.
    disk = cloud.find("PUT", "/disks/")[0]
    assert disk.query["api-version"] == "2023-01-02"
    assert disk.json()["properties"]["creationData"] == {
        "createOption": "Import",
        "sourceUri": f"https://{ACCOUNT}.blob.core.windows.net/imagekit/{rid}.vhd",
        "storageAccountId": f"{rg}/providers/Microsoft.Storage/storageAccounts/{ACCOUNT}",
    }
    image = cloud.find("PUT", "/images/")[0].json()
    assert (
        image["properties"]["storageProfile"]["osDisk"]["managedDisk"]["id"]
        == f"{comp}/disks/{rid}-disk"
    )
    nsg = cloud.find("PUT", "/networkSecurityGroups/")[0].json()
    assert [
        r["properties"]["destinationPortRange"] for r in nsg["properties"]["securityRules"]
    ] == [str(listener)]
    ip = cloud.find("PUT", "/publicIPAddresses/")[0].json()
    assert ip["sku"] == {"name": "Standard"}
    assert ip["properties"]["publicIPAllocationMethod"] == "Static"
    nic = cloud.find("PUT", "/networkInterfaces/")[0].json()
    config = nic["properties"]["ipConfigurations"][0]["properties"]
    assert config["subnet"]["id"] == f"{net}/virtualNetworks/{rid}-vnet/subnets/default"
    assert config["publicIPAddress"]["id"] == f"{net}/publicIPAddresses/{node}-ip"
    vm_put = cloud.find("PUT", "/virtualMachines/")[0]
    assert vm_put.query["api-version"] == "2021-11-01"
    vm_body = vm_put.json()
    assert vm_body["location"] == LOC and vm_body["tags"] == {"imagekit-run": rid}
    vm = vm_body["properties"]
    assert vm["hardwareProfile"]["vmSize"] == "Standard_D2s_v5"  # m5.large: 2 vCPU, 8 GiB
    assert vm["storageProfile"]["imageReference"] == {"id": f"{comp}/images/{rid}-image"}
    os_disk = vm["storageProfile"]["osDisk"]
    assert os_disk["managedDisk"] == {"storageAccountType": "Standard_LRS"}
    assert os_disk["deleteOption"] == "Delete" and os_disk["createOption"] == "FromImage"
    assert os_disk["name"] == node  # the name teardown deletes the disk by
    assert vm["networkProfile"] == {
        "networkInterfaces": [{"id": f"{net}/networkInterfaces/{node}-nic"}]
    }
    # Managed boot diagnostics: the serial log the console checks and host-key pinning read.
    assert vm["diagnosticsProfile"] == {"bootDiagnostics": {"enabled": True}}
    user_data = base64.b64decode(vm["osProfile"]["customData"]).decode()
    assert user_data.startswith("#cloud-config")
    linux = vm["osProfile"]["linuxConfiguration"]
    assert linux["disablePasswordAuthentication"] is True
    assert linux["ssh"]["publicKeys"][0]["keyData"].startswith("ssh-ed25519 ")
    assert linux["ssh"]["publicKeys"][0]["path"] == "/home/azureuser/.ssh/authorized_keys"
    assert (
        "adminPassword" not in vm["osProfile"] and vm["osProfile"]["adminUsername"] == "azureuser"
    )
    assert record.status == "healthy" and record.nodes[0].endpoints[0].host == "127.0.0.1"
    assert not report.failed and runs.list() == []
    # The secrets went to the token endpoint only, never anywhere else.
    assert not any(
        "s3cret-value" in c.url or b"s3cret-value" in c.body
        for c in cloud.calls
        if "oauth2" not in c.url
    )


def test_import_rejected_tears_down_what_exists(env: Path, test_disk: Path) -> None:
    runs = RunStore(env / "state")
    source = FileImageSource(test_disk, name="web")
    with recorded() as cloud:
        _routes(cloud, group_exists=True, import_status="Failed")
        with pytest.raises(ProviderError, match="ImageRejected") as info:
            boot(azure(state_dir=env / "state"), source, BootOptions(adapt=False), runs)
    assert "torn down" in str(info.value)
    deletes = [c.path for c in cloud.calls if c.method == "DELETE"]
    # The existing group is not ours: only the disk (being imported) and the blob go.
    assert [d.rsplit("/", 2)[-2] for d in deletes] == ["disks", "imagekit"]
    assert runs.list() == []


def test_quota_error_at_boot_is_clear_and_everything_made_is_removed(
    env: Path, test_disk: Path
) -> None:
    runs = RunStore(env / "state")
    quota = Reply(
        409,
        {
            "error": {
                "code": "OperationNotAllowed",
                "message": "Operation could not be completed as it results in exceeding "
                "approved standardDSv5Family Cores quota.",
            }
        },
    )
    with recorded() as cloud:
        _routes(cloud, group_exists=True, vm_error=quota)
        with pytest.raises(ProviderError, match="quota") as info:
            boot(
                azure(state_dir=env / "state"),
                FileImageSource(test_disk),
                BootOptions(size="Standard_B1s", adapt=False),
                runs,
            )
    assert info.value.hint and "quota increase" in info.value.hint
    kinds = [c.path.split("/")[-2] for c in cloud.calls if c.method == "DELETE"]
    assert kinds == [*NODE_DELETES, "images", "disks", "imagekit"]
    assert runs.list() == []


def test_dry_run_makes_no_request(env: Path) -> None:
    with recorded() as cloud:
        provider = azure(state_dir=env / "state")
        size = type("S", (), {"id": "Standard_B1s"})()
        calls = provider.planned_calls(NodeRequest(1, size, "", (22,)), "azure-x")  # type: ignore[arg-type]
    assert cloud.calls == []
    assert "PageBlob" in calls[0] and any("Import" in c for c in calls)


def _scope(*answers: Any, sleep: Any) -> arm.Arm:
    """An ARM scope whose operation looks get ``answers`` in turn (no HTTP)."""
    queue = list(answers)
    driver = SimpleNamespace(connection=SimpleNamespace(request=lambda path, params: queue.pop(0)))
    return arm.Arm(driver, SUB, RG, LOC, poll_interval=1.0, sleep=sleep)


def test_long_operation_waits_retry_after_before_each_look() -> None:
    slept: list[float] = []
    scope = _scope(
        SimpleNamespace(status=200, object={"status": "InProgress"}),
        SimpleNamespace(status=200, object={"status": "Succeeded"}),
        sleep=slept.append,
    )
    started = SimpleNamespace(headers={"Azure-AsyncOperation": ASYNC, "Retry-After": "7"})
    arm.wait(scope, "disk import", started, time.monotonic() + 60)
    assert slept == [7.0, 7.0]  # ARM's Retry-After outranks our 1 s interval


def test_long_operation_past_its_deadline_is_a_transient_timeout() -> None:
    scope = _scope(SimpleNamespace(status=202, object=None), sleep=lambda seconds: None)
    started = SimpleNamespace(headers={"Location": ASYNC})
    with pytest.raises(ProviderError, match="Azure disk import did not finish in time") as info:
        arm.wait(scope, "disk import", started, time.monotonic())
    assert info.value.transient


CONSOLE = """[    5.2] cloud-init[801]: Cloud-init v. 23.4 running 'modules:final'
-----BEGIN SSH HOST KEY KEYS-----
ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB6kt9Cm8V0HqdlLgnXD16Un4cVVzLYk0k0r6u2ZEv1B root@web-1
-----END SSH HOST KEY KEYS-----
"""
#: The shape of a managed boot diagnostics SAS URI (a storage account Azure owns).
SERIAL_URI = (
    "https://md-abcdef.blob.storage.azure.net/bootdiag/web-1.serialconsole.log"
    "?sv=2018-03-28&sr=b&sp=r&sig=abc%3D"
)


def test_console_is_the_serial_log_from_boot_diagnostics(env: Path) -> None:
    """Virtual Machines - Retrieve Boot Diagnostics Data (POST, 2021-11-01) answers SAS URIs; the
    serial log blob is read through its URI. Not written yet (404) → empty so far; refused → no
    console at all."""
    provider = azure(state_dir=env / "state")
    run = RunStore(env / "state").create("azure")
    vm_id = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute"
    vm_id += "/virtualMachines/web-1"
    with recorded() as cloud:
        _routes(cloud)
        cloud.route(
            "POST",
            ARM + r"/subscriptions/.*/virtualMachines/web-1/retrieveBootDiagnosticsData",
            Reply(200, {"consoleScreenshotBlobUri": "x", "serialConsoleLogBlobUri": SERIAL_URI}),
            Reply(200, {"consoleScreenshotBlobUri": "x", "serialConsoleLogBlobUri": SERIAL_URI}),
            Reply(403, {"error": {"code": "AuthorizationFailed", "message": "no"}}),
        )
        cloud.route(
            "GET",
            r"https://md-abcdef\.blob\.storage\.azure\.net/bootdiag/",
            Reply(404, b"<Error><Code>BlobNotFound</Code></Error>"),
            Reply(200, CONSOLE.encode()),
        )
        node = Node(vm_id, "web-1", NodeState.RUNNING, ["127.0.0.1"], [], None)
        target = provider.health_target(node, run)
        early, console, refused = target.console(), target.console(), target.console()
    assert early == ""
    assert console == CONSOLE
    assert health.console_host_keys(console) == [
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB6kt9Cm8V0HqdlLgnXD16Un4cVVzLYk0k0r6u2ZEv1B"
    ]
    assert refused is None
    posts = cloud.find("POST", "/retrieveBootDiagnosticsData")
    assert [c.query["api-version"] for c in posts] == ["2021-11-01"] * 3
    blob_reads = [c for c in cloud.calls if "md-abcdef" in c.url]
    assert len(blob_reads) == 2 and all("Authorization" not in c.headers for c in blob_reads)


# --- generalized or specialized: does the guest report Ready? ----------------------------------


@pytest.mark.parametrize(
    ("guest", "state"),
    [
        (None, "Generalized"),  # not inspected: what imagekit always did
        (GuestProfile(azure_ready=True), "Generalized"),
        (GuestProfile(azure_ready=False), "Specialized"),
        # Not known: a VM that comes up can be checked; one stuck provisioning only times out.
        (GuestProfile(azure_ready=None), "Specialized"),
    ],
)
def test_os_state_follows_whether_the_guest_reports_ready(guest, state):
    assert vm.os_state(guest) == state


@pytest.fixture(scope="module")
def vhd(test_disk: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("vhd") / "disk.vhd"
    return convert_image(test_disk, out, "vhd-azure").output


def _boot_nodes(env: Path, vhd: Path, guest: GuestProfile) -> tuple[Cloud, Any, Any]:
    """Upload, register and create one node of ``vhd`` with ``guest``, then tear down."""
    runs = RunStore(env / "state")
    prepared = PreparedImage(vhd, "vhd-azure", "web", "img-1", 1 << 26, guest=guest)
    with recorded() as cloud:
        _routes(cloud, group_exists=True)
        provider = azure(state_dir=env / "state")
        run = runs.create("azure", settings=provider.settings)
        image = provider.register_image(provider.upload(prepared, run), run)
        size, _ = provider.choose_size("Standard_B1s", prepared)
        key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB6kt9Cm8V0HqdlLgnXD16Un4cVVzLYk0k0r6u2ZEv1B"
        request = NodeRequest(1, size, "#cloud-config\n", (22,), run.run_id, key)
        provider.create_nodes(image, request, run)
        record = runs.open(run.run_id).record
        report = provider.teardown(run)
    return cloud, record, report


def test_a_guest_that_reports_ready_is_booted_generalized_with_its_key(
    env: Path, vhd: Path
) -> None:
    cloud, record, report = _boot_nodes(env, vhd, GuestProfile(azure_ready=True, boot_mode="uefi"))
    image = cloud.find("PUT", "/images/")[0].json()["properties"]
    assert image["hyperVGeneration"] == "V2"
    assert image["storageProfile"]["osDisk"]["osState"] == "Generalized"
    body = cloud.find("PUT", "/virtualMachines/")[0].json()["properties"]
    assert body["storageProfile"]["osDisk"]["createOption"] == "FromImage"
    assert body["osProfile"]["linuxConfiguration"]["ssh"]["publicKeys"][0]["keyData"].startswith(
        "ssh-ed25519 "
    )
    assert not [n for n in record.notes if "specialized" in n]
    assert not report.failed


def test_a_guest_that_never_reports_ready_is_booted_specialized_without_os_profile(
    env: Path, vhd: Path
) -> None:
    cloud, record, report = _boot_nodes(env, vhd, GuestProfile(azure_ready=False))
    rid = record.run_id
    comp = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute"
    node = f"{rid}-1"
    puts = [c.path for c in cloud.calls if c.method == "PUT" and "/providers/" in c.path]
    # No managed image: the imported disk is copied for the node, and the copy attached.
    assert [p for p in puts if "Microsoft.Compute" in p] == [
        f"{comp}/disks/{rid}-disk",
        f"{comp}/disks/{node}",
        f"{comp}/virtualMachines/{node}",
    ]
    copy = cloud.find("PUT", f"/disks/{node}")[0].json()
    assert copy["properties"] == {
        "osType": "Linux",
        "hyperVGeneration": "V1",
        "creationData": {"createOption": "Copy", "sourceResourceId": f"{comp}/disks/{rid}-disk"},
    }
    assert copy["sku"] == {"name": "Standard_LRS"}
    body = cloud.find("PUT", "/virtualMachines/")[0].json()["properties"]
    assert "osProfile" not in body  # Azure refuses one for a specialized disk
    assert body["storageProfile"] == {
        "osDisk": {
            "name": node,
            "osType": "Linux",
            "caching": "ReadWrite",
            "deleteOption": "Delete",
            "createOption": "Attach",
            "managedDisk": {"id": f"{comp}/disks/{node}"},
        }
    }
    assert body["diagnosticsProfile"] == {"bootDiagnostics": {"enabled": True}}
    assert any("specialized disk without osProfile" in n for n in record.notes)
    # Teardown: the node, its disk copy, the network, the imported disk, the blob.
    kinds = [c.path.split("/")[-2] for c in cloud.calls if c.method == "DELETE"]
    assert kinds == [*NODE_DELETES, "disks", "imagekit"]  # no image was made
    assert not report.failed


def test_specialized_nodes_are_checked_without_a_login(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No key reached the guest: an ``ssh:`` check is made ``tcp:22``, and the run says so."""
    seen: list[list[Any]] = []
    monkeypatch.setattr(health, "wait_healthy", lambda t, checks, timeout: seen.append(checks))
    monkeypatch.setattr(AzureProvider, "health_target", lambda self, node, run: node)
    run = RunStore(env / "state").create("azure")
    provider = azure(state_dir=env / "state")
    checks = [health.SshCheck("true"), health.HttpCheck(80)]
    provider.wait_healthy(["n"], checks, run, 1.0)  # type: ignore[list-item]
    provider._os_state = vm.SPECIALIZED
    provider.wait_healthy(["n"], checks, run, 1.0)  # type: ignore[list-item]
    assert seen == [checks, [health.HttpCheck(80), health.TcpCheck(22)]]
    assert [n for n in run.record.notes if "tcp:22" in n]
