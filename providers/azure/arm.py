"""Azure Resource Manager calls libcloud 3.9.1 lacks, made through its signed ARM connection.

libcloud's ``AzureNodeDriver`` creates NICs and reads VMs; it cannot import a managed disk, create
a managed image, a virtual network with an NSG-guarded subnet, or a Standard-SKU public IP, never
waits on long operations, and its ``create_node`` cannot turn on boot diagnostics — without which
Azure keeps no serial console log to read host keys and boot messages from. Each function here is
one ARM REST call, named after it, with the API version it was written against. Long operations
are polled through ``Azure-AsyncOperation`` (or ``Location``) with a deadline of our own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
from libcloud.common.exceptions import BaseHTTPError
from libcloud.common.types import InvalidCredsError, LibcloudError

from imagekit.errors import ProviderError
from imagekit.providers.cloud.common import poll

#: API versions of the calls made here (each documented in the Azure REST reference).
RESOURCE_GROUP_API = "2021-04-01"
DISK_API = "2023-01-02"
IMAGE_API = "2023-03-01"
NETWORK_API = "2023-05-01"
#: libcloud's VM_API_VERSION (it reads and deletes the VMs); managed boot diagnostics (no storage
#: account of ours) and retrieveBootDiagnosticsData exist from 2020-06-01.
VM_API = "2021-11-01"
#: Reading the serial log blob through its SAS URI: one plain HTTPS GET.
SERIAL_LOG_TIMEOUT = 30.0
#: Seconds between polls of a long operation; ARM's own Retry-After is honoured when larger.
POLL_INTERVAL = 5.0
#: ARM error codes that mean "you are out of quota", not "your request is wrong".
QUOTA_CODES = ("QuotaExceeded", "OperationNotAllowed", "SkuNotAvailable", "ZonalAllocationFailed")


def call_driver(fn: Callable[[], Any]) -> Any:
    """A libcloud ARM driver call, its errors translated like ``request``'s."""
    try:
        return fn()
    except InvalidCredsError as exc:
        raise ProviderError(
            "Azure refused the credentials",
            hint="check AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET",
        ) from exc
    except BaseHTTPError as exc:
        raise arm_error("the call", exc.code, str(exc.message)) from exc
    except LibcloudError as exc:
        raise ProviderError(f"Azure call failed: {exc.value}") from exc


@dataclass(frozen=True)
class Arm:
    """The ARM scope imagekit works in: one subscription, one resource group, one location."""

    driver: Any
    subscription: str
    resource_group: str
    location: str
    poll_interval: float = POLL_INTERVAL
    sleep: Callable[[float], None] = time.sleep

    def rg_path(self) -> str:
        return f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"

    def resource_id(self, kind: str, name: str) -> str:
        return f"{self.rg_path()}/providers/{kind}/{name}"


def request(
    arm: Arm,
    what: str,
    path: str,
    api_version: str,
    method: str = "GET",
    body: Mapping[str, Any] | None = None,
) -> Any:
    """One signed ARM call; cloud errors become ``ProviderError`` with ARM's code and message."""
    try:
        return arm.driver.connection.request(
            path, params={"api-version": api_version}, data=body, method=method
        )
    except InvalidCredsError as exc:
        raise ProviderError(
            f"Azure refused the credentials ({what})",
            hint="check AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET",
        ) from exc
    except BaseHTTPError as exc:
        raise arm_error(what, exc.code, str(exc.message)) from exc
    except LibcloudError as exc:
        raise ProviderError(f"Azure {what} failed: {exc.value}") from exc


def arm_error(what: str, status: int, message: str) -> ProviderError:
    """The error for ARM's ``[Code] message`` answer, with a hint for the common causes."""
    if status in (401, 403):
        return ProviderError(
            f"Azure denied {what}: {message}",
            hint="the service principal needs Contributor on the resource group",
        )
    if any(code in message for code in QUOTA_CODES) or "quota" in message.lower():
        return ProviderError(
            f"Azure quota or capacity refused {what}: {message}",
            hint="request a quota increase or choose another size or location",
        )
    return ProviderError(f"Azure {what} failed: {message}", transient=status in (429, 500, 503))


def wait(arm: Arm, what: str, response: Any, deadline: float) -> None:
    """Wait for the long operation ``response`` started (``Azure-AsyncOperation``/``Location``)."""
    headers = _lower(response.headers)
    url = headers.get("azure-asyncoperation") or headers.get("location")
    if url is None:
        return  # finished synchronously (200/201 with a final body, 204 on delete)
    async_op = "azure-asyncoperation" in headers
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query))
    interval = max(arm.poll_interval, float(headers.get("retry-after", 0) or 0))

    def look() -> Any:
        try:
            return arm.driver.connection.request(parts.path, params=params)
        except BaseHTTPError as exc:
            raise arm_error(what, exc.code, str(exc.message)) from exc

    def finished(answer: Any) -> bool:
        if not async_op:  # a Location answers 202 until the operation is over
            return int(answer.status) != 202
        return (answer.object or {}).get("status") == "Succeeded"

    def failed(answer: Any) -> ProviderError | None:
        status = str((answer.object or {}).get("status", "")) if async_op else ""
        if status not in ("Failed", "Canceled"):
            return None
        error = (answer.object or {}).get("error") or {}
        return arm_error(what, 400, f"[{error.get('code', status)}] {error.get('message', status)}")

    # ARM asks for a pause (Retry-After) before the first look, not only between looks.
    arm.sleep(interval)
    poll(
        look,
        done=finished,
        failed=failed,
        late=lambda _: ProviderError(f"Azure {what} did not finish in time", transient=True),
        deadline=deadline,
        interval=interval,
        sleep=arm.sleep,
    )


def put(
    arm: Arm, what: str, path: str, api_version: str, body: Mapping[str, Any], deadline: float
) -> dict[str, Any]:
    """PUT a resource and wait for it; returns the resource as ARM last described it."""
    response = request(arm, what, path, api_version, "PUT", body)
    headers = _lower(response.headers)
    if "azure-asyncoperation" not in headers and "location" not in headers:
        return dict(response.object or {})  # done: the body is the final resource
    wait(arm, what, response, deadline)
    return dict(request(arm, what, path, api_version).object or {})


def delete(arm: Arm, what: str, resource_id: str, api_version: str, deadline: float) -> bool:
    """DELETE a resource and wait; ``False`` when it was already gone (404)."""
    try:
        response = arm.driver.connection.request(
            resource_id, params={"api-version": api_version}, method="DELETE"
        )
    except BaseHTTPError as exc:
        if exc.code == 404:
            return False
        raise arm_error(what, exc.code, str(exc.message)) from exc
    if int(response.status) == 204:
        return False
    wait(arm, what, response, deadline)
    return True


def exists(arm: Arm, path: str, api_version: str) -> bool:
    """GET the resource: ``False`` on 404."""
    try:
        arm.driver.connection.request(path, params={"api-version": api_version})
    except BaseHTTPError as exc:
        if exc.code == 404:
            return False
        raise arm_error(f"lookup of {path}", exc.code, str(exc.message)) from exc
    return True


def wait_provisioned(arm: Arm, what: str, path: str, api_version: str, deadline: float) -> None:
    """Poll a resource until ``provisioningState`` is Succeeded (libcloud's create_node returns
    as soon as ARM accepts the PUT, before the VM exists)."""

    def state(body: Any) -> str:
        return str((body or {}).get("properties", {}).get("provisioningState", ""))

    def failed(body: Any) -> ProviderError | None:
        if state(body) not in ("Failed", "Canceled"):
            return None
        return ProviderError(f"Azure {what} ended {state(body)}", hint="see the activity log")

    poll(
        lambda: request(arm, what, path, api_version).object,
        done=lambda body: state(body) == "Succeeded",
        failed=failed,
        late=lambda body: ProviderError(
            f"Azure {what} not done in time (state {state(body)})", transient=True
        ),
        deadline=deadline,
        interval=arm.poll_interval,
        sleep=arm.sleep,
    )


def _lower(headers: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in dict(headers).items()}


# -- the calls -------------------------------------------------------------------------------


def resource_groups_create(arm: Arm, deadline: float) -> dict[str, Any]:
    """Resource Groups - Create Or Update."""
    path = arm.rg_path()
    body = {"location": arm.location, "tags": {"created-by": "imagekit"}}
    return put(arm, "resource group creation", path, RESOURCE_GROUP_API, body, deadline)


def network_security_groups_create(
    arm: Arm, name: str, ports: Sequence[int], deadline: float
) -> dict[str, Any]:
    """Network Security Groups - Create Or Update, one inbound allow rule per health port."""
    rules = [
        {
            "name": f"allow-tcp-{port}",
            "properties": {
                "protocol": "Tcp",
                "sourcePortRange": "*",
                "destinationPortRange": str(port),
                "sourceAddressPrefix": "*",
                "destinationAddressPrefix": "*",
                "access": "Allow",
                # 100..4096 are user priorities; lower runs first.
                "priority": 100 + index,
                "direction": "Inbound",
            },
        }
        for index, port in enumerate(sorted(set(ports)))
    ]
    body = {"location": arm.location, "properties": {"securityRules": rules}}
    path = arm.resource_id("Microsoft.Network/networkSecurityGroups", name)
    return put(arm, "NSG creation", path, NETWORK_API, body, deadline)


def virtual_networks_create(
    arm: Arm, name: str, subnet: str, nsg_id: str, deadline: float
) -> dict[str, Any]:
    """Virtual Networks - Create Or Update, with one subnet guarded by the NSG."""
    body = {
        "location": arm.location,
        "properties": {
            "addressSpace": {"addressPrefixes": ["10.80.0.0/16"]},
            "subnets": [
                {
                    "name": subnet,
                    "properties": {
                        "addressPrefix": "10.80.0.0/24",
                        "networkSecurityGroup": {"id": nsg_id},
                    },
                }
            ],
        },
    }
    path = arm.resource_id("Microsoft.Network/virtualNetworks", name)
    return put(arm, "virtual network creation", path, NETWORK_API, body, deadline)


def public_ip_addresses_create(arm: Arm, name: str, deadline: float) -> dict[str, Any]:
    """Public IP Addresses - Create Or Update: Standard SKU, static (Basic is retired)."""
    body = {
        "location": arm.location,
        "sku": {"name": "Standard"},
        "properties": {"publicIPAllocationMethod": "Static", "publicIPAddressVersion": "IPv4"},
    }
    path = arm.resource_id("Microsoft.Network/publicIPAddresses", name)
    return put(arm, "public IP creation", path, NETWORK_API, body, deadline)


def hyperv_generation(boot_mode: str) -> str:
    """Gen1 VMs boot through a BIOS, Gen2 through UEFI: the generation follows the image."""
    return "V2" if boot_mode == "uefi" else "V1"


def _disk(arm: Arm, boot_mode: str, creation: Mapping[str, str]) -> dict[str, Any]:
    """A Linux OS disk of the image's generation, Standard_LRS, made as ``creation`` says."""
    return {
        "location": arm.location,
        "sku": {"name": "Standard_LRS"},
        "properties": {
            "osType": "Linux",
            "hyperVGeneration": hyperv_generation(boot_mode),
            "creationData": dict(creation),
        },
    }


def disks_import(
    arm: Arm,
    name: str,
    source_uri: str,
    storage_account_id: str,
    deadline: float,
    boot_mode: str = "bios",
) -> dict[str, Any]:
    """Disks - Create Or Update with ``createOption: Import`` from a page blob VHD."""
    creation = {
        "createOption": "Import",
        "sourceUri": source_uri,
        "storageAccountId": storage_account_id,
    }
    path = arm.resource_id("Microsoft.Compute/disks", name)
    return put(
        arm, "managed disk import", path, DISK_API, _disk(arm, boot_mode, creation), deadline
    )


def disks_copy(
    arm: Arm, name: str, source_disk_id: str, deadline: float, boot_mode: str = "bios"
) -> dict[str, Any]:
    """Disks - Create Or Update with ``createOption: Copy``: a node's own OS disk, copied from
    the imported disk, for a VM that attaches it (a specialized boot: no image in between)."""
    creation = {"createOption": "Copy", "sourceResourceId": source_disk_id}
    path = arm.resource_id("Microsoft.Compute/disks", name)
    return put(arm, "OS disk copy", path, DISK_API, _disk(arm, boot_mode, creation), deadline)


def images_create(
    arm: Arm, name: str, disk_id: str, deadline: float, boot_mode: str = "bios"
) -> dict[str, Any]:
    """Images - Create Or Update: a managed image whose OS disk is the imported disk."""
    body = {
        "location": arm.location,
        "properties": {
            "hyperVGeneration": hyperv_generation(boot_mode),
            "storageProfile": {
                "osDisk": {
                    "osType": "Linux",
                    # Managed images are of generalized disks only; a specialized boot makes none.
                    "osState": "Generalized",
                    "managedDisk": {"id": disk_id},
                    "caching": "ReadWrite",
                }
            },
        },
    }
    path = arm.resource_id("Microsoft.Compute/images", name)
    return put(arm, "managed image creation", path, IMAGE_API, body, deadline)


def serial_log(arm: Arm, vm_id: str) -> str | None:
    """The VM's serial console log (Virtual Machines - Retrieve Boot Diagnostics Data, then the
    log blob through the SAS URI it returns); "" while Azure has none yet, None when the caller
    may not read it (403): then there is no console to read."""
    try:
        answer = arm.driver.connection.request(
            f"{vm_id}/retrieveBootDiagnosticsData", params={"api-version": VM_API}, method="POST"
        )
    except InvalidCredsError:
        return None
    except BaseHTTPError as exc:
        # 403: not allowed to; anything else (409 while the VM is being made, 404): not yet.
        return None if exc.code == 403 else ""
    except LibcloudError:
        return ""
    uri = (answer.object or {}).get("serialConsoleLogBlobUri")
    if not uri:
        return ""
    try:
        blob = requests.get(uri, timeout=SERIAL_LOG_TIMEOUT)
    except requests.RequestException:
        return ""
    if blob.status_code == 403:
        return None
    if blob.status_code != 200:
        return ""  # 404: the host has written nothing yet
    return blob.content.decode("utf-8", errors="replace")
