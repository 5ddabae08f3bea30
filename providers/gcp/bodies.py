"""Compute API v1 request bodies the gcp provider sends, and the operation errors it reads. Pure.

imagekit builds ``images.insert`` and ``instances.insert`` itself: libcloud's ``create_node``
refuses a ``networkInterfaces`` of our own (the nicType) on any network but ``default``, looks up
the network and disk type it was given once more per instance, and its ``ex_create_image`` lists
every public image project after each insert. Field names are the API reference's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from imagekit.guest.profile import GuestProfile
from imagekit.providers.gcp.families import Attachment

COMPUTE_URL = "https://www.googleapis.com/compute/v1"
#: Guest features of a Linux image exported from EC2: virtio-scsi multiqueue works with every
#: kernel GCE supports; UEFI and gVNIC are not assumed (an AMI may boot by BIOS, lack gve).
GUEST_OS_FEATURES = ("VIRTIO_SCSI_MULTIQUEUE",)


def guest_os_features(boot_mode: str, guest: GuestProfile | None = None) -> list[str]:
    """The image's guestOsFeatures: a UEFI image must say UEFI_COMPATIBLE, or GCE boots it
    through its BIOS and it finds nothing to boot; GVNIC only for a guest with the gve driver,
    since GCE then may give it a NIC only that driver can drive."""
    features = list(GUEST_OS_FEATURES)
    if boot_mode == "uefi":
        features.append("UEFI_COMPATIBLE")
    if guest is not None and guest.has("gve"):
        features.append("GVNIC")
    return features


def image_body(
    name: str, source_url: str, description: str, features: Sequence[str]
) -> dict[str, Any]:
    """images.insert from a gzip'd tar in Cloud Storage (``rawDisk.source``, https form)."""
    return {
        "name": name,
        "description": description,
        "rawDisk": {"source": source_url, "containerType": "TAR"},
        "guestOsFeatures": [{"type": f} for f in features],
    }


def instance_body(
    *,
    project: str,
    zone: str,
    name: str,
    machine_type: str,
    image_link: str,
    network: str,
    tag: str,
    metadata: Mapping[str, str],
    attach: Attachment,
) -> dict[str, Any]:
    """instances.insert: a boot disk made from the image (deleted with the instance), one NIC
    with an ephemeral external address on ``network``, the run's tag and metadata.

    No service account: nothing in the guest needs the project's APIs, and a default one would
    let the node read the project's buckets (the image upload among them)."""
    base = f"{COMPUTE_URL}/projects/{project}"
    disk: dict[str, Any] = {
        "boot": True,
        "autoDelete": True,
        "type": "PERSISTENT",
        "mode": "READ_WRITE",
        "deviceName": name,
        "initializeParams": {
            "diskName": name,
            "diskType": f"{base}/zones/{zone}/diskTypes/{attach.disk_type}",
            "sourceImage": image_link,
        },
    }
    if attach.disk_interface:
        disk["interface"] = attach.disk_interface
    nic: dict[str, Any] = {
        "network": f"{base}/global/networks/{network}",
        "accessConfigs": [{"name": "External NAT", "type": "ONE_TO_ONE_NAT"}],
    }
    if attach.nic_type:
        nic["nicType"] = attach.nic_type
    return {
        "name": name,
        "machineType": machine_type
        if machine_type.startswith("https://")
        else f"{base}/zones/{zone}/machineTypes/{machine_type}",
        "disks": [disk],
        "networkInterfaces": [nic],
        "tags": {"items": [tag]},
        "metadata": {"items": [{"key": k, "value": v} for k, v in metadata.items()]},
    }


def operation_errors(operation: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(code, message)`` of every entry in a finished operation's ``error.errors[]``."""
    errors = (operation.get("error") or {}).get("errors") or []
    return [(str(e.get("code", "")), str(e.get("message", ""))) for e in errors]


__all__ = [
    "COMPUTE_URL",
    "GUEST_OS_FEATURES",
    "guest_os_features",
    "image_body",
    "instance_body",
    "operation_errors",
]
