"""What an AMI is, as far as booting it elsewhere is concerned (pure: parses EC2 answers).

``parse_image`` turns one ``DescribeImages`` entry (plus its snapshots' ``DescribeSnapshots``
entries) into an ``AmiSpec``: every EBS volume in mapping order and everything a target cloud
needs to boot it — recorded in the stored image's manifest, because on the bad day EC2 cannot be
asked again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from imagekit.errors import ExportError, InputError

#: ``PlatformDetails`` of AMIs whose software carries no AWS-billed licence.
FREE_PLATFORMS = frozenset({"Linux/UNIX", ""})


@dataclass(frozen=True)
class VolumeSpec:
    """One EBS volume of the AMI's block-device mapping."""

    device_name: str
    snapshot_id: str
    size_gib: int
    volume_type: str | None = None
    delete_on_termination: bool | None = None
    encrypted: bool = False
    kms_key_id: str | None = None

    @property
    def size_bytes(self) -> int:
        return self.size_gib << 30


@dataclass(frozen=True)
class AmiSpec:
    """An AMI's bootable description, as recorded in the exported image's manifest."""

    image_id: str
    name: str
    region: str
    volumes: tuple[VolumeSpec, ...]
    description: str = ""
    architecture: str = "x86_64"
    boot_mode: str | None = None
    virtualization_type: str = "hvm"
    ena_support: bool = False
    sriov_net_support: str | None = None
    root_device_name: str | None = None
    platform_details: str = ""
    usage_operation: str = ""
    product_codes: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    creation_date: str = ""

    @property
    def licence_warning(self) -> str | None:
        """Why this AMI needs bring-your-own-licence on another cloud, if it does."""
        reasons = []
        if self.platform_details not in FREE_PLATFORMS:
            reasons.append(f"platform {self.platform_details!r}")
        if self.product_codes:
            reasons.append(f"product codes {', '.join(self.product_codes)} (Marketplace)")
        if not reasons:
            return None
        return (
            f"{self.image_id} is licence-bound ({'; '.join(reasons)}): another cloud needs "
            "bring-your-own-licence for it"
        )

    def as_metadata(self) -> dict[str, Any]:
        """The manifest's ``source`` metadata: JSON-ready, stable key names."""
        data = asdict(self)
        data["tags"] = dict(self.tags)
        data["volumes"] = [asdict(v) for v in self.volumes]
        data["product_codes"] = list(self.product_codes)
        data["licence_warning"] = self.licence_warning
        return data


def parse_image(
    image: Mapping[str, Any], region: str, snapshots: Mapping[str, Mapping[str, Any]]
) -> AmiSpec:
    """Build an ``AmiSpec``; refuse what cannot be exported, with the reason and the fix.

    ``snapshots`` maps snapshot id → its ``DescribeSnapshots`` entry (state, encryption).
    """
    image_id = str(image.get("ImageId", "?"))
    if image.get("RootDeviceType", "ebs") != "ebs":
        raise InputError(
            f"{image_id} is instance-store backed: its root disk is not an EBS snapshot",
            hint="only EBS-backed AMIs can be exported",
        )
    state = image.get("State", "available")
    if state != "available":
        raise ExportError(f"{image_id} is {state}, not available", hint="wait or pick another AMI")
    volumes = []
    for mapping in image.get("BlockDeviceMappings", []):
        ebs = mapping.get("Ebs")
        if not ebs or "SnapshotId" not in ebs:
            continue  # ephemeral (instance-store) or a volume created empty at launch
        snapshot_id = str(ebs["SnapshotId"])
        snap = snapshots.get(snapshot_id)
        if snap is None:
            raise ExportError(f"{image_id}: snapshot {snapshot_id} is not visible to this account")
        _check_snapshot(image_id, snapshot_id, snap)
        volumes.append(
            VolumeSpec(
                device_name=str(mapping.get("DeviceName", "")),
                snapshot_id=snapshot_id,
                size_gib=int(ebs.get("VolumeSize") or snap.get("VolumeSize") or 0),
                volume_type=ebs.get("VolumeType"),
                delete_on_termination=ebs.get("DeleteOnTermination"),
                encrypted=bool(ebs.get("Encrypted", snap.get("Encrypted", False))),
                kms_key_id=ebs.get("KmsKeyId", snap.get("KmsKeyId")),
            )
        )
    if not volumes:
        raise InputError(f"{image_id} has no EBS volume in its block-device mapping")
    return AmiSpec(
        image_id=image_id,
        name=str(image.get("Name", image_id)),
        region=region,
        volumes=tuple(volumes),
        description=str(image.get("Description", "")),
        architecture=str(image.get("Architecture", "x86_64")),
        boot_mode=image.get("BootMode"),
        virtualization_type=str(image.get("VirtualizationType", "hvm")),
        ena_support=bool(image.get("EnaSupport", False)),
        sriov_net_support=image.get("SriovNetSupport"),
        root_device_name=image.get("RootDeviceName"),
        platform_details=str(image.get("PlatformDetails", "")),
        usage_operation=str(image.get("UsageOperation", "")),
        product_codes=tuple(str(p.get("ProductCodeId", "")) for p in image.get("ProductCodes", [])),
        tags={str(t["Key"]): str(t.get("Value", "")) for t in image.get("Tags", [])},
        creation_date=str(image.get("CreationDate", "")),
    )


def _check_snapshot(image_id: str, snapshot_id: str, snap: Mapping[str, Any]) -> None:
    state = snap.get("State", "completed")
    if state == "error":
        raise ExportError(
            f"{image_id}: snapshot {snapshot_id} is in the error state",
            hint="AWS could not complete it; create a new AMI",
        )
    if state != "completed":
        raise ExportError(
            f"{image_id}: snapshot {snapshot_id} is {state}, not completed",
            hint="only completed snapshots can be read; retry later",
        )


def select_latest_per_name(images: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The newest image (by ``CreationDate``) of each ``Name``, in name order."""
    newest: dict[str, Mapping[str, Any]] = {}
    for image in images:
        name = str(image.get("Name", image.get("ImageId", "")))
        if name not in newest or str(image.get("CreationDate", "")) > str(
            newest[name].get("CreationDate", "")
        ):
            newest[name] = image
    return [newest[name] for name in sorted(newest)]


@dataclass(frozen=True)
class Selection:
    """Which AMIs to export: explicit ids and/or a filter query."""

    image_ids: tuple[str, ...] = ()
    filters: Mapping[str, Sequence[str]] = field(default_factory=dict)
    name_patterns: tuple[str, ...] = ()
    latest_per_name: bool = False

    def is_empty(self) -> bool:
        return not (self.image_ids or self.filters or self.name_patterns)


def parse_filter(text: str) -> tuple[str, str]:
    """``tag:dr=true`` → (``tag:dr``, ``true``): the EC2 DescribeImages filter syntax."""
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise InputError(f"filter {text!r} is not NAME=VALUE", hint="e.g. --filter tag:dr=true")
    return key, value
