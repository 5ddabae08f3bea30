"""``gcp-twin``, ``azure-twin``, ``openstack-twin``: the local provider, presenting a cloud.

Same contract and stages as ``local`` (prepare: restore + qcow2 · upload: nothing · register:
an image entry · create: one node per request · health: 127.0.0.1 forwards, serial console,
SSH with the pinned host key · teardown: stop, delete), but each node boots with what its cloud
shows a guest (``clouds.py``, ``present.py``) and without the NoCloud seed ``local`` adds: a
guest that only works with a seed fails here as it would on the cloud. Needs root
(``netns.py`` says why). ``docs/providers/twins.md`` lists what each twin presents and cannot.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from libcloud.compute.base import Node, NodeImage

from imagekit.errors import UsageError
from imagekit.providers.azure import vm as azure_vm
from imagekit.providers.base import NodeRequest, PreparedImage, Resource, Setting, UploadedImage
from imagekit.providers.local.provider import LocalProvider
from imagekit.providers.local.qemu import ACCEL_ENV
from imagekit.providers.runs import Run
from imagekit.providers.twins import azure, netns, provisioning
from imagekit.providers.twins.clouds import AZURE, GCP, OPENSTACK, Cloud
from imagekit.providers.twins.driver import TwinNodeDriver

_ACCEL = Setting(
    "accel",
    "tcg or kvm (default: as the local provider decides)",
    env=ACCEL_ENV,
    required=False,
)


class TwinProvider(LocalProvider):
    cloud: ClassVar[Cloud]
    adapt_default: ClassVar[bool] = True  # a twin stands for its cloud: adapt as for it
    driver: TwinNodeDriver
    choices: ClassVar[Mapping[str, tuple[str, ...]]] = {}  # setting -> allowed values

    def __init__(self, *, state_dir: Path, settings: Mapping[str, str] | None = None):
        super().__init__(state_dir=state_dir, settings=settings)
        for setting, allowed in self.choices.items():
            value = self.settings.get(setting)
            if value is not None and value not in allowed:
                raise UsageError(
                    f"provider {self.name}: {setting} {value!r}: use one of {', '.join(allowed)}"
                )
        twin_settings = {k: v for k, v in self.settings.items() if k != "accel"}
        self.driver = TwinNodeDriver(
            self.state_dir / "twins" / self.cloud.name,
            self.cloud,
            twin_settings,
            accel=self.driver.accel,
        )

    def create_nodes(self, image: NodeImage, request: NodeRequest, run: Run) -> list[Node]:
        netns.require_root(self.name)
        nodes = []
        for name in request.node_names():
            # The namespace is recorded before it exists: a crash mid-create leaves it named.
            run.add_resource(Resource("netns", netns.name_for(name), name))
            node = self.driver.create_node(
                name,
                request.size,
                image,
                ex_user_data=request.user_data,
                ex_guest_ports=request.guest_ports,
                ex_public_key=request.ssh_public_key,
            )
            run.add_resource(Resource("node", str(node.id), node.name))
            nodes.append(node)
            self.after_create(node, run)
        return nodes

    def after_create(self, node: Node, run: Run) -> None:
        """What the cloud does between "created" and "running" (Azure: provisioning)."""

    def delete(self, resource: Resource) -> bool:
        if resource.kind == "netns":
            return netns.delete(resource.id)
        return super().delete(resource)

    def exists(self, resource: Resource) -> bool:
        if resource.kind == "netns":
            return netns.exists(resource.id)
        return super().exists(resource)


class GcpTwinProvider(TwinProvider):
    name: ClassVar[str] = "gcp-twin"
    description: ClassVar[str] = (
        "QEMU here presenting a GCE VM: SMBIOS, virtio-scsi, metadata server, DHCP MTU 1460"
    )
    cloud = GCP
    settings_help: ClassVar[tuple[Setting, ...]] = (
        _ACCEL,
        Setting("zone", "the zone the metadata server reports", required=False),
        Setting("project", "the project id the metadata server reports", required=False),
        Setting(
            "disk_interface",
            "scsi (default) or nvme, as GCE's NVMe machine families (C3, C4, N4, Z3, …) attach "
            "disks",
            required=False,
        ),
    )
    choices: ClassVar[Mapping[str, tuple[str, ...]]] = {"disk_interface": ("scsi", "nvme")}


class AzureTwinProvider(TwinProvider):
    name: ClassVar[str] = "azure-twin"
    description: ClassVar[str] = (
        "QEMU here presenting an Azure VM: SMBIOS, provisioning ISO, IMDS, wireserver, Ready"
    )
    cloud = AZURE
    # As the azure provider: log in as the admin user the provisioning media names (Azure
    # refuses root), pinning the host key the console shows (trusting on first use, flagged,
    # when it shows none: Azure's Linux agent makes its own keys and prints none).
    ssh_user: ClassVar[str] = azure.ADMIN_USER
    pin_offered_host_key: ClassVar[bool] = False
    settings_help: ClassVar[tuple[Setting, ...]] = (
        _ACCEL,
        Setting(
            "os_state",
            "generalized (provisioned: waits for Ready, as the azure provider registers "
            "images) or specialized (booted as it is)",
            required=False,
        ),
        Setting(
            "provisioning_timeout",
            f"seconds a generalized VM may take to report Ready (default "
            f"{azure.PROVISIONING_TIMEOUT:g}, as Azure)",
            required=False,
        ),
    )
    choices: ClassVar[Mapping[str, tuple[str, ...]]] = {"os_state": ("generalized", "specialized")}

    def upload(self, image: PreparedImage, run: Run) -> UploadedImage:
        # As the azure provider registers it (providers/azure/vm.py): Generalized only for a
        # guest that will report Ready, unless the setting says otherwise.
        if "os_state" not in self.settings:
            state = azure_vm.os_state(image.guest).lower()
            self.driver.cloud_settings["os_state"] = state
            if state == "specialized":
                note = "image registered Specialized: the guest will not report Ready"
                run.update(notes=(*run.record.notes, note))
        return super().upload(image, run)

    def after_create(self, node: Node, run: Run) -> None:
        if self.driver.cloud_settings.get("os_state", "generalized") == "specialized":
            return
        timeout = _seconds(self.settings.get("provisioning_timeout"), azure.PROVISIONING_TIMEOUT)
        report = provisioning.wait_ready(
            health_file=self.driver.ex_twin_file(node, azure.HEALTH_FILE),
            console=lambda: self.driver.ex_serial_output(node),
            gone=lambda: self.driver.ex_exit_reason(node),
            timeout=timeout,
            node=node.name,
        )
        run.update(notes=(*run.record.notes, f"{node.name}: provisioning {report}"))


def _seconds(value: str | None, default: float) -> float:
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise UsageError(f"provisioning_timeout {value!r}: a positive number of seconds")
    return seconds


class OpenStackTwinProvider(TwinProvider):
    name: ClassVar[str] = "openstack-twin"
    description: ClassVar[str] = (
        "QEMU here presenting a Nova VM: SMBIOS, virtio-blk, config drive and/or metadata service"
    )
    cloud = OPENSTACK
    settings_help: ClassVar[tuple[Setting, ...]] = (
        _ACCEL,
        Setting(
            "metadata",
            "configdrive, service or both (default both; Rackspace: configdrive)",
            required=False,
        ),
    )
    choices: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "metadata": ("configdrive", "service", "both")
    }


__all__ = ["AzureTwinProvider", "GcpTwinProvider", "OpenStackTwinProvider", "TwinProvider"]
