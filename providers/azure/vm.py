"""How the azure provider makes a VM: generalized or specialized, and the VM's ARM body. Pure
but for ``virtual_machines_create``, which sends the body.

Azure provisions a VM made from a *generalized* image: it hands the guest an ``osProfile`` (user,
SSH key, custom data) on a provisioning CD and keeps the VM "Creating" until the guest reports
Ready to the wireserver; a guest with no Azure-capable cloud-init or waagent never does, and the
VM ends in ``OSProvisioningTimedOut`` after about 20 minutes, before any health check. A
*specialized* disk is booted as it is: no provisioning, no wait, and no ``osProfile`` (Azure
refuses one), so neither the run's SSH key nor its user-data reaches the guest.

The choice (``os_state``): generalized when the guest stage found the guest will report Ready,
and when the image was not inspected (what imagekit always did); specialized when the guest will
not report Ready, or when whether it will is not known — a VM that comes up can still be checked
and its console read, one stuck in provisioning only times out. Managed images are for
generalized disks only (Azure's Images API: "for managed images, use Generalized"), so a
specialized boot copies the imported disk per node and attaches the copy (``createOption:
Attach``), as Azure documents for a VM from a specialized VHD.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from imagekit.guest.profile import GuestProfile
from imagekit.providers.azure.arm import VM_API, Arm, request

GENERALIZED, SPECIALIZED = "Generalized", "Specialized"


def os_state(guest: GuestProfile | None) -> str:
    """``Generalized`` only for a guest that will report Ready (or one not inspected)."""
    if guest is None or guest.azure_ready is True:
        return GENERALIZED
    return SPECIALIZED


@dataclass(frozen=True)
class VmSpec:
    """What a VM is made of: all ours but the size, which the request chose."""

    size: str
    image_id: str  # the managed image (generalized) or the node's own OS disk (specialized)
    nic_id: str
    user_name: str
    custom_data: bytes
    tags: Mapping[str, str]
    ssh_public_key: str | None = None
    password: str | None = None  # when no key is offered (Azure demands a credential)
    os_state: str = GENERALIZED


def os_profile(name: str, spec: VmSpec) -> dict[str, Any]:
    """The user, credential and custom data Azure provisions a generalized VM with."""
    if spec.ssh_public_key:
        linux: dict[str, Any] = {
            "disablePasswordAuthentication": True,
            "ssh": {
                "publicKeys": [
                    {
                        "path": f"/home/{spec.user_name}/.ssh/authorized_keys",
                        "keyData": spec.ssh_public_key,
                    }
                ]
            },
        }
        profile: dict[str, Any] = {"linuxConfiguration": linux}
    else:
        profile = {
            "linuxConfiguration": {"disablePasswordAuthentication": False},
            "adminPassword": spec.password,
        }
    profile.update(
        computerName=name,
        adminUsername=spec.user_name,
        customData=base64.b64encode(spec.custom_data).decode("ascii"),
    )
    return profile


def vm_body(location: str, name: str, spec: VmSpec) -> dict[str, Any]:
    """Virtual Machines - Create Or Update: the OS disk (named like the VM, deleted with it) from
    the managed image, or the node's specialized disk attached; the NIC; and managed boot
    diagnostics, so that the serial log can be read back (``arm.serial_log``)."""
    os_disk: dict[str, Any] = {
        "name": name,
        "osType": "Linux",
        "caching": "ReadWrite",
        "deleteOption": "Delete",
    }
    properties: dict[str, Any] = {"hardwareProfile": {"vmSize": spec.size}}
    if spec.os_state == SPECIALIZED:
        os_disk.update(createOption="Attach", managedDisk={"id": spec.image_id})
        properties["storageProfile"] = {"osDisk": os_disk}
    else:
        os_disk.update(createOption="FromImage", managedDisk={"storageAccountType": "Standard_LRS"})
        properties["storageProfile"] = {"imageReference": {"id": spec.image_id}, "osDisk": os_disk}
        properties["osProfile"] = os_profile(name, spec)
    properties.update(
        networkProfile={"networkInterfaces": [{"id": spec.nic_id}]},
        # No storageUri: Azure keeps the log in managed storage, nothing of ours to clean.
        diagnosticsProfile={"bootDiagnostics": {"enabled": True}},
    )
    return {"location": location, "tags": dict(spec.tags), "properties": properties}


def virtual_machines_create(arm: Arm, name: str, spec: VmSpec) -> Any:
    """Send ``vm_body``; returns ARM's answer (the caller waits for provisioning)."""
    path = arm.resource_id("Microsoft.Compute/virtualMachines", name)
    body = vm_body(arm.location, name, spec)
    return request(arm, f"creation of VM {name}", path, VM_API, "PUT", body).object


__all__ = [
    "GENERALIZED",
    "SPECIALIZED",
    "VmSpec",
    "os_profile",
    "os_state",
    "virtual_machines_create",
    "vm_body",
]
