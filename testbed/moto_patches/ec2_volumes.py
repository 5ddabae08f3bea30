"""EC2 volumes that hold data, and snapshots EC2 takes of them, as on AWS.

moto 5.2.1 keeps no data in a volume: ``CreateSnapshot`` / ``CreateSnapshots`` of an instance's
volumes make snapshots that are ``completed`` at once, at ``100%``, with no readable blocks, and
unrelated to the snapshot the volume was made from. The exporter of running instances needs what
AWS does:

- a volume made from a snapshot (``RunInstances`` block-device mappings, ``CreateVolume``) starts
  with that snapshot's blocks and joins its lineage;
- the instance changes its volumes between runs (the bench writes them through
  ``POST /_testbed/volumes/<id>/blocks``, the test-only hook);
- a snapshot of a volume freezes its blocks at ``StartTime``, is ``pending`` with a growing
  ``Progress`` for a few ``DescribeSnapshots`` answers, then ``completed`` and readable through
  the EBS direct APIs; blocks not written since the previous snapshot of the volume keep their
  identity, so ``ListChangedBlocks`` names only what changed;
- ``DeleteSnapshot`` removes the data too (a later ``ListChangedBlocks`` against it is a 404);
- ``DescribeInstances`` shows the AMI's ``EnaSupport`` and ``BootMode``.
"""

from __future__ import annotations

import base64
from typing import Any

from moto.core.responses import ActionResult
from moto.ebs.models import ebs_backends
from moto.ec2.models.elastic_block_store import EBSBackend, Snapshot
from moto.ec2.models.instances import Instance
from moto.ec2.responses.elastic_block_store import ElasticBlockStore

from . import control
from .ebs import state_of
from .ebs_model import BLOCK_SIZE, EbsState

_original_create_volume = EBSBackend.create_volume
_original_delete_snapshot = EBSBackend.delete_snapshot


def _state(ec2_backend: Any) -> EbsState:
    return state_of(ebs_backends[ec2_backend.account_id][ec2_backend.region_name])


def create_volume_with_data(self: Any, *args: Any, **kwargs: Any) -> Any:
    volume = _original_create_volume(self, *args, **kwargs)
    _state(self).create_volume(volume.id, int(volume.size), kwargs.get("snapshot_id"))
    return volume


def delete_snapshot_with_data(self: Any, snapshot_id: str) -> Any:
    snapshot = _original_delete_snapshot(self, snapshot_id)
    _state(self).delete_snapshot(snapshot_id)
    return snapshot


def _freeze(backend: Any, snapshot: Snapshot) -> Snapshot:
    """Give an EC2-made snapshot the volume's data, pending as AWS shows a new snapshot."""
    state = _state(backend)
    state.snapshot_volume(
        snapshot.id, snapshot.volume.id, snapshot.description, control.SETTINGS.snapshot_polls
    )
    frozen = state.snapshots.get(snapshot.id)
    if frozen is not None:
        snapshot.status = frozen.status
    return snapshot


def create_snapshot_of_volume(self: ElasticBlockStore) -> ActionResult:
    """CreateSnapshot: the volume's blocks as of now, pending for a few polls."""
    tags = self._parse_tag_specification().get("snapshot", {})
    self.error_on_dryrun()
    snapshot = self.ec2_backend.create_snapshot(
        self._get_param("VolumeId"), self._get_param("Description")
    )
    snapshot.add_tags(tags)
    return ActionResult(_freeze(self.ec2_backend, snapshot))


def create_snapshots_of_instance(self: ElasticBlockStore) -> ActionResult:
    """CreateSnapshots: every volume of the instance at one point in time (crash-consistent)."""
    spec = self._get_param("InstanceSpecification", {})
    tags = self._parse_tag_specification().get("snapshot", {})
    self.error_on_dryrun()
    backend = self.ec2_backend
    with _state(backend).lock:  # one instant for the whole set: no write lands in between
        snapshots = backend.create_snapshots(spec, self._get_param("Description", ""), tags)
        for snapshot in snapshots:
            _freeze(backend, snapshot)
    return ActionResult({"Snapshots": snapshots})


def describe_snapshots_progressing(self: ElasticBlockStore) -> ActionResult:
    """DescribeSnapshots: each answer moves a pending volume snapshot on, until it completes."""
    backend = self.ec2_backend
    snapshots = backend.describe_snapshots(
        snapshot_ids=self._get_param("SnapshotIds", []),
        filters=self._filters_from_querystring(),
    )
    state = _state(backend)
    for snapshot in snapshots:
        frozen = state.poll_snapshot(snapshot.id)
        if frozen is not None and frozen.volume_id is not None:
            snapshot.status = frozen.status
    return ActionResult({"Snapshots": snapshots})


def _snapshot_progress(self: Snapshot) -> str:
    frozen = _state(self.ec2_backend).snapshots.get(self.id)
    if frozen is None or frozen.volume_id is None:
        return "100%" if self.status == "completed" else "0%"
    return frozen.progress


def _ami_attribute(name: str, default: Any) -> property:
    def read(self: Instance) -> Any:
        ami = self.ec2_backend.amis.get(self.image_id)
        return getattr(ami, name, default) if ami is not None else default

    return property(read)


def write_volume(spec: dict[str, Any], volume_id: str) -> dict[str, Any]:
    """The test hook: ``{"writes": [{"index": 3, "data": b64} | {"index": 4, "zero": true}]}``."""
    from moto.core.models import DEFAULT_ACCOUNT_ID

    account = str(spec.get("account", DEFAULT_ACCOUNT_ID))
    region = str(spec.get("region", "us-east-1"))
    state = state_of(ebs_backends[account][region])
    writes: dict[int, bytes | None] = {}
    for entry in spec.get("writes", []):
        index = int(entry["index"])
        if entry.get("zero"):
            writes[index] = None
        else:
            data = base64.b64decode(entry["data"])
            writes[index] = data.ljust(BLOCK_SIZE, b"\0")
    return {"VolumeId": volume_id, "written": state.write_volume(volume_id, writes)}


def volume_digests(spec: dict[str, Any], volume_id: str) -> dict[str, Any]:
    from moto.core.models import DEFAULT_ACCOUNT_ID

    account = str(spec.get("account", DEFAULT_ACCOUNT_ID))
    region = str(spec.get("region", "us-east-1"))
    state = state_of(ebs_backends[account][region])
    return {"VolumeId": volume_id, "blocks": state.volume_digests(volume_id)}


def apply() -> None:
    EBSBackend.create_volume = create_volume_with_data  # type: ignore[method-assign]
    EBSBackend.delete_snapshot = delete_snapshot_with_data  # type: ignore[method-assign]
    ElasticBlockStore.create_snapshot = create_snapshot_of_volume  # type: ignore[method-assign]
    ElasticBlockStore.create_snapshots = create_snapshots_of_instance  # type: ignore[method-assign]
    ElasticBlockStore.describe_snapshots = describe_snapshots_progressing  # type: ignore[method-assign]
    Snapshot.progress = property(_snapshot_progress)  # type: ignore[method-assign,assignment]
    # CreateSnapshots answers with SnapshotInfo, whose field is State, not Status.
    Snapshot.state = property(lambda self: self.status)  # type: ignore[attr-defined]
    Instance.ena_support = _ami_attribute("ena_support", False)  # type: ignore[attr-defined]
    Instance.boot_mode = _ami_attribute("boot_mode", None)  # type: ignore[attr-defined]
