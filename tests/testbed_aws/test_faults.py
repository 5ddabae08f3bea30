"""The fault hook and request counters of the emulator's control plane."""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from testbed.seed_ami import pattern_block, upload_snapshot

pytestmark = pytest.mark.slow


@pytest.fixture
def snapshot(ebs: Any) -> tuple[str, str]:
    snap = upload_snapshot(ebs, pattern_block("a"))
    token = ebs.list_snapshot_blocks(SnapshotId=snap.snapshot_id)["Blocks"][0]["BlockToken"]
    return snap.snapshot_id, token


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("throttle", 400, "ThrottlingException"),
        ("request_throttled", 400, "RequestThrottledException"),
        ("slowdown", 503, "SlowDown"),
        ("unavailable", 503, "ServiceUnavailable"),
        ("internal", 500, "InternalServerException"),
    ],
)
def test_injected_errors_have_aws_shape(
    aws: Any, ebs: Any, snapshot: tuple[str, str], kind: str, status: int, code: str
) -> None:
    snapshot_id, token = snapshot
    aws.add_fault("GetSnapshotBlock", count=1, kind=kind)
    with pytest.raises(ClientError) as excinfo:
        ebs.get_snapshot_block(SnapshotId=snapshot_id, BlockIndex=0, BlockToken=token)
    response = excinfo.value.response
    assert (response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]) == (
        status,
        code,
    )
    # Used up: the next call succeeds.
    assert ebs.get_snapshot_block(SnapshotId=snapshot_id, BlockIndex=0, BlockToken=token)[
        "DataLength"
    ]


def test_status_override(aws: Any, ebs: Any, snapshot: tuple[str, str]) -> None:
    aws.add_fault("ListSnapshotBlocks", kind="throttle", status=429)
    with pytest.raises(ClientError) as excinfo:
        ebs.list_snapshot_blocks(SnapshotId=snapshot[0])
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429


def test_retrying_client_rides_through_and_counters_see_every_attempt(
    aws: Any, snapshot: tuple[str, str]
) -> None:
    snapshot_id, token = snapshot
    aws.reset_counters()
    aws.add_fault("GetSnapshotBlock", count=2, kind="throttle")
    retrying = aws.client("ebs", max_attempts=3)
    data = retrying.get_snapshot_block(SnapshotId=snapshot_id, BlockIndex=0, BlockToken=token)[
        "BlockData"
    ]
    assert data.read() == pattern_block("a")
    counters = aws.counters()
    assert counters["GetSnapshotBlock"] == 3
    assert counters.faulted == {"GetSnapshotBlock": 2}
    assert counters["ListSnapshotBlocks"] == 0
    aws.reset_counters()
    assert aws.counters().requests == {}


def test_fault_can_target_one_snapshot(aws: Any, ebs: Any, snapshot: tuple[str, str]) -> None:
    other = upload_snapshot(ebs, pattern_block("b"))
    aws.add_fault("ListSnapshotBlocks", count=5, kind="internal", snapshot_id=snapshot[0])
    assert len(ebs.list_snapshot_blocks(SnapshotId=other.snapshot_id)["Blocks"]) == 1
    with pytest.raises(ClientError):
        ebs.list_snapshot_blocks(SnapshotId=snapshot[0])
    assert aws.pending_faults()[0]["remaining"] == 4
    aws.clear_faults()
    assert aws.pending_faults() == []


def test_access_denied_names_the_iam_action(
    aws: Any, ebs: Any, ec2: Any, snapshot: tuple[str, str]
) -> None:
    aws.add_fault("ListSnapshotBlocks", kind="access_denied")
    with pytest.raises(ClientError) as excinfo:
        ebs.list_snapshot_blocks(SnapshotId=snapshot[0])
    response = excinfo.value.response
    assert (response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]) == (
        403,
        "AccessDeniedException",
    )
    assert "ebs:ListSnapshotBlocks" in response["Error"]["Message"]

    aws.add_fault("DescribeImages", kind="access_denied")
    with pytest.raises(ClientError) as excinfo:
        ec2.describe_images(Owners=["self"])
    assert excinfo.value.response["Error"]["Code"] == "UnauthorizedOperation"
    assert "ec2:DescribeImages" in excinfo.value.response["Error"]["Message"]


def test_ec2_throttling_uses_ec2_code(aws: Any, ec2: Any) -> None:
    aws.add_fault("DescribeSnapshots", kind="throttle")
    with pytest.raises(ClientError) as excinfo:
        ec2.describe_snapshots(OwnerIds=["self"])
    assert excinfo.value.response["Error"]["Code"] == "RequestLimitExceeded"


def test_unknown_fault_kind_is_refused(aws: Any) -> None:
    with pytest.raises(RuntimeError, match="unknown fault kind"):
        aws.add_fault("GetSnapshotBlock", kind="gremlins")


def test_delay_fault_slows_without_failing(aws: Any, ebs: Any, snapshot: tuple[str, str]) -> None:
    aws.add_fault("ListSnapshotBlocks", kind="delay", delay=0.4)
    started = time.monotonic()
    assert len(ebs.list_snapshot_blocks(SnapshotId=snapshot[0])["Blocks"]) == 1
    assert time.monotonic() - started >= 0.4
    assert aws.counters().faulted.get("ListSnapshotBlocks", 0) == 0
