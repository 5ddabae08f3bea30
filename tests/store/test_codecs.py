"""Round trips and malformed inputs of packs, the index and manifests (pure core)."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest

from imagekit.store.crypto import MetaCipher
from imagekit.store.format import SEALED_DATA_KEY_SIZE
from imagekit.store.index import Index, PackRecord, decode_index, encode_index
from imagekit.store.manifest import (
    ImageManifest,
    VolumeManifest,
    decode_manifest,
    encode_manifest,
)
from imagekit.store.pack import BlobEntry, PackBuilder, object_id, read_pack_header

META = MetaCipher(bytes(32))
SEALED = bytes(range(SEALED_DATA_KEY_SIZE))


def test_pack_round_trip() -> None:
    builder = PackBuilder(META, SEALED)
    blobs = [os.urandom(n) for n in (100, 5000, 1)]
    for i, b in enumerate(blobs):
        builder.add(bytes([i]) * 32, b, 7 + i)
    data, header = builder.finish()
    assert builder.count == 0 and builder.size == 0  # ready for the next pack
    parsed = read_pack_header(META, data)
    assert parsed == header
    assert parsed.sealed_data_key == SEALED
    for e, b in zip(parsed.entries, blobs, strict=True):
        assert data[e.offset : e.offset + e.length] == b
    assert [e.raw_length for e in parsed.entries] == [7, 8, 9]


def test_pack_header_tamper_detected() -> None:
    builder = PackBuilder(META, SEALED)
    builder.add(bytes(32), b"blob", 4)
    data, _ = builder.finish()
    bad = bytearray(data)
    bad[-10] ^= 0xFF
    from imagekit.store.crypto import InvalidTag

    with pytest.raises(InvalidTag):
        read_pack_header(META, bytes(bad))
    with pytest.raises(ValueError):
        read_pack_header(META, data[-3:])


def test_index_round_trip_and_lookup() -> None:
    records = [
        PackRecord("ab" * 32, SEALED, (BlobEntry(b"\x01" * 32, 0, 10, 20),)),
        PackRecord(
            "cd" * 32,
            SEALED,
            (BlobEntry(b"\x02" * 32, 0, 5, 6), BlobEntry(b"\x01" * 32, 5, 10, 20)),
        ),
    ]
    decoded = decode_index(encode_index(records))
    assert decoded == records
    index = Index(decoded)
    assert len(index) == 2
    loc = index.get(b"\x01" * 32)
    assert loc is not None and loc.pack_id == "ab" * 32  # first pack wins
    assert b"\x03" * 32 not in index
    with pytest.raises(ValueError):
        decode_index(encode_index(records)[:-1])
    with pytest.raises(ValueError):
        decode_index(encode_index(records) + b"x")


def _manifest() -> ImageManifest:
    return ImageManifest(
        name="web",
        created=datetime(2024, 5, 1, 2, 0, 0, 123456, tzinfo=UTC),
        source="aws:ami-0123",
        volumes=(
            VolumeManifest("/dev/xvda", 10 << 20, ((0, b"\x01" * 32), (7, b"\x02" * 32)), 99),
            VolumeManifest("/dev/xvdb", 1 << 20, (), 0),
        ),
        parent="ff" * 32,
        metadata={"ami": "ami-0123", "tags": {"role": "web"}},
        bytes_read=5,
        bytes_uploaded=6,
    )


def test_manifest_round_trip() -> None:
    m = _manifest()
    assert decode_manifest(encode_manifest(m)) == m
    assert m.volumes[0].chunk_count == 20
    assert m.stored_size == 99


def test_manifest_rejects_unsorted_map_and_garbage() -> None:
    m = _manifest()
    bad = VolumeManifest("v", 1 << 20, ((1, b"\x01" * 32), (0, b"\x02" * 32)))
    with pytest.raises(ValueError, match="sorted"):
        encode_manifest(ImageManifest("n", m.created, "s", (bad,)))
    with pytest.raises(ValueError):
        decode_manifest(encode_manifest(m)[:-5])
    with pytest.raises(ValueError):
        decode_manifest(b"\xff\xff\x00\x00{")


def test_object_id_is_content_hash() -> None:
    assert object_id(b"abc") == object_id(bytearray(b"abc")) != object_id(b"abd")
    assert len(object_id(b"")) == 64
