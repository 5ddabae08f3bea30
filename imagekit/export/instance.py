"""What a running instance is, as far as booting its data elsewhere is concerned (pure).

``parse_instance`` turns one ``DescribeInstances`` entry (plus its volumes' ``DescribeVolumes``
entries) into an ``InstanceSpec``: every EBS volume in mapping order, root first, and what another
cloud needs to boot it like an AMI — instance type, architecture, boot mode, ENA and NVMe, the
block-device mapping, the AMI it was launched from. ``as_ami`` then describes one snapshot set of
it as an ``AmiSpec``, so the export of an instance is the export of an AMI whose snapshots
imagekit took itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from imagekit.errors import ExportError, InputError
from imagekit.export.ami import AmiSpec, VolumeSpec

#: Manifest metadata: the instance as it was (``InstanceSpec.as_metadata`` + the snapshot set).
INSTANCE_METADATA = "instance"
#: Manifest metadata: when the data was frozen (the snapshot set's start time, ISO 8601).
POINT_IN_TIME_METADATA = "point_in_time"

#: States whose volumes can be snapshotted (a stopped instance's data is as current as it gets).
SNAPSHOT_STATES = frozenset({"running", "stopping", "stopped"})


@dataclass(frozen=True)
class InstanceVolume:
    """One EBS volume attached to the instance."""

    device_name: str
    volume_id: str
    size_gib: int
    volume_type: str | None = None
    encrypted: bool = False
    kms_key_id: str | None = None
    delete_on_termination: bool | None = None


@dataclass(frozen=True)
class InstanceSpec:
    instance_id: str
    region: str
    name: str  # the Name tag, else the id: the default stored image name
    instance_type: str
    volumes: tuple[InstanceVolume, ...]  # root first, then mapping order
    state: str = "running"
    image_id: str | None = None  # the AMI it was launched from
    architecture: str = "x86_64"
    boot_mode: str | None = None
    ena_support: bool = False
    nvme: bool | None = None  # EBS volumes appear as NVMe devices (Nitro); None: not known
    root_device_name: str | None = None
    platform_details: str = ""
    private_ip: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    def volume(self, volume_id: str) -> InstanceVolume:
        for vol in self.volumes:
            if vol.volume_id == volume_id:
                return vol
        raise KeyError(volume_id)

    def as_metadata(self) -> dict[str, Any]:
        data = asdict(self)
        data["tags"] = dict(self.tags)
        data["volumes"] = [asdict(v) for v in self.volumes]
        return data

    def as_ami(self, snapshots: Mapping[str, str], point_in_time: datetime) -> AmiSpec:
        """One snapshot set (volume id → snapshot id) described as an AMI of this instance.

        The AMI's ``creation_date`` is the set's start time: when its data was frozen.
        """
        volumes = tuple(
            VolumeSpec(
                device_name=v.device_name,
                snapshot_id=snapshots[v.volume_id],
                size_gib=v.size_gib,
                volume_type=v.volume_type,
                delete_on_termination=v.delete_on_termination,
                encrypted=v.encrypted,
                kms_key_id=v.kms_key_id,
            )
            for v in self.volumes
            if v.volume_id in snapshots
        )
        return AmiSpec(
            image_id=self.image_id or self.instance_id,
            name=self.name,
            region=self.region,
            volumes=volumes,
            description=f"instance {self.instance_id}",
            architecture=self.architecture,
            boot_mode=self.boot_mode,
            ena_support=self.ena_support,
            root_device_name=self.root_device_name,
            platform_details=self.platform_details,
            tags=dict(self.tags),
            creation_date=point_in_time.isoformat(),
        )


def parse_instance(
    instance: Mapping[str, Any],
    region: str,
    volumes: Mapping[str, Mapping[str, Any]],
    nvme: bool | None = None,
) -> InstanceSpec:
    """Build an ``InstanceSpec``; refuse what cannot be snapshotted, with the reason."""
    instance_id = str(instance.get("InstanceId", "?"))
    state = str((instance.get("State") or {}).get("Name", "running"))
    if state not in SNAPSHOT_STATES:
        raise ExportError(
            f"{instance_id} is {state}: its volumes cannot be snapshotted",
            hint="export a running or stopped instance",
        )
    if instance.get("RootDeviceType", "ebs") != "ebs":
        raise InputError(
            f"{instance_id} is instance-store backed: its root disk is not an EBS volume",
            hint="only EBS-backed instances can be exported",
        )
    root = instance.get("RootDeviceName")
    found = []
    for mapping in instance.get("BlockDeviceMappings", []):
        ebs = mapping.get("Ebs") or {}
        volume_id = ebs.get("VolumeId")
        if not volume_id:
            continue
        described = volumes.get(str(volume_id), {})
        found.append(
            InstanceVolume(
                device_name=str(mapping.get("DeviceName", "")),
                volume_id=str(volume_id),
                size_gib=int(described.get("Size") or 0),
                volume_type=described.get("VolumeType"),
                encrypted=bool(described.get("Encrypted", False)),
                kms_key_id=described.get("KmsKeyId"),
                delete_on_termination=ebs.get("DeleteOnTermination"),
            )
        )
    if not found:
        raise InputError(f"{instance_id} has no EBS volume attached")
    missing = [v.volume_id for v in found if v.size_gib <= 0]
    if missing:
        raise ExportError(f"{instance_id}: volume {missing[0]} is not visible to this account")
    found.sort(key=lambda v: v.device_name != root)  # root first, the rest in mapping order
    tags = {str(t["Key"]): str(t.get("Value", "")) for t in instance.get("Tags", [])}
    return InstanceSpec(
        instance_id=instance_id,
        region=region,
        name=tags.get("Name") or instance_id,
        instance_type=str(instance.get("InstanceType", "")),
        volumes=tuple(found),
        state=state,
        image_id=instance.get("ImageId"),
        architecture=str(instance.get("Architecture", "x86_64")),
        boot_mode=instance.get("CurrentInstanceBootMode") or instance.get("BootMode"),
        ena_support=bool(instance.get("EnaSupport", False)),
        nvme=nvme,
        root_device_name=root,
        platform_details=str(instance.get("PlatformDetails", "")),
        private_ip=instance.get("PrivateIpAddress"),
        tags=tags,
    )


@dataclass(frozen=True)
class InstanceSelection:
    """Which instances: explicit ids and/or DescribeInstances filters (``tag:app=db``)."""

    instance_ids: tuple[str, ...] = ()
    filters: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return not (self.instance_ids or self.filters)

    def describe_filters(self) -> list[dict[str, Any]]:
        return [{"Name": k, "Values": list(v)} for k, v in self.filters.items()]


__all__ = ["InstanceSelection", "InstanceSpec", "InstanceVolume", "parse_instance"]
