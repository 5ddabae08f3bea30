"""RegisterImage as AWS does it: the AMI is made of the given EBS snapshots, not of a dummy one.

moto 5.2.1 reads only Name and Description, invents a 15 GiB root snapshot without blocks, and
reports architecture, ENA support and the mapping as defaults. The exporter reads an AMI's
mapping to find its snapshots, so the bench must keep what the caller registered.
"""

from __future__ import annotations

from typing import Any

from moto.core.responses import ActionResult
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models.amis import Ami
from moto.ec2.responses.amis import AmisResponse
from moto.ec2.utils import random_ami_id

# RegisterImage reference: VirtualizationType defaults to paravirtual and BootMode is absent
# unless given (the instance type then decides). Nitro images set hvm, uefi or legacy-bios.
DEFAULT_VIRTUALIZATION_TYPE = "paravirtual"
VOLUME_TYPES = {"standard", "io1", "io2", "gp2", "gp3", "sc1", "st1"}
BOOT_MODES = {"legacy-bios", "uefi", "uefi-preferred"}
ARCHITECTURES = {"i386", "x86_64", "arm64", "x86_64_mac", "arm64_mac"}

_original_mappings = Ami.block_device_mappings


def _registered_mappings(self: Ami) -> list[dict[str, Any]]:
    mappings: list[dict[str, Any]] | None = getattr(self, "testbed_mappings", None)
    return mappings if mappings is not None else list(_original_mappings.fget(self))  # type: ignore[attr-defined]


def _ec2_error(code: str, message: str) -> EC2ClientError:
    return EC2ClientError(code, message)


def _mapping(backend: Any, raw: dict[str, Any], owner_ami: str) -> dict[str, Any]:
    device = raw.get("DeviceName")
    if not device:
        raise _ec2_error(
            "InvalidBlockDeviceMapping", "Every block device mapping needs a DeviceName."
        )
    if "VirtualName" in raw or "NoDevice" in raw:
        return {k: raw[k] for k in ("DeviceName", "VirtualName", "NoDevice") if k in raw}
    ebs = dict(raw.get("Ebs") or {})
    snapshot_id = ebs.get("SnapshotId")
    if not snapshot_id:
        raise _ec2_error(
            "InvalidBlockDeviceMapping", f"The mapping for {device} has no Ebs.SnapshotId."
        )
    snapshot = backend.snapshots.get(snapshot_id)
    if snapshot is None:
        raise _ec2_error(
            "InvalidSnapshot.NotFound", f"The snapshot '{snapshot_id}' does not exist."
        )
    if snapshot.status != "completed":
        raise _ec2_error(
            "IncorrectState", f"Snapshot '{snapshot_id}' is {snapshot.status}, not completed."
        )
    size = int(ebs.get("VolumeSize") or snapshot.volume_size)
    if size < snapshot.volume_size:
        raise _ec2_error(
            "InvalidBlockDeviceMapping",
            f"Volume of size {size}GB is smaller than snapshot '{snapshot_id}', "
            f"expect size >= {snapshot.volume_size}GB",
        )
    volume_type = ebs.get("VolumeType", "gp2")
    if volume_type not in VOLUME_TYPES:
        raise _ec2_error("InvalidParameterValue", f"Invalid volume type: {volume_type}")
    snapshot.from_ami = owner_ami  # AWS refuses to delete a snapshot an AMI still uses.
    out_ebs: dict[str, Any] = {
        "SnapshotId": snapshot_id,
        "VolumeSize": size,
        "VolumeType": volume_type,
        "DeleteOnTermination": _bool(ebs.get("DeleteOnTermination"), default=True),
        "Encrypted": bool(snapshot.encrypted),
    }
    for key in ("Iops", "Throughput"):
        if key in ebs:
            out_ebs[key] = int(ebs[key])
    if snapshot.encrypted and snapshot.kms_key_id:
        out_ebs["KmsKeyId"] = snapshot.kms_key_id
    return {"DeviceName": device, "Ebs": out_ebs}


def _bool(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, str):
        return value.lower() == "true"
    return bool(value)


def register_image_honours_block_device_mappings(self: AmisResponse) -> ActionResult:
    """RegisterImage: keep the mapping, root device, architecture, ENA, boot mode and tags."""
    backend = self.ec2_backend
    self.error_on_dryrun()
    name = self._get_param("Name")
    if not name:
        raise _ec2_error("MissingParameter", "The request must contain the parameter name")
    if any(
        ami.name == name and ami.owner_id == backend.account_id for ami in backend.amis.values()
    ):
        raise _ec2_error(
            "InvalidAMIName.Duplicate", f"AMI name {name} is already in use by an AMI you own"
        )
    architecture = self._get_param("Architecture", "x86_64")
    if architecture not in ARCHITECTURES:
        raise _ec2_error("InvalidParameterValue", f"Invalid architecture: {architecture}")
    boot_mode = self._get_param("BootMode")
    if boot_mode is not None and boot_mode not in BOOT_MODES:
        raise _ec2_error("InvalidParameterValue", f"Invalid boot mode: {boot_mode}")

    ami_id = random_ami_id()
    raw_mappings = self._get_param("BlockDeviceMappings", []) or []
    mappings = [_mapping(backend, raw, ami_id) for raw in raw_mappings]
    root_device = self._get_param("RootDeviceName") or (
        mappings[0]["DeviceName"] if mappings else "/dev/sda1"
    )
    if mappings and root_device not in {m["DeviceName"] for m in mappings}:
        raise _ec2_error(
            "InvalidBlockDeviceMapping",
            f"The root device name {root_device} is not in the block device mappings.",
        )
    tags: dict[str, str] = {}
    for spec in self._get_param("TagSpecifications", []) or []:
        if spec.get("ResourceType") != "image":
            continue  # snapshot tag specs apply to new snapshots; RegisterImage makes none
        tags.update({t["Key"]: t.get("Value", "") for t in spec.get("Tags", [])})

    ami = Ami(
        backend,
        ami_id,
        name=name,
        description=self._get_param("Description", ""),
        architecture=architecture,
        virtualization_type=self._get_param("VirtualizationType", DEFAULT_VIRTUALIZATION_TYPE),
        root_device_type="ebs" if mappings else "instance-store",
        root_device_name=root_device,
        sriov=self._get_param("SriovNetSupport", "simple"),
        boot_mode=boot_mode,
        hypervisor="xen",
        image_location=f"{backend.account_id}/{name}",
        tags=tags or None,
    )
    # Ami() made a throw-away "auto-created" snapshot; a registered AMI has none of its own.
    backend.snapshots.pop(ami.ebs_snapshot.id, None)
    # moto serializes DescribeImages from attributes named after the response fields.
    extra = {
        "testbed_mappings": mappings,
        "ena_support": _bool(self._get_param("EnaSupport"), default=False),
        "platform_details": "Linux/UNIX",
        "usage_operation": "RunInstances",
        "tpm_support": self._get_param("TpmSupport"),
        "imds_support": self._get_param("ImdsSupport"),
    }
    for attribute, value in extra.items():
        if value is not None:
            setattr(ami, attribute, value)
    backend.amis[ami_id] = ami
    return ActionResult({"ImageId": ami_id})


def apply() -> None:
    Ami.block_device_mappings = property(_registered_mappings)  # type: ignore[method-assign,assignment]
    AmisResponse.register_image = register_image_honours_block_device_mappings  # type: ignore[method-assign]
