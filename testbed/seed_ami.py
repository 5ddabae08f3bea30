"""Seed AMIs into the AWS emulator the way AWS builds them from disks: EBS direct API uploads.

Each volume is uploaded with StartSnapshot / PutSnapshotBlock (SHA-256 checksums, parallel puts,
all-zero blocks skipped so they stay sparse) / CompleteSnapshot, then RegisterImage names the
snapshots in its block-device mapping. "Day 2" helpers start child snapshots with
ParentSnapshotId and write only the blocks that changed, so the new AMI shares a lineage with
the old one (what ListChangedBlocks needs).

The helpers take plain boto3 ``ebs`` / ``ec2`` clients, so they work against the emulator
(``MotoAWS.client``) and, unchanged, against AWS.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BLOCK_SIZE = 524_288
"""512 KiB: the EBS direct API block; a disk image is uploaded in these units."""

GIB = 1 << 30
ZERO_BLOCK = bytes(BLOCK_SIZE)
DEFAULT_WORKERS = 8
"""Parallel PutSnapshotBlock calls; the emulator gains little beyond a few threads on 2 cores."""


@dataclass(frozen=True)
class SeededSnapshot:
    snapshot_id: str
    volume_size_gib: int
    blocks_written: int
    parent_id: str | None = None


@dataclass(frozen=True)
class VolumeSpec:
    """One volume of an AMI: its device name and the raw disk image (path or bytes) it holds."""

    device_name: str
    image: Path | bytes
    volume_size_gib: int | None = None  # default: the image size rounded up to whole GiB
    volume_type: str = "gp3"
    delete_on_termination: bool = True


@dataclass(frozen=True)
class SeededAmi:
    image_id: str
    name: str
    root_device_name: str
    volumes: tuple[tuple[str, SeededSnapshot], ...]  # (device name, snapshot), mapping order
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def snapshot_ids(self) -> list[str]:
        return [snap.snapshot_id for _, snap in self.volumes]


def checksum(data: bytes) -> str:
    """x-amz-Checksum: base64 of the SHA-256 of the block."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def pattern_block(label: str) -> bytes:
    """A 512 KiB block of incompressible-looking bytes that differs for every label (test data)."""
    digest = hashlib.sha256(label.encode()).digest()
    return (digest * (BLOCK_SIZE // len(digest)))[:BLOCK_SIZE]


def image_size(image: Path | bytes) -> int:
    return len(image) if isinstance(image, bytes) else image.stat().st_size


def volume_gib(image: Path | bytes) -> int:
    return max(1, -(-image_size(image) // GIB))


def iter_blocks(image: Path | bytes) -> Iterator[tuple[int, bytes]]:
    """Every 512 KiB block of a raw image in order, the last one zero-padded."""
    if isinstance(image, bytes):
        for index, offset in enumerate(range(0, len(image), BLOCK_SIZE)):
            yield index, image[offset : offset + BLOCK_SIZE].ljust(BLOCK_SIZE, b"\0")
        return
    with image.open("rb") as f:
        index = 0
        while chunk := f.read(BLOCK_SIZE):
            yield index, chunk.ljust(BLOCK_SIZE, b"\0")
            index += 1


def changed_blocks(image: Path | bytes, base: Path | bytes | None) -> Iterator[tuple[int, bytes]]:
    """Blocks to write: non-zero ones for a first snapshot; ones differing from ``base`` for a child
    (a block zeroed since the parent must be written too, or the child would keep the old data)."""
    if base is None:
        yield from ((i, b) for i, b in iter_blocks(image) if b != ZERO_BLOCK)
        return
    old = iter_blocks(base)
    for index, block in iter_blocks(image):
        previous = next(old, (index, ZERO_BLOCK))[1]
        if block != previous:
            yield index, block


def put_blocks(
    ebs: Any, snapshot_id: str, blocks: Iterator[tuple[int, bytes]], workers: int = DEFAULT_WORKERS
) -> int:
    """PutSnapshotBlock for each block with a bounded window of parallel requests; the count."""
    written = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: set[Future[Any]] = set()
        for index, data in blocks:
            if len(pending) >= 2 * workers:  # bound memory: never read far ahead of the uploads
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    fut.result()
            pending.add(
                pool.submit(
                    ebs.put_snapshot_block,
                    SnapshotId=snapshot_id,
                    BlockIndex=index,
                    BlockData=data,
                    DataLength=BLOCK_SIZE,
                    Checksum=checksum(data),
                    ChecksumAlgorithm="SHA256",
                )
            )
            written += 1
        for fut in pending:
            fut.result()
    return written


def upload_snapshot(
    ebs: Any,
    image: Path | bytes,
    *,
    volume_size_gib: int | None = None,
    parent: SeededSnapshot | None = None,
    base: Path | bytes | None = None,
    description: str | None = None,
    tags: Mapping[str, str] | None = None,
    workers: int = DEFAULT_WORKERS,
) -> SeededSnapshot:
    """One completed snapshot holding ``image``; with ``parent`` (and the parent's ``base``
    image), a child snapshot where only the blocks that differ are written."""
    size = volume_size_gib or max(volume_gib(image), parent.volume_size_gib if parent else 1)
    request: dict[str, Any] = {"VolumeSize": size}
    if parent is not None:
        request["ParentSnapshotId"] = parent.snapshot_id
    if description:
        request["Description"] = description
    if tags:
        request["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]
    snapshot_id = ebs.start_snapshot(**request)["SnapshotId"]
    blocks = changed_blocks(image, base if parent is not None else None)
    written = put_blocks(ebs, snapshot_id, blocks, workers)
    ebs.complete_snapshot(SnapshotId=snapshot_id, ChangedBlocksCount=written)
    return SeededSnapshot(snapshot_id, size, written, parent.snapshot_id if parent else None)


def write_child_snapshot(
    ebs: Any, parent: SeededSnapshot, changes: Mapping[int, bytes], workers: int = DEFAULT_WORKERS
) -> SeededSnapshot:
    """A child of ``parent`` where only ``changes`` (index → data, zero-padded) are written."""
    snapshot_id = ebs.start_snapshot(
        VolumeSize=parent.volume_size_gib, ParentSnapshotId=parent.snapshot_id
    )["SnapshotId"]
    blocks = ((i, data.ljust(BLOCK_SIZE, b"\0")) for i, data in sorted(changes.items()))
    written = put_blocks(ebs, snapshot_id, blocks, workers)
    ebs.complete_snapshot(SnapshotId=snapshot_id, ChangedBlocksCount=written)
    return SeededSnapshot(snapshot_id, parent.volume_size_gib, written, parent.snapshot_id)


def read_snapshot(ebs: Any, snapshot_id: str) -> dict[int, bytes]:
    """Every written block of a snapshot (index → data), read back through the EBS direct API."""
    blocks = ebs.list_snapshot_blocks(SnapshotId=snapshot_id)["Blocks"]
    return {
        b["BlockIndex"]: ebs.get_snapshot_block(
            SnapshotId=snapshot_id, BlockIndex=b["BlockIndex"], BlockToken=b["BlockToken"]
        )["BlockData"].read()
        for b in blocks
    }


def register_ami(
    ec2: Any,
    name: str,
    volumes: Sequence[tuple[str, SeededSnapshot]],
    *,
    specs: Sequence[VolumeSpec] | None = None,
    tags: Mapping[str, str] | None = None,
    description: str = "",
    architecture: str = "x86_64",
    boot_mode: str = "legacy-bios",
    ena_support: bool = True,
) -> SeededAmi:
    """RegisterImage over existing snapshots; the first volume is the root device."""
    by_device = {s.device_name: s for s in specs or ()}
    mappings = []
    for device, snap in volumes:
        spec = by_device.get(device)
        mappings.append(
            {
                "DeviceName": device,
                "Ebs": {
                    "SnapshotId": snap.snapshot_id,
                    "VolumeSize": snap.volume_size_gib,
                    "VolumeType": spec.volume_type if spec else "gp3",
                    "DeleteOnTermination": spec.delete_on_termination if spec else True,
                },
            }
        )
    request: dict[str, Any] = {
        "Name": name,
        "Description": description,
        "Architecture": architecture,
        "RootDeviceName": volumes[0][0],
        "BlockDeviceMappings": mappings,
        "VirtualizationType": "hvm",
        "EnaSupport": ena_support,
        "BootMode": boot_mode,
    }
    if tags:
        request["TagSpecifications"] = [
            {"ResourceType": "image", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ]
    image_id = ec2.register_image(**request)["ImageId"]
    return SeededAmi(image_id, name, volumes[0][0], tuple(volumes), dict(tags or {}))


def seed_ami(
    ebs: Any,
    ec2: Any,
    name: str,
    volumes: Sequence[VolumeSpec],
    *,
    tags: Mapping[str, str] | None = None,
    boot_mode: str = "legacy-bios",
    architecture: str = "x86_64",
    workers: int = DEFAULT_WORKERS,
) -> SeededAmi:
    """Upload every volume (root first) and register the AMI over them."""
    snapshots = [
        (
            spec.device_name,
            upload_snapshot(
                ebs,
                spec.image,
                volume_size_gib=spec.volume_size_gib,
                description=f"{name} {spec.device_name}",
                tags=tags,
                workers=workers,
            ),
        )
        for spec in volumes
    ]
    return register_ami(
        ec2,
        name,
        snapshots,
        specs=volumes,
        tags=tags,
        boot_mode=boot_mode,
        architecture=architecture,
    )


def seed_next_ami(
    ebs: Any,
    ec2: Any,
    previous: SeededAmi,
    name: str,
    changes: Mapping[str, Mapping[int, bytes]],
    *,
    tags: Mapping[str, str] | None = None,
    boot_mode: str = "legacy-bios",
    workers: int = DEFAULT_WORKERS,
) -> SeededAmi:
    """Day 2: every volume of ``previous`` gets a child snapshot with ``changes[device]`` written
    (none for a device not listed), and a new AMI of the same lineage is registered."""
    snapshots = [
        (device, write_child_snapshot(ebs, snap, changes.get(device, {}), workers))
        for device, snap in previous.volumes
    ]
    return register_ami(
        ec2, name, snapshots, tags=tags if tags is not None else previous.tags, boot_mode=boot_mode
    )
