"""ListSnapshotBlocks / ListChangedBlocks: sorted, paginated, expiring tokens, as on AWS."""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from testbed.seed_ami import SeededSnapshot, pattern_block, put_blocks

pytestmark = pytest.mark.slow


def reason_of(error: ClientError) -> object:
    """The modelled ``Reason`` field botocore adds to EBS errors (absent from its TypedDict)."""
    response: dict[str, Any] = dict(error.response)
    return response.get("Reason")


BLOCKS = 250  # > 2 pages of the smallest page size (100)


@pytest.fixture
def many_blocks(ebs: Any) -> SeededSnapshot:
    """A snapshot with BLOCKS blocks at even indexes, written in reverse order."""
    snapshot_id = ebs.start_snapshot(VolumeSize=1)["SnapshotId"]
    same = pattern_block("same")  # identical data: cheap for the emulator to keep
    put_blocks(ebs, snapshot_id, ((2 * i, same) for i in reversed(range(BLOCKS))))
    ebs.complete_snapshot(SnapshotId=snapshot_id, ChangedBlocksCount=BLOCKS)
    return SeededSnapshot(snapshot_id, 1, BLOCKS)


def list_all(ebs: Any, **kwargs: Any) -> list[list[int]]:
    pages, token = [], None
    while True:
        response = ebs.list_snapshot_blocks(**kwargs, **({"NextToken": token} if token else {}))
        pages.append([b["BlockIndex"] for b in response["Blocks"]])
        token = response.get("NextToken")
        if not token:
            return pages


def test_pages_are_sorted_and_complete(ebs: Any, many_blocks: SeededSnapshot) -> None:
    pages = list_all(ebs, SnapshotId=many_blocks.snapshot_id, MaxResults=100)
    assert [len(p) for p in pages] == [100, 100, 50]
    assert [i for p in pages for i in p] == [2 * i for i in range(BLOCKS)]


def test_unpaginated_listing_is_sorted(ebs: Any, many_blocks: SeededSnapshot) -> None:
    response = ebs.list_snapshot_blocks(SnapshotId=many_blocks.snapshot_id)
    assert [b["BlockIndex"] for b in response["Blocks"]] == [2 * i for i in range(BLOCKS)]
    assert "NextToken" not in response


def test_starting_block_index(ebs: Any, many_blocks: SeededSnapshot) -> None:
    response = ebs.list_snapshot_blocks(
        SnapshotId=many_blocks.snapshot_id, StartingBlockIndex=397, MaxResults=100
    )
    assert [b["BlockIndex"] for b in response["Blocks"]] == list(range(398, 2 * BLOCKS, 2))


def test_max_results_range(aws: Any, ebs: Any, many_blocks: SeededSnapshot) -> None:
    with pytest.raises(ClientError) as excinfo:
        ebs.list_snapshot_blocks(SnapshotId=many_blocks.snapshot_id, MaxResults=10_001)
    assert excinfo.value.response["Error"]["Code"] == "ValidationException"
    # Under 100 still returns 100 (EBS direct APIs FAQ); botocore refuses it client-side.
    raw = aws.client("ebs", parameter_validation=False)
    response = raw.list_snapshot_blocks(SnapshotId=many_blocks.snapshot_id, MaxResults=5)
    assert len(response["Blocks"]) == 100


def test_next_token_expires(aws: Any, ebs: Any, many_blocks: SeededSnapshot) -> None:
    first = ebs.list_snapshot_blocks(SnapshotId=many_blocks.snapshot_id, MaxResults=100)
    aws.set_page_token_ttl(0.2)
    time.sleep(0.3)
    with pytest.raises(ClientError) as excinfo:
        ebs.list_snapshot_blocks(SnapshotId=many_blocks.snapshot_id, NextToken=first["NextToken"])
    error = excinfo.value.response
    assert (error["Error"]["Code"], reason_of(excinfo.value)) == (
        "ValidationException",
        "INVALID_PAGE_TOKEN",
    )
    assert "expired" in error["Error"]["Message"]
    # Re-listing from the last index seen is the way on.
    again = ebs.list_snapshot_blocks(
        SnapshotId=many_blocks.snapshot_id, StartingBlockIndex=first["Blocks"][-1]["BlockIndex"] + 1
    )
    assert again["Blocks"][0]["BlockIndex"] == 200


def test_next_token_is_bound_to_its_listing(ebs: Any, many_blocks: SeededSnapshot) -> None:
    first = ebs.list_snapshot_blocks(SnapshotId=many_blocks.snapshot_id, MaxResults=100)
    with pytest.raises(ClientError) as excinfo:
        ebs.list_changed_blocks(
            SecondSnapshotId=many_blocks.snapshot_id, NextToken=first["NextToken"]
        )
    assert reason_of(excinfo.value) == "INVALID_PAGE_TOKEN"
