"""Launch running instances in the AWS emulator: a seeded AMI's root disk plus data volumes.

``RunInstances`` with an explicit block-device mapping, as a launch template would give: the root
volume is made from the AMI's root snapshot (so it starts with the AMI's blocks, in its lineage),
each data volume either from a snapshot or empty. The emulator's test hook
(``MotoAWS.write_volume``) then changes what the instance's volumes hold between export runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from testbed.seed_ami import SeededAmi


@dataclass(frozen=True)
class DataVolume:
    device_name: str
    size_gib: int = 1
    volume_type: str = "gp3"
    snapshot_id: str | None = None


@dataclass(frozen=True)
class SeededInstance:
    instance_id: str
    image_id: str
    root_device_name: str
    volumes: Mapping[str, str]  # device name → volume id, root first
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def root_volume(self) -> str:
        return self.volumes[self.root_device_name]


def launch_instance(
    ec2: Any,
    ami: SeededAmi,
    *,
    data_volumes: Sequence[DataVolume] = (),
    instance_type: str = "m6i.large",
    tags: Mapping[str, str] | None = None,
) -> SeededInstance:
    """One running instance of ``ami`` with ``data_volumes`` attached; its volume ids by device."""
    root_size = next(s.volume_size_gib for d, s in ami.volumes if d == ami.root_device_name)
    mappings: list[dict[str, Any]] = [
        {
            "DeviceName": device,
            "Ebs": {
                "SnapshotId": snap.snapshot_id,
                "VolumeSize": snap.volume_size_gib if device != ami.root_device_name else root_size,
                "VolumeType": "gp3",
                "DeleteOnTermination": True,
            },
        }
        for device, snap in ami.volumes
    ]
    for vol in data_volumes:
        ebs: dict[str, Any] = {
            "VolumeSize": vol.size_gib,
            "VolumeType": vol.volume_type,
            "DeleteOnTermination": True,
        }
        if vol.snapshot_id:
            ebs["SnapshotId"] = vol.snapshot_id
        mappings.append({"DeviceName": vol.device_name, "Ebs": ebs})
    request: dict[str, Any] = {
        "ImageId": ami.image_id,
        "MinCount": 1,
        "MaxCount": 1,
        "InstanceType": instance_type,
        "BlockDeviceMappings": mappings,
    }
    if tags:
        request["TagSpecifications"] = [
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ]
    instance = ec2.run_instances(**request)["Instances"][0]
    described = ec2.describe_instances(InstanceIds=[instance["InstanceId"]])
    found = described["Reservations"][0]["Instances"][0]
    by_device = {m["DeviceName"]: m["Ebs"]["VolumeId"] for m in found["BlockDeviceMappings"]}
    order = [m["DeviceName"] for m in mappings]
    return SeededInstance(
        instance_id=found["InstanceId"],
        image_id=ami.image_id,
        root_device_name=ami.root_device_name,
        volumes={d: by_device[d] for d in order},
        tags=dict(tags or {}),
    )
