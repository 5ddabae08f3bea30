"""Put a snapshot into a state a test needs but cannot reach through the AWS API alone.

On AWS a snapshot can end in the ``error`` state, or be encrypted with a KMS key the reader may
not use; the exporter must say so clearly. Both the EC2 view (DescribeSnapshots) and the EBS
direct API view change together.
"""

from __future__ import annotations

from typing import Any

from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.ebs.models import ebs_backends

from .ebs import state_of
from .ebs_model import EbsSnapshot

SNAPSHOT_STATES = {"pending", "completed", "error", "recoverable", "recovering"}


def set_snapshot_state(snapshot_id: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Apply ``state`` / ``encrypted`` / ``kms_key_id`` / ``kms_decrypt`` to one snapshot."""
    account = str(spec.get("account", DEFAULT_ACCOUNT_ID))
    region = str(spec.get("region", "us-east-1"))
    backend = ebs_backends[account][region]
    state = state_of(backend)
    ec2_snapshot = backend.ec2_backend.snapshots.get(snapshot_id)
    with state.lock:
        snapshot = state.snapshots.get(snapshot_id)
        if snapshot is None:
            if ec2_snapshot is None:
                raise KeyError(f"no snapshot {snapshot_id} in {account}/{region}")
            snapshot = EbsSnapshot(
                snapshot_id=snapshot_id,
                owner_id=account,
                volume_size=int(ec2_snapshot.volume_size),
                lineage=snapshot_id,
                start_time=state.now(),
                status=ec2_snapshot.status,
            )
            state.snapshots[snapshot_id] = snapshot
        if "state" in spec:
            if spec["state"] not in SNAPSHOT_STATES:
                raise ValueError(f"state must be one of {sorted(SNAPSHOT_STATES)}")
            snapshot.status = str(spec["state"])
        if spec.get("encrypted") is not None:
            snapshot.encrypted = bool(spec["encrypted"])
            if snapshot.encrypted and not snapshot.kms_key_arn:
                snapshot.kms_key_arn = (
                    f"arn:aws:kms:{region}:{account}:key/00000000-0000-4000-8000-000000000000"
                )
        if spec.get("kms_key_id"):
            snapshot.kms_key_arn = str(spec["kms_key_id"])
        if spec.get("kms_decrypt") is not None:
            snapshot.kms_decrypt_denied = not bool(spec["kms_decrypt"])
        if ec2_snapshot is not None:
            ec2_snapshot.status = snapshot.status
            ec2_snapshot.encrypted = snapshot.encrypted
            ec2_snapshot.kms_key_id = snapshot.kms_key_arn
    return {
        "SnapshotId": snapshot_id,
        "State": snapshot.status,
        "Encrypted": snapshot.encrypted,
        "KmsKeyId": snapshot.kms_key_arn,
        "KmsDecrypt": not snapshot.kms_decrypt_denied,
    }
