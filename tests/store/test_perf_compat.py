"""The writer's zstd level is its own choice: blobs an older writer compressed harder still read."""

from __future__ import annotations

import os

import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from imagekit.store.crypto import BlobCodec, chunk_id
from imagekit.store.format import BLOB_ZSTD, CHUNK_SIZE, ZSTD_LEVEL


def test_blobs_written_at_another_level_decode() -> None:
    key, data_key = bytes(range(32)), bytes([5]) * 32
    data = (b"usr/lib/libexample.so.1 " * 30_000)[:CHUNK_SIZE]
    cid = chunk_id(key, data)
    codec = BlobCodec(key, data_key)
    for level in {1, 3, 19} - {ZSTD_LEVEL}:
        # A blob exactly as docs/format.md lays it out, compressed at ``level``.
        body = bytes([BLOB_ZSTD]) + zstandard.ZstdCompressor(level=level).compress(data)
        nonce = os.urandom(12)
        blob = nonce + AESGCM(data_key).encrypt(nonce, body, cid)
        assert codec.decode(cid, blob) == data
    assert codec.decode(cid, codec.encode(cid, data)) == data
