"""Known-answer vectors for the crypto envelope (docs/format.md § Keys, § Chunks and blobs).

Each vector is pinned as bytes *and* rebuilt here from the primitives exactly as the spec words
it, so a test fails whether the code drifts from its past output or from the spec.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from imagekit.store import crypto
from imagekit.store.crypto import InvalidTag
from imagekit.store.format import BLOB_ZSTD

RECIPIENT = X25519PrivateKey.from_private_bytes(bytes([1]) * 32)
EPHEMERAL = X25519PrivateKey.from_private_bytes(bytes([2]) * 32)
DATA_KEY = b"imagekit data key 32 bytes long!"

SEAL_KAT = bytes.fromhex(
    "ce8d3ad1ccb633ec7b70c17814a5c76ecd029685050d344745ba05870e587d59"
    "3ef3a86b8981be060a18630dc9cb39dfd58be519c1616f48fc83e59b28aa6153"
    "5774b639ca4de229655d1ca8d45b1597"
)
BLOB_KAT = bytes.fromhex(
    "09090909090909090909090927858596bdf4c467a76ac232ede6aed1dba072e1"
    "27fae2d678b65fbcce681c64ccc5c6e1c1760f36589b8c3c6f18cefa5364afa6"
    "21a09b78525738ad6d2a47b05305482d508f1ff8ef4c4b91274cf198b0"
)
META_KAT = bytes.fromhex(
    "4d010303030303030303030303032e44acb55ea2a1f52adc1ca0c3395663ea4b"
    "6659559580e46115538d5b660a191da0a146149c82"
)


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt, info).derive(ikm)


def test_seal_known_answer() -> None:
    r_pub = RECIPIENT.public_key().public_bytes_raw()
    sealed = crypto.seal(r_pub, DATA_KEY, b"aad", ephemeral=EPHEMERAL)
    assert sealed == SEAL_KAT
    # The spec's construction, from the primitives.
    e_pub = EPHEMERAL.public_key().public_bytes_raw()
    shared = EPHEMERAL.exchange(X25519PublicKey.from_public_bytes(r_pub))
    key = _hkdf(shared, e_pub + r_pub, b"imagekit/v1/seal")
    assert sealed == e_pub + AESGCM(key).encrypt(bytes(12), DATA_KEY, b"aad")
    assert crypto.unseal(RECIPIENT, SEAL_KAT, b"aad") == DATA_KEY


def test_unseal_rejects_other_key_other_aad_and_flipped_bit() -> None:
    with pytest.raises(InvalidTag):
        crypto.unseal(EPHEMERAL, SEAL_KAT, b"aad")
    with pytest.raises(InvalidTag):
        crypto.unseal(RECIPIENT, SEAL_KAT, b"other")
    flipped = bytearray(SEAL_KAT)
    flipped[40] ^= 1
    with pytest.raises(InvalidTag):
        crypto.unseal(RECIPIENT, bytes(flipped), b"aad")


def test_key_derivation_known_answer() -> None:
    chunk_key, meta_key = crypto.derive_keys(bytes(32), bytes(16))
    assert chunk_key.hex() == "96a2bc8999754f1bd06df5daa65797b6e0d2e3c70e356c20c8c6fe6bdd54ee27"
    assert meta_key.hex() == "c3dcb72833f579d7354e953ced816a0b7861bf5c73dde227d74836d647b92909"
    assert chunk_key == _hkdf(bytes(32), bytes(16), b"imagekit/v1/chunk-id")
    assert meta_key == _hkdf(bytes(32), bytes(16), b"imagekit/v1/metadata")


def test_chunk_id_is_keyed_blake3() -> None:
    cid = crypto.chunk_id(bytes(range(32)), b"chunk")
    assert cid.hex() == "56f958fcf2e30ac20f34bee6a2bfb8fbe31b14e70d527b3f2d307a21d9d4a767"
    assert crypto.chunk_id(bytes(32), b"chunk") != cid  # another key, another id


def test_blob_known_answer_and_checks() -> None:
    data = bytes(range(64))  # incompressible: stored raw, so the vector is zstd-independent
    codec = crypto.BlobCodec(bytes(range(32)), bytes([7]) * 32)
    cid = codec.chunk_id(data)
    blob = codec.encode(cid, data, nonce=bytes([9]) * 12)
    assert blob == BLOB_KAT
    assert blob == bytes([9]) * 12 + AESGCM(bytes([7]) * 32).encrypt(
        bytes([9]) * 12, b"\x00" + data, cid
    )
    assert codec.decode(cid, BLOB_KAT) == data
    with pytest.raises(InvalidTag):  # ciphertext moved under another chunk id
        codec.decode(codec.chunk_id(b"other"), BLOB_KAT)
    with pytest.raises(InvalidTag):  # truncated
        codec.decode(cid, BLOB_KAT[:-1])


def test_blob_compresses_and_rejects_wrong_chunk_id_key() -> None:
    codec = crypto.BlobCodec(bytes(32), bytes(32))
    data = b"abc" * 100_000
    cid = codec.chunk_id(data)
    blob = codec.encode(cid, data)
    assert len(blob) < 1000
    # The buffer-at-once encryption writes what the one-shot AEAD writes, compressed body too.
    nonce = bytes([3]) * 12
    assert codec.encode(cid, data, nonce=nonce) == nonce + AESGCM(bytes(32)).encrypt(
        nonce, bytes([BLOB_ZSTD]) + crypto._zstd(data), cid
    )
    assert codec.decode(cid, blob) == data
    # Same data key, different chunk-id key: decrypts, but the hash check fails.
    with pytest.raises(InvalidTag):
        crypto.BlobCodec(bytes([1]) * 32, bytes(32)).decode(cid, blob)


def test_meta_known_answer_and_kind_binding() -> None:
    meta = crypto.MetaCipher(bytes([5]) * 32)
    assert meta.decrypt(b"M", META_KAT) == b"hello manifest"
    with pytest.raises(InvalidTag):  # a manifest served as an index
        meta.decrypt(b"I", META_KAT)
    with pytest.raises(InvalidTag):
        crypto.MetaCipher(bytes(32)).decrypt(b"M", META_KAT)
    fresh = meta.encrypt(b"I", b"payload")
    assert meta.decrypt(b"I", fresh) == b"payload"
    assert fresh != meta.encrypt(b"I", b"payload")  # random nonces


def test_recipient_encoding() -> None:
    pub = RECIPIENT.public_key().public_bytes_raw()
    text = crypto.encode_recipient(pub)
    assert text == "ikr1utqjfevwkhbhrolxfrlj6x5jxmj5sbvunk3izhpz3qvuicpyuiezgfhp"
    assert crypto.decode_recipient(text) == pub
    typo = text[:10] + ("a" if text[10] != "a" else "b") + text[11:]
    with pytest.raises(ValueError, match="checksum"):
        crypto.decode_recipient(typo)
    with pytest.raises(ValueError, match="ikr1"):
        crypto.decode_recipient("age1xyz")
