"""The in-memory index: an open-addressing table, checked against a plain dict."""

from __future__ import annotations

import os

import pytest

from imagekit.store.format import CHUNK_SIZE, SEALED_DATA_KEY_SIZE
from imagekit.store.index import Index, PackRecord, decode_index, encode_index
from imagekit.store.pack import BlobEntry
from imagekit.store.repository import Repository

SEALED = bytes(SEALED_DATA_KEY_SIZE)


def _records(packs: int, per_pack: int) -> list[PackRecord]:
    return [
        PackRecord(
            os.urandom(32).hex(),
            os.urandom(SEALED_DATA_KEY_SIZE),
            tuple(
                BlobEntry(os.urandom(32), i * 1000, 1000 - i, CHUNK_SIZE - i)
                for i in range(per_pack)
            ),
        )
        for _ in range(packs)
    ]


def test_growing_from_empty_keeps_every_entry_and_the_first_pack_wins() -> None:
    records = _records(300, 50)  # 15,000 chunks: the table grows many times
    duplicate = PackRecord("ee" * 32, SEALED, (BlobEntry(records[0].entries[0].chunk_id, 7, 8, 9),))
    index = Index([*records, duplicate])
    assert len(index) == 15_000
    for r in records:
        for e in r.entries:
            loc = index.get(e.chunk_id)
            assert loc is not None
            assert (loc.pack_id, loc.sealed_data_key) == (r.pack_id, r.sealed_data_key)
            assert (loc.offset, loc.length, loc.raw_length) == (e.offset, e.length, e.raw_length)
    assert index.get(os.urandom(32)) is None and os.urandom(32) not in index
    assert b"short" not in index and "text" not in index
    assert set(index) == {e.chunk_id for r in records for e in r.entries}
    # records(): what the table resolves to each pack; the duplicate's pack holds nothing.
    rebuilt = {r.pack_id: r for r in index.records()}
    assert rebuilt["ee" * 32].entries == ()
    assert all(rebuilt[r.pack_id] == r for r in records)
    assert index.pack_ids == {r.pack_id for r in records} | {"ee" * 32}


def test_a_payload_loads_like_its_decoded_records() -> None:
    records = _records(40, 64)
    payload = encode_index(records)
    direct = Index(expected=len(records) * 64)
    direct.add_payload(payload)
    assert direct.records() == Index(decode_index(payload)).records()
    with pytest.raises(ValueError, match="trailing"):
        Index().add_payload(payload + b"x")
    with pytest.raises(ValueError, match="truncated"):
        Index().add_payload(payload[:-1])
    forged = encode_index([PackRecord("ab" * 32, SEALED, (BlobEntry(b"a" * 32, 0, 10, 1 << 30),))])
    with pytest.raises(ValueError, match="beyond a chunk"):
        Index().add_payload(forged)


@pytest.mark.parametrize("presized", [True, False])
def test_memory_stays_under_100_bytes_a_chunk(presized: bool) -> None:
    records = _records(1_000, 100)
    index = Index(expected=100_000 if presized else 0)
    for r in records:
        index.add(r)
    assert index.memory / len(index) <= 100
    # The former index (a dict of Location objects) took ~378 bytes a chunk.


def test_load_index_reads_every_object_into_one_table(repo: Repository) -> None:
    a, b = _records(5, 30), _records(7, 20)
    repo.write_index(a)
    repo.write_index(b)
    index = repo.load_index()
    assert len(index) == 5 * 30 + 7 * 20
    assert {r.pack_id for r in index.records()} == {r.pack_id for r in a + b}


def test_encoding_from_the_table_matches_the_records() -> None:
    records = _records(30, 40)
    index = Index(records)
    kept = {r.pack_id for r in records[::3]}
    direct = decode_index(index.encode(kept))
    assert {r.pack_id: set(r.entries) for r in direct} == {
        r.pack_id: set(r.entries) for r in records if r.pack_id in kept
    }
    assert {r.pack_id: r.sealed_data_key for r in direct} == {
        r.pack_id: r.sealed_data_key for r in records if r.pack_id in kept
    }
    some = [records[4].entries[0].chunk_id, records[7].entries[3].chunk_id, os.urandom(32)]
    assert index.packs_holding(some) == {records[4].pack_id, records[7].pack_id}
