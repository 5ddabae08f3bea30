"""Block writes and reads as in the EBS direct APIs: 512 KiB blocks, checksums, JSON errors."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from testbed.seed_ami import (
    BLOCK_SIZE,
    checksum,
    pattern_block,
    upload_snapshot,
    write_child_snapshot,
)

pytestmark = pytest.mark.slow


def put(ebs: Any, snapshot_id: str, index: int, data: bytes, **override: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "SnapshotId": snapshot_id,
        "BlockIndex": index,
        "BlockData": data,
        "DataLength": BLOCK_SIZE,
        "Checksum": checksum(data),
        "ChecksumAlgorithm": "SHA256",
    }
    args.update(override)
    result: dict[str, Any] = ebs.put_snapshot_block(**args)
    return result


def error_of(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[int, str, object]:
    response = excinfo.value.response
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    # The AWS REST-JSON error shape, not moto's HTML 500 page.
    assert headers["x-amzn-errortype"] == response["Error"]["Code"]
    assert headers["content-type"] == "application/json"
    return (
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Code"],
        dict(response).get("Reason"),  # modelled EBS field, unknown to the TypedDict
    )


def test_block_size_is_512_kib_everywhere(ebs: Any) -> None:
    started = ebs.start_snapshot(VolumeSize=1)
    assert started["BlockSize"] == BLOCK_SIZE
    put(ebs, started["SnapshotId"], 0, pattern_block("a"))
    ebs.complete_snapshot(SnapshotId=started["SnapshotId"], ChangedBlocksCount=1)
    assert ebs.list_snapshot_blocks(SnapshotId=started["SnapshotId"])["BlockSize"] == BLOCK_SIZE
    changed = ebs.list_changed_blocks(SecondSnapshotId=started["SnapshotId"])
    assert changed["BlockSize"] == BLOCK_SIZE


def test_get_block_returns_data_and_checksum_headers(ebs: Any) -> None:
    data = pattern_block("payload")
    snap = upload_snapshot(ebs, bytes(BLOCK_SIZE) * 3 + data)
    [block] = ebs.list_snapshot_blocks(SnapshotId=snap.snapshot_id)["Blocks"]
    assert block["BlockIndex"] == 3
    got = ebs.get_snapshot_block(
        SnapshotId=snap.snapshot_id, BlockIndex=3, BlockToken=block["BlockToken"]
    )
    assert got["BlockData"].read() == data
    assert got["Checksum"] == checksum(data)
    assert got["ChecksumAlgorithm"] == "SHA256"
    assert got["DataLength"] == BLOCK_SIZE


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"Checksum": checksum(b"other")}, "INVALID_PARAMETER_VALUE"),
        ({"BlockData": b"short"}, "INVALID_PARAMETER_VALUE"),
        ({"DataLength": 4096}, "INVALID_PARAMETER_VALUE"),
        ({"ChecksumAlgorithm": "MD5"}, "INVALID_PARAMETER_VALUE"),
        ({"BlockIndex": 2048}, "INVALID_BLOCK"),  # 1 GiB volume: indexes 0..2047
    ],
    ids=["bad-checksum", "short-data", "wrong-length", "wrong-algorithm", "index-out-of-range"],
)
def test_put_block_validation(ebs: Any, override: dict[str, Any], reason: str) -> None:
    snapshot_id = ebs.start_snapshot(VolumeSize=1)["SnapshotId"]
    data = pattern_block("x")
    if "BlockData" in override:
        override["Checksum"] = checksum(override["BlockData"])
    with pytest.raises(ClientError) as excinfo:
        put(ebs, snapshot_id, 0, data, **override)
    assert error_of(excinfo) == (400, "ValidationException", reason)


def test_last_block_index_of_volume_is_accepted(ebs: Any) -> None:
    snapshot_id = ebs.start_snapshot(VolumeSize=1)["SnapshotId"]
    assert put(ebs, snapshot_id, 2047, pattern_block("end"))["Checksum"] == checksum(
        pattern_block("end")
    )


def test_writes_after_completion_are_refused(ebs: Any) -> None:
    snap = upload_snapshot(ebs, pattern_block("done"))
    with pytest.raises(ClientError) as excinfo:
        put(ebs, snap.snapshot_id, 1, pattern_block("late"))
    assert error_of(excinfo)[:2] == (400, "ValidationException")


def test_unknown_snapshot_is_404_json(ebs: Any) -> None:
    for call in (
        lambda: ebs.list_snapshot_blocks(SnapshotId="snap-0123456789abcdef0"),
        lambda: put(ebs, "snap-0123456789abcdef0", 0, pattern_block("x")),
        lambda: ebs.get_snapshot_block(
            SnapshotId="snap-0123456789abcdef0", BlockIndex=0, BlockToken="AAAA"
        ),
    ):
        with pytest.raises(ClientError) as excinfo:
            call()
        assert error_of(excinfo) == (404, "ResourceNotFoundException", "SNAPSHOT_NOT_FOUND")
        assert "snap-0123456789abcdef0" in excinfo.value.response["Error"]["Message"]


def test_block_tokens_are_checked(ebs: Any) -> None:
    snap = upload_snapshot(ebs, pattern_block("a") + pattern_block("b"))
    blocks = ebs.list_snapshot_blocks(SnapshotId=snap.snapshot_id)["Blocks"]
    for index, token in ((0, blocks[1]["BlockToken"]), (5, blocks[0]["BlockToken"]), (0, "Zm9v")):
        with pytest.raises(ClientError) as excinfo:
            ebs.get_snapshot_block(SnapshotId=snap.snapshot_id, BlockIndex=index, BlockToken=token)
        assert error_of(excinfo) == (400, "ValidationException", "INVALID_BLOCK_TOKEN")


def test_pending_snapshot_cannot_be_read(ebs: Any) -> None:
    snapshot_id = ebs.start_snapshot(VolumeSize=1)["SnapshotId"]
    with pytest.raises(ClientError) as excinfo:
        ebs.list_snapshot_blocks(SnapshotId=snapshot_id)
    assert error_of(excinfo)[:2] == (404, "ResourceNotFoundException")


def test_snapshot_states_follow_the_upload(ebs: Any, ec2: Any) -> None:
    snapshot_id = ebs.start_snapshot(VolumeSize=2)["SnapshotId"]
    described = ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0]
    assert (described["State"], described["VolumeSize"]) == ("pending", 2)
    put(ebs, snapshot_id, 0, pattern_block("a"))
    # A ChangedBlocksCount that disagrees with the writes leaves the snapshot in error.
    assert ebs.complete_snapshot(SnapshotId=snapshot_id, ChangedBlocksCount=5)["Status"] == "error"
    assert ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0]["State"] == "error"


def test_error_and_encrypted_states_are_settable(aws: Any, ebs: Any, ec2: Any) -> None:
    broken = upload_snapshot(ebs, pattern_block("a"))
    aws.set_snapshot_state(broken.snapshot_id, state="error")
    assert (
        ec2.describe_snapshots(SnapshotIds=[broken.snapshot_id])["Snapshots"][0]["State"] == "error"
    )
    with pytest.raises(ClientError) as excinfo:
        ebs.list_snapshot_blocks(SnapshotId=broken.snapshot_id)
    assert error_of(excinfo)[:2] == (400, "ValidationException")

    locked = upload_snapshot(ebs, pattern_block("b"))
    key = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-4333-8444-555555555555"
    aws.set_snapshot_state(locked.snapshot_id, encrypted=True, kms_key_id=key, kms_decrypt=False)
    described = ec2.describe_snapshots(SnapshotIds=[locked.snapshot_id])["Snapshots"][0]
    assert (described["Encrypted"], described["KmsKeyId"]) == (True, key)
    with pytest.raises(ClientError) as excinfo:
        ebs.list_snapshot_blocks(SnapshotId=locked.snapshot_id)
    assert error_of(excinfo) == (403, "AccessDeniedException", "DEPENDENCY_ACCESS_DENIED")
    assert "kms:Decrypt" in excinfo.value.response["Error"]["Message"]
    aws.set_snapshot_state(locked.snapshot_id, kms_decrypt=True)
    assert len(ebs.list_snapshot_blocks(SnapshotId=locked.snapshot_id)["Blocks"]) == 1


def test_client_token_makes_start_idempotent(ebs: Any) -> None:
    first = ebs.start_snapshot(VolumeSize=1, ClientToken="token-1")
    again = ebs.start_snapshot(VolumeSize=1, ClientToken="token-1")
    assert again["SnapshotId"] == first["SnapshotId"]
    with pytest.raises(ClientError) as excinfo:
        ebs.start_snapshot(VolumeSize=2, ClientToken="token-1")
    assert error_of(excinfo)[:2] == (409, "ConflictException")


def test_child_volume_may_not_shrink(ebs: Any) -> None:
    parent = upload_snapshot(ebs, pattern_block("p"), volume_size_gib=2)
    with pytest.raises(ClientError) as excinfo:
        ebs.start_snapshot(VolumeSize=1, ParentSnapshotId=parent.snapshot_id)
    assert error_of(excinfo) == (400, "ValidationException", "INVALID_VOLUME_SIZE")
    assert write_child_snapshot(ebs, parent, {}).volume_size_gib == 2
