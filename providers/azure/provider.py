"""The azure provider: fixed VHD → page blob → managed disk → managed image → VM (ARM).

upload: ``vhd-azure`` file → page blob ``CONTAINER/RUN.vhd`` in the storage account
register_image: resource group (made and recorded only when missing) → managed disk imported
from the blob → managed image of it (generalized; a guest that will not report Ready to Azure is
booted specialized instead, without an image: see ``vm.py``)
create_nodes: NSG (one rule per guest port) → virtual network + subnet behind it → per node a
Standard static public IP, a NIC, (specialized: a copy of the imported disk,) and the VM (an ARM
PUT of ours: custom data = user-data, OS disk deleted with the VM, managed boot diagnostics on so
the serial log can be read for host keys and failure reports)
teardown: newest first — VMs, OS disks, NICs, IPs, network, NSG, image, disk, blob, group

Each resource is recorded before the call that creates it (ARM names are chosen by us), so a
crash mid-call still leaves a record naming it; deleting what never came to be is "gone".
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import secrets
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from libcloud.compute.base import Node, NodeImage, NodeSize
from libcloud.compute.drivers.azure_arm import AzureIPAddress, AzureNodeDriver, AzureSubnet
from libcloud.storage.drivers.azure_blobs import AzureBlobsStorageDriver
from libcloud.storage.types import ContainerAlreadyExistsError

from imagekit.errors import ProviderError, UsageError
from imagekit.providers import health
from imagekit.providers.azure import arm, pageblob, vm
from imagekit.providers.base import (
    NodeInfo,
    NodeRequest,
    PreparedImage,
    Provider,
    Resource,
    Setting,
    UploadedImage,
)
from imagekit.providers.cloud.common import (
    endpoints,
    node_target,
    public_ip,
    read_secret,
    resource_name,
)
from imagekit.providers.limits import GiB, SizeLimit, TiB
from imagekit.providers.runs import Run

#: An import copies the whole VHD inside Azure: minutes per 100 GiB.
DISK_TIMEOUT = 3600.0
#: Networks, IPs, images and VMs: ARM usually finishes in under two minutes.
OPERATION_TIMEOUT = 900.0
VM_API = arm.VM_API
NIC_API = "2018-06-01"  # libcloud's NIC_API_VERSION
STORAGE_SUFFIX = "blob.core.windows.net"

SPECIALIZED_NOTE = (
    "warning: azure: the guest will not report Ready to Azure (or it is not known that it "
    "will), so it is booted as a specialized disk without osProfile: the run's SSH key and "
    "user-data cannot be given to it"
)
SSH_CHECK_NOTE = (
    "warning: azure: ssh: checks made tcp:22 on the specialized nodes (no run key to log in with)"
)

#: What deleting each kind needs: the ARM API version of its resource type.
API_BY_KIND = {
    "resource-group": arm.RESOURCE_GROUP_API,
    "disk": arm.DISK_API,
    "image": arm.IMAGE_API,
    "nsg": arm.NETWORK_API,
    "vnet": arm.NETWORK_API,
    "public-ip": arm.NETWORK_API,
    "nic": NIC_API,
    "node": VM_API,
}


class AzureProvider(Provider):
    name = "azure"
    description = "Azure: page-blob VHD imported as a managed disk and image, VM through ARM"
    disk_format = "vhd-azure"
    settings_help: ClassVar[tuple[Setting, ...]] = (
        Setting("subscription", "subscription id", env="AZURE_SUBSCRIPTION_ID"),
        Setting(
            "resource_group", "resource group (created if missing)", env="AZURE_RESOURCE_GROUP"
        ),
        Setting("location", "region, e.g. westeurope", env="AZURE_LOCATION"),
        Setting(
            "storage_account", "storage account for the VHD upload", env="AZURE_STORAGE_ACCOUNT"
        ),
        Setting(
            "storage_resource_group",
            "resource group of the storage account (default: resource_group)",
            env="AZURE_STORAGE_RESOURCE_GROUP",
            required=False,
        ),
        Setting(
            "container",
            "blob container for the upload (default: imagekit)",
            env="AZURE_STORAGE_CONTAINER",
            required=False,
        ),
        Setting("tenant", "Entra tenant id", env="AZURE_TENANT_ID", required=False, secret=True),
        Setting(
            "client_id", "service principal id", env="AZURE_CLIENT_ID", required=False, secret=True
        ),
        Setting(
            "client_secret",
            "service principal secret",
            env="AZURE_CLIENT_SECRET",
            required=False,
            secret=True,
        ),
        Setting(
            "storage_key",
            "storage account key",
            env="AZURE_STORAGE_KEY",
            required=False,
            secret=True,
        ),
    )
    ssh_user = "azureuser"
    poll_interval = arm.POLL_INTERVAL
    # The fixed VHD's own limit (2040 GiB, qemu-img) binds first; these are Azure's.
    size_limits: ClassVar[tuple[SizeLimit, ...]] = (
        SizeLimit(4095 * GiB, "a managed OS disk", "Azure Compute: OS disk at most 4095 GiB"),
        SizeLimit(8 * TiB, "a page blob", "Azure Storage scalability targets: page blob 8 TiB"),
        SizeLimit(
            2 * TiB,
            "a Generation 1 (BIOS) OS disk",
            "Azure: OS disks above 2 TiB need a Generation 2 (UEFI) VM",
            "bios",
        ),
    )

    def __init__(self, *, state_dir: Path, settings: Mapping[str, str] | None = None):
        super().__init__(state_dir=state_dir, settings=settings)
        self.subscription = self.settings["subscription"]
        self.resource_group = self.settings["resource_group"]
        self.location = self.settings["location"]
        self.account = self.settings["storage_account"]
        self.storage_group = self.settings.get("storage_resource_group", self.resource_group)
        self.container = self.settings.get("container", "imagekit")
        self._arm: arm.Arm | None = None
        self._guest_ports: tuple[int, ...] = (22, 80)
        self._os_state = vm.GENERALIZED  # how the nodes of this boot are made (register_image)

    # -- connections (built on first use) ----------------------------------------------------

    def scope(self) -> arm.Arm:
        if self._arm is None:
            tenant = str(read_secret(self.name, "AZURE_TENANT_ID"))
            client = str(read_secret(self.name, "AZURE_CLIENT_ID"))
            secret = str(read_secret(self.name, "AZURE_CLIENT_SECRET"))
            driver = arm.call_driver(
                lambda: AzureNodeDriver(  # type: ignore[no-untyped-call]
                    tenant,
                    self.subscription,
                    client,
                    secret,
                    region=self.location,
                    timeout=OPERATION_TIMEOUT,
                )
            )
            self._arm = arm.Arm(
                driver,
                self.subscription,
                self.resource_group,
                self.location,
                poll_interval=self.poll_interval,
            )
        return self._arm

    def blobs(self) -> AzureBlobsStorageDriver:
        key = str(read_secret(self.name, "AZURE_STORAGE_KEY"))
        try:
            base64.b64decode(key, validate=True)
        except binascii.Error as exc:
            raise UsageError("AZURE_STORAGE_KEY is not a base64 account key") from exc
        return AzureBlobsStorageDriver(self.account, key, timeout=OPERATION_TIMEOUT)  # type: ignore[no-untyped-call]

    def _rg(self, run: Run) -> str:
        return f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"

    # -- stages ------------------------------------------------------------------------------

    def upload(self, image: PreparedImage, run: Run) -> UploadedImage:
        blob = f"{run.run_id}.vhd"
        url = f"https://{self.account}.{STORAGE_SUFFIX}/{self.container}/{blob}"
        with contextlib.suppress(ContainerAlreadyExistsError):  # shared by runs: not recorded
            self.blobs().create_container(self.container)  # type: ignore[no-untyped-call]
        run.add_resource(Resource("blob", url, blob, {"container": self.container}))
        pageblob.upload_page_blob(self.blobs, self.container, blob, image.path)
        return UploadedImage(image, url)

    def register_image(self, image: UploadedImage, run: Run) -> NodeImage:
        scope = self.scope()
        deadline = time.monotonic() + DISK_TIMEOUT
        if not arm.exists(scope, self._rg(run), arm.RESOURCE_GROUP_API):
            run.add_resource(Resource("resource-group", self._rg(run), self.resource_group))
            arm.resource_groups_create(scope, deadline)
        account_id = (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.storage_group}"
            f"/providers/Microsoft.Storage/storageAccounts/{self.account}"
        )
        disk = resource_name(run.run_id, "disk")
        disk_id = scope.resource_id("Microsoft.Compute/disks", disk)
        run.add_resource(Resource("disk", disk_id, disk))
        boot_mode = image.prepared.boot_mode
        arm.disks_import(scope, disk, image.location, account_id, deadline, boot_mode)
        self._os_state = vm.os_state(image.prepared.guest)
        extra = {"os_state": self._os_state, "boot_mode": boot_mode}
        if self._os_state == vm.SPECIALIZED:
            # No managed image of a specialized disk: each node attaches a copy of this one.
            run.update(notes=(*run.record.notes, SPECIALIZED_NOTE))
            return NodeImage(disk_id, disk, scope.driver, extra=extra)
        name = resource_name(run.run_id, "image")
        image_id = scope.resource_id("Microsoft.Compute/images", name)
        run.add_resource(Resource("image", image_id, name))
        arm.images_create(scope, name, disk_id, time.monotonic() + OPERATION_TIMEOUT, boot_mode)
        return NodeImage(image_id, name, scope.driver, extra=extra)

    def list_sizes(self) -> list[NodeSize]:
        driver = self.scope().driver
        return list(arm.call_driver(lambda: driver.list_sizes()))

    def create_nodes(self, image: NodeImage, request: NodeRequest, run: Run) -> list[Node]:
        scope = self.scope()
        self._guest_ports = request.guest_ports
        deadline = time.monotonic() + OPERATION_TIMEOUT
        nsg = resource_name(run.run_id, "nsg")
        nsg_id = scope.resource_id("Microsoft.Network/networkSecurityGroups", nsg)
        run.add_resource(Resource("nsg", nsg_id, nsg))
        arm.network_security_groups_create(scope, nsg, request.guest_ports, deadline)
        vnet = resource_name(run.run_id, "vnet")
        vnet_id = scope.resource_id("Microsoft.Network/virtualNetworks", vnet)
        run.add_resource(Resource("vnet", vnet_id, vnet))
        arm.virtual_networks_create(scope, vnet, "default", nsg_id, deadline)
        subnet = AzureSubnet(f"{vnet_id}/subnets/default", "default", {})  # type: ignore[no-untyped-call]
        nodes = []
        for base in request.node_names():
            nodes.append(self._create_node(scope, resource_name(base), image, subnet, request, run))
        return nodes

    def _create_node(
        self,
        scope: arm.Arm,
        name: str,
        image: NodeImage,
        subnet: Any,
        request: NodeRequest,
        run: Run,
    ) -> Node:
        deadline = time.monotonic() + OPERATION_TIMEOUT
        driver = scope.driver
        ip_name = f"{name}-ip"
        ip_id = scope.resource_id("Microsoft.Network/publicIPAddresses", ip_name)
        run.add_resource(Resource("public-ip", ip_id, ip_name))
        arm.public_ip_addresses_create(scope, ip_name, deadline)
        nic_name = f"{name}-nic"
        run.add_resource(
            Resource(
                "nic", scope.resource_id("Microsoft.Network/networkInterfaces", nic_name), nic_name
            )
        )
        public_ip = AzureIPAddress(ip_id, ip_name, {})  # type: ignore[no-untyped-call]
        nic = arm.call_driver(
            lambda: driver.ex_create_network_interface(
                nic_name, subnet, self.resource_group, public_ip=public_ip
            )
        )
        # The OS disk is named like the VM; recorded before the VM so teardown removes it after.
        os_disk = scope.resource_id("Microsoft.Compute/disks", name)
        run.add_resource(Resource("disk", os_disk, name))
        specialized = (image.extra or {}).get("os_state") == vm.SPECIALIZED
        if specialized:
            boot_mode = str((image.extra or {}).get("boot_mode", "bios"))
            arm.disks_copy(scope, name, image.id, time.monotonic() + DISK_TIMEOUT, boot_mode)
        vm_id = scope.resource_id("Microsoft.Compute/virtualMachines", name)
        run.add_resource(Resource("node", vm_id, name))
        spec = vm.VmSpec(
            size=request.size.id,
            image_id=os_disk if specialized else image.id,
            nic_id=nic.id,
            user_name=self.ssh_user,
            custom_data=request.user_data.encode(),
            tags={"imagekit-run": run.run_id},
            ssh_public_key=request.ssh_public_key or None,
            # Azure demands a credential; a random one nobody keeps, when no key is offered.
            password=None if request.ssh_public_key else "Ik1!" + secrets.token_urlsafe(24),
            os_state=vm.SPECIALIZED if specialized else vm.GENERALIZED,
        )
        vm.virtual_machines_create(scope, name, spec)
        arm.wait_provisioned(scope, f"creation of VM {name}", vm_id, VM_API, deadline)
        return arm.call_driver(lambda: driver.ex_get_node(vm_id))  # type: ignore[no-any-return]

    def wait_healthy(
        self, nodes: Sequence[Node], checks: Sequence[health.Check], run: Run, timeout: float
    ) -> list[health.CheckResult]:
        """A specialized node never got the run's SSH key, so a login cannot pass: an ``ssh:``
        check is made ``tcp:22`` there (the SSH service answers), and the run says so."""
        if self._os_state == vm.SPECIALIZED and any(isinstance(c, health.SshCheck) for c in checks):
            weaker = [c for c in checks if not isinstance(c, health.SshCheck)]
            checks = [*weaker, *([] if health.TcpCheck(22) in weaker else [health.TcpCheck(22)])]
            run.update(notes=(*run.record.notes, SSH_CHECK_NOTE))
        return super().wait_healthy(nodes, checks, run, timeout)

    def node_info(self, node: Node) -> NodeInfo:
        reached = endpoints(public_ip(node), self._guest_ports)
        size = (node.extra or {}).get("properties", {}).get("hardwareProfile", {}).get("vmSize", "")
        return NodeInfo(str(node.id), node.name, reached, str(size))

    def health_target(self, node: Node, run: Run) -> health.HealthTarget:
        host = public_ip(node)
        if not host:
            raise ProviderError(f"VM {node.name} has no public IP to check")
        vm_id = str(node.id)
        return node_target(
            node, host, self.ssh_user, run, console=lambda: arm.serial_log(self.scope(), vm_id)
        )

    # -- teardown ----------------------------------------------------------------------------

    def delete(self, resource: Resource) -> bool:
        if resource.kind == "blob":
            return pageblob.delete_blob(self.blobs(), resource.extra["container"], resource.name)
        if resource.kind not in API_BY_KIND:
            raise ProviderError(f"azure cannot delete a {resource.kind!r}")
        deadline = time.monotonic() + OPERATION_TIMEOUT
        return arm.delete(
            self.scope(), str(resource), resource.id, API_BY_KIND[resource.kind], deadline
        )

    def exists(self, resource: Resource) -> bool:
        if resource.kind == "blob":
            return pageblob.blob_exists(self.blobs(), resource.extra["container"], resource.name)
        return arm.exists(self.scope(), resource.id, API_BY_KIND[resource.kind])

    # -- dry run -----------------------------------------------------------------------------

    def planned_calls(self, request: NodeRequest, run_id: str) -> list[str]:
        """The cloud calls a boot would make, in order, without making any."""
        rg = f"resourceGroups/{self.resource_group}/providers"
        calls = [
            f"PUT https://{self.account}.{STORAGE_SUFFIX}/{self.container}/{run_id}.vhd "
            "(x-ms-blob-type: PageBlob), then PUT ?comp=page per data range (<= 4 MiB)",
            f"GET/PUT subscriptions/{self.subscription}/resourceGroups/{self.resource_group}",
            f"PUT {rg}/Microsoft.Compute/disks/{resource_name(run_id, 'disk')} (Import)",
            f"PUT {rg}/Microsoft.Compute/images/{resource_name(run_id, 'image')}",
            f"PUT {rg}/Microsoft.Network/networkSecurityGroups/{resource_name(run_id, 'nsg')} "
            f"tcp:{','.join(map(str, request.guest_ports))}",
            f"PUT {rg}/Microsoft.Network/virtualNetworks/{resource_name(run_id, 'vnet')}",
        ]
        for base in request.node_names():
            name = resource_name(base)
            calls += [
                f"PUT {rg}/Microsoft.Network/publicIPAddresses/{name}-ip (Standard, Static)",
                f"PUT {rg}/Microsoft.Network/networkInterfaces/{name}-nic",
                f"PUT {rg}/Microsoft.Compute/virtualMachines/{name} "
                f"({request.size.id}, customData)",
            ]
        return calls
