"""The pure EBS model behind the emulator (no server): pagination, tokens, lineage, versions."""

from __future__ import annotations

import pytest

from testbed.moto_patches.ebs_model import (
    BLOCK_SIZE,
    EbsError,
    EbsState,
    decode_page_token,
    effective_max_results,
    encode_page_token,
    page,
    sha256_b64,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def write(state: EbsState, snapshot_id: str, blocks: dict[int, bytes], **params: object) -> None:
    state.start_snapshot(snapshot_id, {"VolumeSize": 1, **params})
    for index, data in blocks.items():
        state.put_block(snapshot_id, index, data, str(BLOCK_SIZE), sha256_b64(data), "SHA256", "me")
    assert state.complete(snapshot_id, str(len(blocks)), None, None, None) == "completed"


def test_page_sorts_and_splits() -> None:
    assert page([9, 1, 5, 3], 0, 2) == ([1, 3], 5)
    assert page([9, 1, 5, 3], 4, 2) == ([5, 9], None)
    assert page([], 0, 100) == ([], None)


def test_max_results_bounds() -> None:
    assert effective_max_results(None) == 10_000
    assert effective_max_results(7) == 100  # FAQ: under 100 is served as 100
    with pytest.raises(EbsError) as excinfo:
        effective_max_results(10_001)
    assert excinfo.value.code == "ValidationException"


def test_page_token_round_trip_scope_and_expiry() -> None:
    token = encode_page_token("blocks:snap-1", 42, issued_at=100.0)
    assert decode_page_token(token, "blocks:snap-1", now=3_699.0, ttl=3_600) == 42
    for scope, now in (("blocks:snap-2", 101.0), ("blocks:snap-1", 3_701.0)):
        with pytest.raises(EbsError) as excinfo:
            decode_page_token(token, scope, now=now, ttl=3_600)
        assert excinfo.value.reason == "INVALID_PAGE_TOKEN"
    with pytest.raises(EbsError):
        decode_page_token("not base64!", "blocks:snap-1", now=0.0, ttl=1.0)


def test_listing_token_expires_with_the_clock() -> None:
    clock = Clock()
    state = EbsState("123456789012", now=clock)
    write(state, "snap-1", {i: bytes([i + 1]) * BLOCK_SIZE for i in range(101)})
    first = state.list_blocks("snap-1", None, 100, None, "me", token_ttl=60.0)
    assert first.next_token is not None and len(first.entries) == 100
    clock.now += 61
    with pytest.raises(EbsError, match="expired"):
        state.list_blocks("snap-1", first.next_token, None, None, "me", token_ttl=60.0)


def test_identical_blocks_are_stored_once() -> None:
    state = EbsState("123456789012")
    write(state, "snap-1", {i: b"\1" * BLOCK_SIZE for i in range(50)})
    assert len(state.contents) == 1


def test_changed_blocks_follow_writes_not_bytes() -> None:
    """Rewriting a block with equal bytes is still a change: EBS tracks writes."""
    state = EbsState("123456789012")
    write(state, "snap-a", {0: b"\1" * BLOCK_SIZE, 1: b"\2" * BLOCK_SIZE})
    write(
        state, "snap-b", {1: b"\2" * BLOCK_SIZE, 4: b"\4" * BLOCK_SIZE}, ParentSnapshotId="snap-a"
    )
    listing = state.list_changed_blocks("snap-a", "snap-b", None, None, None, "me", 60.0)
    assert [e["BlockIndex"] for e in listing.entries] == [1, 4]
    assert "FirstBlockToken" not in listing.entries[1]


def test_aggregate_checksum_mismatch_fails_the_snapshot() -> None:
    state = EbsState("123456789012")
    state.start_snapshot("snap-1", {"VolumeSize": 1})
    data = b"\7" * BLOCK_SIZE
    state.put_block("snap-1", 0, data, str(BLOCK_SIZE), sha256_b64(data), "SHA256", "me")
    assert state.complete("snap-1", "1", sha256_b64(b"wrong"), "SHA256", "LINEAR") == "error"


def test_aggregate_checksum_linear_is_accepted() -> None:
    state = EbsState("123456789012")
    state.start_snapshot("snap-1", {"VolumeSize": 1})
    data = b"\7" * BLOCK_SIZE
    state.put_block("snap-1", 0, data, str(BLOCK_SIZE), sha256_b64(data), "SHA256", "me")
    aggregate = sha256_b64(sha256_b64(data).encode())
    assert state.complete("snap-1", "1", aggregate, "SHA256", "LINEAR") == "completed"


def test_parent_and_encrypted_together_are_refused() -> None:
    state = EbsState("123456789012")
    write(state, "snap-a", {})
    with pytest.raises(EbsError, match="together"):
        state.start_snapshot(
            "snap-b", {"VolumeSize": 1, "ParentSnapshotId": "snap-a", "Encrypted": True}
        )


def test_other_moto_versions_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import moto

    from testbed.moto_patches import MotoVersionError, check_moto_version

    assert check_moto_version() == "5.2.1"
    monkeypatch.setattr(moto, "__version__", "5.2.2")
    with pytest.raises(MotoVersionError, match=r"moto\[server\]==5.2.1"):
        check_moto_version()
