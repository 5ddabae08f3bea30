"""ParentSnapshotId inheritance and ListChangedBlocks across a snapshot lineage."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from testbed.seed_ami import BLOCK_SIZE, pattern_block, upload_snapshot, write_child_snapshot

pytestmark = pytest.mark.slow


def reason_of(error: ClientError) -> object:
    """The modelled ``Reason`` field botocore adds to EBS errors (absent from its TypedDict)."""
    response: dict[str, Any] = dict(error.response)
    return response.get("Reason")


def read_block(ebs: Any, snapshot_id: str, index: int) -> bytes:
    tokens = {
        b["BlockIndex"]: b["BlockToken"]
        for b in ebs.list_snapshot_blocks(SnapshotId=snapshot_id)["Blocks"]
    }
    data: bytes = ebs.get_snapshot_block(
        SnapshotId=snapshot_id, BlockIndex=index, BlockToken=tokens[index]
    )["BlockData"].read()
    return data


def changed(ebs: Any, **kwargs: Any) -> dict[int, tuple[bool, bool]]:
    """Changed index → (has FirstBlockToken, has SecondBlockToken), all pages."""
    out, token = {}, None
    while True:
        response = ebs.list_changed_blocks(**kwargs, **({"NextToken": token} if token else {}))
        for b in response["ChangedBlocks"]:
            out[b["BlockIndex"]] = ("FirstBlockToken" in b, "SecondBlockToken" in b)
        token = response.get("NextToken")
        if not token:
            return out


@pytest.fixture
def lineage(ebs: Any) -> tuple[str, str]:
    """Parent with blocks 0, 1, 2; child overwrites 1 and adds 7."""
    image = pattern_block("p0") + pattern_block("p1") + pattern_block("p2")
    parent = upload_snapshot(ebs, image)
    child = write_child_snapshot(ebs, parent, {1: pattern_block("c1"), 7: pattern_block("c7")})
    assert child.blocks_written == 2
    return parent.snapshot_id, child.snapshot_id


def test_child_inherits_parent_blocks(ebs: Any, lineage: tuple[str, str]) -> None:
    parent_id, child_id = lineage
    listed = [b["BlockIndex"] for b in ebs.list_snapshot_blocks(SnapshotId=child_id)["Blocks"]]
    assert listed == [0, 1, 2, 7]
    assert read_block(ebs, child_id, 0) == pattern_block("p0")
    assert read_block(ebs, child_id, 1) == pattern_block("c1")
    assert read_block(ebs, parent_id, 1) == pattern_block("p1")  # the parent is untouched
    assert [b["BlockIndex"] for b in ebs.list_snapshot_blocks(SnapshotId=parent_id)["Blocks"]] == [
        0,
        1,
        2,
    ]


def test_changed_blocks_include_second_only_blocks(ebs: Any, lineage: tuple[str, str]) -> None:
    parent_id, child_id = lineage
    assert changed(ebs, FirstSnapshotId=parent_id, SecondSnapshotId=child_id) == {
        1: (True, True),
        7: (False, True),  # only in the second snapshot: moto 5.2.1 misses these
    }
    # The other direction is a difference too: block 7 exists only on the first side there.
    assert changed(ebs, FirstSnapshotId=child_id, SecondSnapshotId=parent_id) == {
        1: (True, True),
        7: (True, False),
    }


def test_changed_blocks_without_first_lists_every_block(ebs: Any, lineage: tuple[str, str]) -> None:
    _, child_id = lineage
    assert sorted(changed(ebs, SecondSnapshotId=child_id)) == [0, 1, 2, 7]


def test_grandchild_compared_with_grandparent(ebs: Any, lineage: tuple[str, str]) -> None:
    parent_id, child_id = lineage
    child = ebs.list_snapshot_blocks(SnapshotId=child_id)
    from testbed.seed_ami import SeededSnapshot

    grandchild = write_child_snapshot(
        ebs, SeededSnapshot(child_id, child["VolumeSize"], 0), {2: pattern_block("g2")}
    )
    assert sorted(
        changed(ebs, FirstSnapshotId=parent_id, SecondSnapshotId=grandchild.snapshot_id)
    ) == [1, 2, 7]


def test_unrelated_snapshots_are_refused(ebs: Any, lineage: tuple[str, str]) -> None:
    _, child_id = lineage
    stranger = upload_snapshot(ebs, pattern_block("p0"))  # same data, different lineage
    with pytest.raises(ClientError) as excinfo:
        ebs.list_changed_blocks(FirstSnapshotId=stranger.snapshot_id, SecondSnapshotId=child_id)
    error = excinfo.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert (error["Error"]["Code"], reason_of(excinfo.value)) == (
        "ValidationException",
        "UNRELATED_SNAPSHOTS",
    )
    assert "not related" in error["Error"]["Message"]


def test_changed_blocks_paginate_sorted(ebs: Any) -> None:
    parent = upload_snapshot(ebs, pattern_block("base"))
    changes = {
        i: pattern_block("same") for i in range(300, 0, -2)
    }  # 150 blocks, written descending
    child = write_child_snapshot(ebs, parent, changes)
    first = ebs.list_changed_blocks(
        FirstSnapshotId=parent.snapshot_id, SecondSnapshotId=child.snapshot_id, MaxResults=100
    )
    indexes = [b["BlockIndex"] for b in first["ChangedBlocks"]]
    assert indexes == list(range(2, 202, 2))
    rest = ebs.list_changed_blocks(
        FirstSnapshotId=parent.snapshot_id,
        SecondSnapshotId=child.snapshot_id,
        NextToken=first["NextToken"],
    )
    assert [b["BlockIndex"] for b in rest["ChangedBlocks"]] == list(range(202, 302, 2))
    assert "NextToken" not in rest
    assert first["BlockSize"] == BLOCK_SIZE
