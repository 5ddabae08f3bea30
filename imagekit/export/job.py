"""``export``: AMIs → the off-AWS store, one stored image per AMI, incremental when it can be.

Per AMI: describe it (every EBS volume in mapping order), then per volume choose a plan —
*unchanged* (the store already holds this very snapshot), *incremental* (``ListChangedBlocks``
against the newest stored snapshot of the same lineage, which AWS decides), or *full* (every
written block) — and feed the blocks to the store's ingest as a pipeline: no local copy of the
disk is ever made.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import itertools
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import botocore.exceptions

from imagekit.errors import ExportError, InputError
from imagekit.export.ami import (
    AmiSpec,
    Selection,
    VolumeSpec,
    parse_filter,
    parse_image,
    select_latest_per_name,
)
from imagekit.export.aws import client, region_of, session, translate
from imagekit.export.blocks import BlockRef, NotRelated, list_changed_blocks, list_snapshot_blocks
from imagekit.export.dataplane import BlockReader, LeanPathUnavailable
from imagekit.export.source import EbsVolumeSource, Journal, VolumeStats, overlay
from imagekit.progress import NullProgress, Progress
from imagekit.store.index import Index
from imagekit.store.ingest import ingest
from imagekit.store.manifest import StoredImage, VolumeManifest
from imagekit.store.repository import Repository

log = logging.getLogger(__name__)

#: Metadata key under which an exported image records its AMI (``AmiSpec.as_metadata``).
AMI_METADATA = "ami"

#: How many earlier snapshots of a device are offered to ListChangedBlocks before a full read.
LINEAGE_CANDIDATES = 3


@dataclass(frozen=True)
class ExportResult:
    image: StoredImage
    ami: AmiSpec
    volumes: tuple[VolumeStats, ...]
    bytes_read: int
    bytes_uploaded: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.image.id,
            "name": self.image.manifest.name,
            "ami": self.ami.image_id,
            "volumes": [v.as_dict() for v in self.volumes],
            "bytes_read": self.bytes_read,
            "bytes_uploaded": self.bytes_uploaded,
            "seconds": round(self.seconds, 3),
            "licence_warning": self.ami.licence_warning,
        }


def resolve_amis(ec2: Any, region: str, selection: Selection) -> list[AmiSpec]:
    """Describe the selected AMIs and their snapshots; refuse what cannot be exported."""
    if selection.is_empty():
        raise InputError("no AMI selected", hint="give AMI ids, --filter, or --name")
    images: dict[str, Mapping[str, Any]] = {}
    try:
        if selection.image_ids:
            answer = ec2.describe_images(ImageIds=list(selection.image_ids))
            images.update({i["ImageId"]: i for i in answer.get("Images", [])})
            missing = set(selection.image_ids) - set(images)
            if missing:
                raise InputError(
                    f"AMI not found: {', '.join(sorted(missing))}", hint=f"in {region}"
                )
        if selection.filters or selection.name_patterns:
            filters = [{"Name": k, "Values": list(v)} for k, v in selection.filters.items()]
            if selection.name_patterns:
                filters.append({"Name": "name", "Values": list(selection.name_patterns)})
            paginator = ec2.get_paginator("describe_images")
            for page in paginator.paginate(Owners=["self"], Filters=filters):
                images.update({i["ImageId"]: i for i in page.get("Images", [])})
    except botocore.exceptions.ClientError as exc:
        raise translate(exc, "DescribeImages", ", ".join(selection.image_ids) or "AMIs") from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise translate(exc, "DescribeImages", "AMIs") from exc
    chosen = list(images.values())
    if selection.latest_per_name:
        chosen = select_latest_per_name(chosen)
    if not chosen:
        raise InputError("no AMI matches the selection", hint=f"in {region}")
    snapshot_ids = sorted(
        {
            m["Ebs"]["SnapshotId"]
            for i in chosen
            for m in i.get("BlockDeviceMappings", [])
            if "SnapshotId" in m.get("Ebs", {})
        }
    )
    snapshots: dict[str, Mapping[str, Any]] = {}
    if snapshot_ids:
        try:
            answer = ec2.describe_snapshots(SnapshotIds=snapshot_ids)
        except botocore.exceptions.ClientError as exc:
            raise translate(exc, "DescribeSnapshots", ", ".join(snapshot_ids)) from exc
        snapshots = {s["SnapshotId"]: s for s in answer.get("Snapshots", [])}
    return [parse_image(i, region, snapshots) for i in chosen]


def volume_name(device_name: str) -> str:
    """``/dev/xvda`` → ``xvda``: the stored volume's (and restored file's) name."""
    return device_name.rstrip("/").rsplit("/", 1)[-1] or "disk"


def _previous_volumes(
    images: Sequence[StoredImage], image_name: str, device: str
) -> Iterator[tuple[StoredImage, VolumeManifest, str]]:
    """Earlier exports of ``device``: same stored name first, newest first."""
    ordered = sorted(
        images, key=lambda i: (i.manifest.name != image_name, -i.manifest.created.timestamp())
    )
    for image in ordered:
        ami = image.manifest.metadata.get(AMI_METADATA)
        if not isinstance(ami, dict):
            continue
        for vol in ami.get("volumes", []):
            if vol.get("device_name") != device:
                continue
            for stored in image.manifest.volumes:
                if stored.name == volume_name(device):
                    yield image, stored, str(vol["snapshot_id"])


def _peek(refs: Iterator[BlockRef]) -> Iterator[BlockRef]:
    """Start a listing now (so a NotRelated answer surfaces here), then hand it on whole."""
    first = next(refs, None)
    return refs if first is None else itertools.chain([first], refs)


def _counted(refs: Iterator[BlockRef], stats: VolumeStats) -> Iterator[BlockRef]:
    for ref in refs:
        stats.blocks_changed = (stats.blocks_changed or 0) + 1
        yield ref


@dataclass
class _Plan:
    refs: Iterator[BlockRef]
    base: VolumeManifest | None
    stats: VolumeStats
    parent: str | None = None
    #: The same listing again from the start, uncounted (for a progress bar's total).
    relist: Callable[[], Iterator[BlockRef]] = lambda: iter(())


def plan_volume(
    ebs: Any,
    images: Sequence[StoredImage],
    image_name: str,
    vol: VolumeSpec,
    index: Index | None = None,
) -> _Plan:
    """Choose unchanged / incremental / full for one volume (makes at most a few List calls).

    A previous volume naming chunks that ``index`` lacks (lost packs, a damaged store) cannot
    be a base: building on it would write a manifest that cannot be restored. It is passed over
    with a warning, which ends in a full read when no other candidate serves.
    """
    size = vol.size_bytes
    tried = 0
    for image, stored, snapshot in _previous_volumes(images, image_name, vol.device_name):
        if index is not None:
            missing = sum(1 for _, cid in stored.chunks if cid not in index)
            if missing:
                log.warning(
                    "%s: previous image %s names %d chunks of volume %s that are in no index; "
                    "not building on it (run `imagekit store verify`)",
                    vol.snapshot_id,
                    image.id[:12],
                    missing,
                    stored.name,
                )
                continue
        if snapshot == vol.snapshot_id and stored.virtual_size == size:
            stats = VolumeStats(
                vol.snapshot_id, size, "unchanged", blocks_changed=0, previous_snapshot=snapshot
            )
            return _Plan(iter(()), stored, stats, image.id)
        if tried >= LINEAGE_CANDIDATES:
            break
        tried += 1
        try:
            refs = _peek(list_changed_blocks(ebs, snapshot, vol.snapshot_id))
        except NotRelated:
            log.info("%s is not related to %s; trying another", vol.snapshot_id, snapshot)
            continue
        stats = VolumeStats(
            vol.snapshot_id, size, "incremental", blocks_changed=0, previous_snapshot=snapshot
        )
        relist = partial(list_changed_blocks, ebs, snapshot, vol.snapshot_id)
        return _Plan(_counted(refs, stats), stored, stats, image.id, relist)
    stats = VolumeStats(vol.snapshot_id, size, "full")
    relist = partial(list_snapshot_blocks, ebs, vol.snapshot_id)
    return _Plan(relist(), None, stats, relist=relist)


def journal_path(state_dir: Path, store_url: str, snapshot_id: str) -> Path:
    store_key = hashlib.sha256(store_url.encode()).hexdigest()[:16]
    return state_dir / "exports" / store_key / f"{snapshot_id}.journal"


def _volume_source(
    vol: VolumeSpec,
    plan: _Plan,
    journal: Journal,
    index: Index,
    *,
    reader: Any,
    concurrency: int,
    progress: Progress | None,
) -> EbsVolumeSource:
    """The volume's blocks to read: the plan's, less those an interrupted run already stored."""
    done = {i: c for i, c in journal.load().items() if c is None or c in index}
    refs = plan.refs
    if done:
        plan.stats.blocks_resumed = len(done)
        refs = (r for r in plan.refs if r.index not in done)
    total = None
    if progress is not None and progress.visible:
        total = sum(1 for r in plan.relist() if r.index not in done)
    return EbsVolumeSource(
        ebs=reader,
        name=volume_name(vol.device_name),
        virtual_size=vol.size_bytes,
        refs=refs,
        stats=plan.stats,
        base=overlay(volume_name(vol.device_name), vol.size_bytes, plan.base, done),
        journal=journal,
        concurrency=concurrency,
        progress=progress or NullProgress(),
        total_blocks=total,
    )


def export_ami(
    repo: Repository,
    ebs: Any,
    ami: AmiSpec,
    *,
    image_name: str | None = None,
    concurrency: int = 8,
    state_dir: Path,
    progress: Progress | None = None,
    blocks: Any = None,
    metadata: Mapping[str, Any] | None = None,
    source: str | None = None,
) -> ExportResult:
    """Export one AMI into ``repo`` as one stored image (one volume per EBS mapping).

    ``metadata`` is added to the manifest's (an instance export records the instance and the
    data's point in time there); ``source`` overrides ``aws:REGION:AMI``.

    ``ebs`` lists blocks; ``blocks`` (default: ``ebs``) fetches them — ``export`` passes the
    lean ``dataplane.BlockReader`` (see ``block_reader``). When ``progress`` is visible, each
    volume is listed once more before it is read, so that the bar has a total and an ETA: one
    List call per 10,000 blocks, worth it when someone watches.
    """
    started = time.monotonic()
    name = image_name or ami.name
    # One shared lock from the plan to the manifest: a prune cannot delete, in between, the packs
    # the plan counts on (the previous image's chunks, the journal's), and ingest takes the index
    # loaded here instead of loading it (and listing every pack) a second time.
    with repo.lock(exclusive=False):
        images = repo.list_images()
        index = repo.load_index()
        # Packs a crashed run uploaded but never indexed hold chunks the journal can vouch for.
        repo.index_unindexed_packs(index)
        sources, journals, stats, parents = [], [], [], []
        for vol in ami.volumes:
            plan = plan_volume(ebs, images, name, vol, index)
            journal = Journal(journal_path(state_dir, repo.url, vol.snapshot_id), repo.chunk_id_key)
            sources.append(
                _volume_source(
                    vol,
                    plan,
                    journal,
                    index,
                    reader=ebs if blocks is None else blocks,
                    concurrency=concurrency,
                    progress=progress,
                )
            )
            journals.append(journal)
            stats.append(plan.stats)
            if plan.parent:
                parents.append(plan.parent)
        result = ingest(
            repo,
            sources,
            name=name,
            source=source or f"aws:{ami.region}:{ami.image_id}",
            metadata={AMI_METADATA: ami.as_metadata(), **(metadata or {})},
            parent=parents[0] if parents else None,
            index=index,
        )
    for journal in journals:
        journal.remove()  # the manifest is written: nothing left to resume
    return ExportResult(
        image=result.image,
        ami=ami,
        volumes=tuple(stats),
        bytes_read=result.bytes_read,
        bytes_uploaded=result.bytes_uploaded,
        seconds=time.monotonic() - started,
    )


def block_reader(sess: Any, ebs: Any, concurrency: int) -> Any:
    """The lean GetSnapshotBlock path for ``ebs``'s endpoint, ready for a long export.

    ``ebs`` itself when the settings need what the lean path lacks (an ``https://`` proxy).
    """
    # Everything alive now (API models, the store's index) lives as long as the export: moved
    # out of the collector's reach, each collection scans what the blocks' requests allocate
    # instead of hundreds of thousands of long-lived objects (~5 % of an export's CPU).
    gc.freeze()
    try:
        return BlockReader.from_client(sess, ebs, concurrency)
    except LeanPathUnavailable as exc:
        log.info("blocks are read through the boto3 client: the lean path cannot use %s", exc)
        return ebs
    except botocore.exceptions.BotoCoreError as exc:
        raise translate(exc, "GetSnapshotBlock", "the EBS endpoint") from exc


@contextlib.contextmanager
def reading(sess: Any, ebs: Any, concurrency: int) -> Iterator[Any]:
    """``block_reader`` for the length of a run; its kept connections are closed after."""
    reader = block_reader(sess, ebs, concurrency)
    try:
        yield reader
    finally:
        if isinstance(reader, BlockReader):
            reader.close()


@dataclass(frozen=True)
class AwsClients:
    """What one export run talks to AWS with."""

    session: Any
    region: str
    ec2: Any
    ebs: Any


def aws_clients(region: str | None, concurrency: int) -> AwsClients:
    """The run's session and clients; a bad ``concurrency`` fails before any of them exists."""
    if concurrency < 1:
        raise InputError(f"--concurrency must be at least 1, not {concurrency}")
    sess = session(region)
    return AwsClients(sess, region_of(sess), client(sess, "ec2"), client(sess, "ebs"))


def export(
    repo: Repository,
    selection: Selection,
    *,
    region: str | None = None,
    image_name: str | None = None,
    concurrency: int = 8,
    state_dir: Path,
    progress: Progress | None = None,
) -> list[ExportResult]:
    """Export every selected AMI; the first failure stops the run (exports already done stay)."""
    aws = aws_clients(region, concurrency)
    ebs = aws.ebs
    amis = resolve_amis(aws.ec2, aws.region, selection)
    if image_name and len(amis) > 1:
        raise InputError("--image-name needs exactly one AMI", hint=f"{len(amis)} were selected")
    results = []
    with reading(aws.session, ebs, concurrency) as reader:
        for ami in amis:
            if ami.licence_warning:
                log.warning("%s", ami.licence_warning)
            results.append(
                export_ami(
                    repo,
                    ebs,
                    ami,
                    image_name=image_name,
                    concurrency=concurrency,
                    state_dir=state_dir,
                    progress=progress,
                    blocks=reader,
                )
            )
    return results


__all__ = [
    "ExportError",
    "ExportResult",
    "Selection",
    "export",
    "export_ami",
    "parse_filter",
    "resolve_amis",
]
