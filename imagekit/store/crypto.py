"""The crypto envelope of ``docs/format.md``: key derivation, sealing, metadata objects, blobs.

Pure: bytes in, bytes out. Authentication failures surface as ``cryptography``'s ``InvalidTag``;
the edge modules (which know *which* object failed) turn them into ``WrongKey`` or
``IntegrityError``. Nonces and ephemeral keys may be passed in so tests can pin known answers.
"""

from __future__ import annotations

import base64
import hashlib
import os
import queue
import threading

import blake3
import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from imagekit.store.format import (
    AAD_META,
    BLOB_RAW,
    BLOB_ZSTD,
    INFO_CHUNK_ID,
    INFO_METADATA,
    INFO_SEAL,
    KEY_SIZE,
    KIND_INDEX,
    KIND_LOCK,
    KIND_MANIFEST,
    KIND_PACK_HEADER,
    MAX_CHUNK_PLAIN,
    MAX_INDEX_PLAIN,
    MAX_LOCK_PLAIN,
    MAX_MANIFEST_PLAIN,
    MAX_PACK_HEADER_PLAIN,
    META_VERSION,
    NONCE_SIZE,
    RECIPIENT_PREFIX,
    SCRYPT_MAX_MEMORY,
    SCRYPT_MAX_N,
    SCRYPT_MAX_P,
    SCRYPT_MAX_R,
    SCRYPT_MAX_WORK,
    ZSTD_LEVEL,
)

__all__ = [
    "BlobCodec",
    "DecompressionLimit",
    "InvalidTag",
    "MetaCipher",
    "check_scrypt_params",
    "chunk_id",
    "decode_recipient",
    "derive_keys",
    "encode_recipient",
    "hkdf",
    "public_bytes",
    "scrypt_key",
    "seal",
    "unseal",
]

_ZERO_NONCE = bytes(NONCE_SIZE)
#: The most each kind of metadata object may decompress to (``docs/format.md`` § Limits).
_META_LIMITS: dict[bytes, int] = {
    KIND_INDEX: MAX_INDEX_PLAIN,
    KIND_MANIFEST: MAX_MANIFEST_PLAIN,
    KIND_PACK_HEADER: MAX_PACK_HEADER_PLAIN,
    KIND_LOCK: MAX_LOCK_PLAIN,
}
#: Streaming decompression of a frame that does not declare its size reads this much at a time.
_STREAM_STEP = 1 << 20
_TAG_SIZE = 16  # AES-GCM's full-length tag, as AESGCM writes it


def hkdf(ikm: bytes, salt: bytes, info: bytes, length: int = KEY_SIZE) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def derive_keys(write_key: bytes, repository_id: bytes) -> tuple[bytes, bytes]:
    """(CHUNK_ID_KEY, METADATA_KEY) from the write key W."""
    return (
        hkdf(write_key, repository_id, INFO_CHUNK_ID),
        hkdf(write_key, repository_id, INFO_METADATA),
    )


def chunk_id(key: bytes, data: bytes | memoryview) -> bytes:
    """Keyed BLAKE3 of a chunk: equal chunks share an id, the provider cannot compute one."""
    return blake3.blake3(data, key=key).digest()


def check_scrypt_params(n: int, r: int, p: int) -> None:
    """``ValueError`` unless (n, r, p) are within the documented maxima.

    Slot and identity parameters are read before anything authenticates them: without a bound a
    planted key slot could make every client that opens the repository allocate terabytes.
    """
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (n, r, p)):
        raise ValueError("scrypt parameters must be integers")
    if n < 2 or n & (n - 1) or n > SCRYPT_MAX_N:
        raise ValueError(f"scrypt n={n} is not a power of two up to {SCRYPT_MAX_N}")
    if not 1 <= r <= SCRYPT_MAX_R or not 1 <= p <= SCRYPT_MAX_P:
        raise ValueError(f"scrypt r={r}, p={p} outside 1..{SCRYPT_MAX_R}, 1..{SCRYPT_MAX_P}")
    if n * r * p > SCRYPT_MAX_WORK or 128 * n * r > SCRYPT_MAX_MEMORY:
        raise ValueError(f"scrypt n={n}, r={r}, p={p} costs more than the documented maximum")


def scrypt_key(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    check_scrypt_params(n, r, p)
    # maxmem: n * r * 128 bytes plus slack, or OpenSSL refuses n = 2^15 at its 32 MiB default.
    return hashlib.scrypt(
        passphrase.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=2 * 128 * n * r + (1 << 20),
        dklen=KEY_SIZE,
    )


def public_bytes(private: X25519PrivateKey) -> bytes:
    return private.public_key().public_bytes_raw()


def seal(
    recipient: bytes,
    plaintext: bytes,
    aad: bytes,
    *,
    ephemeral: X25519PrivateKey | None = None,
) -> bytes:
    """ECIES: ``E_pub || AES-256-GCM(HKDF(X25519(e, R)), 0^12, plaintext, aad)``."""
    eph = ephemeral or X25519PrivateKey.generate()
    eph_pub = public_bytes(eph)
    shared = eph.exchange(X25519PublicKey.from_public_bytes(recipient))
    key = hkdf(shared, eph_pub + recipient, INFO_SEAL)
    return eph_pub + AESGCM(key).encrypt(_ZERO_NONCE, plaintext, aad)


def unseal(private: X25519PrivateKey, sealed: bytes, aad: bytes) -> bytes:
    """Open ``seal``; ``InvalidTag`` when the key is not the recipient's or bytes were altered."""
    if len(sealed) < 32 + 16:
        raise InvalidTag
    eph_pub = sealed[:32]
    shared = private.exchange(X25519PublicKey.from_public_bytes(eph_pub))
    key = hkdf(shared, eph_pub + public_bytes(private), INFO_SEAL)
    return AESGCM(key).decrypt(_ZERO_NONCE, sealed[32:], aad)


_local = threading.local()

#: Idle compressors. zstandard objects are not thread-safe, so each compression borrows one; a
#: free list rather than one per thread, because an export runs a worker per request in flight
#: (dozens) while only about one per core compresses at a time, and each holds ~2 MiB of tables.
_compressors: queue.SimpleQueue[zstandard.ZstdCompressor] = queue.SimpleQueue()


def _decompressor() -> zstandard.ZstdDecompressor:
    dec = getattr(_local, "decompressor", None)
    if dec is None:
        dec = _local.decompressor = zstandard.ZstdDecompressor()
    return dec


def _zstd(data: bytes) -> bytes:
    try:
        comp = _compressors.get_nowait()
    except queue.Empty:
        comp = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    try:
        return comp.compress(data)
    finally:
        _compressors.put(comp)


class DecompressionLimit(ValueError):
    """A zstd frame would decompress to more than its object kind may hold."""


def _unzstd(data: bytes | memoryview, limit: int) -> bytes:
    """Decompress one frame of at most ``limit`` bytes, never allocating more than that.

    python-zstandard ignores ``max_output_size`` when the frame declares its content size and
    allocates whatever the frame declares (a 2 KiB frame declaring 1 GiB allocates 1 GiB). So a
    declared size is checked against the limit first; a frame without one is streamed and cut
    off one step past the limit.
    """
    dec = _decompressor()
    try:
        declared = zstandard.get_frame_parameters(data).content_size
        if declared != zstandard.CONTENTSIZE_UNKNOWN:
            if declared > limit:
                raise DecompressionLimit(
                    f"declares {declared} bytes decompressed, more than the limit of {limit}"
                )
            return dec.decompress(data)
        out = bytearray()
        with dec.stream_reader(data) as reader:
            while piece := reader.read(min(_STREAM_STEP, limit + 1 - len(out))):
                out += piece
                if len(out) > limit:
                    raise DecompressionLimit(f"decompresses to more than the limit of {limit}")
        return bytes(out)
    except zstandard.ZstdError as exc:
        raise InvalidTag from exc  # authenticated bytes that do not decompress: treat as forged


class MetaCipher:
    """``meta_object`` encryption under METADATA_KEY (indexes, manifests, pack headers, locks)."""

    def __init__(self, metadata_key: bytes):
        self._aead = AESGCM(metadata_key)

    @staticmethod
    def _aad(kind: bytes) -> bytes:
        return AAD_META + kind + bytes([META_VERSION])

    def encrypt(self, kind: bytes, payload: bytes, *, nonce: bytes | None = None) -> bytes:
        nonce = nonce or os.urandom(NONCE_SIZE)
        sealed = self._aead.encrypt(nonce, _zstd(payload), self._aad(kind))
        return kind + bytes([META_VERSION]) + nonce + sealed

    def decrypt(self, kind: bytes, data: bytes) -> bytes:
        """The payload; ``InvalidTag`` on a wrong key, another kind, or altered bytes."""
        if len(data) < 2 + NONCE_SIZE + 16 or data[:1] != kind or data[1] != META_VERSION:
            raise InvalidTag
        nonce, sealed = data[2 : 2 + NONCE_SIZE], data[2 + NONCE_SIZE :]
        plain = self._aead.decrypt(nonce, sealed, self._aad(kind))
        return _unzstd(plain, _META_LIMITS.get(kind, MAX_LOCK_PLAIN))


class BlobCodec:
    """Chunk → blob and back for one session's data key. Safe to share between threads."""

    def __init__(self, chunk_id_key: bytes, data_key: bytes | None):
        self.chunk_id_key = chunk_id_key
        self._aead = AESGCM(data_key) if data_key is not None else None
        self._aes = algorithms.AES(data_key) if data_key is not None else None

    def chunk_id(self, data: bytes | memoryview) -> bytes:
        return chunk_id(self.chunk_id_key, data)

    def encode(self, cid: bytes, data: bytes, *, nonce: bytes | None = None) -> bytearray:
        """``nonce || AES-256-GCM(data_key, nonce, body, aad=chunk_id)``; zstd unless it grows."""
        if self._aes is None:
            raise ValueError("BlobCodec without a data key cannot encode")
        packed = _zstd(data)
        marker, payload = (BLOB_ZSTD, packed) if len(packed) < len(data) else (BLOB_RAW, data)
        nonce = nonce or os.urandom(NONCE_SIZE)
        # The same bytes as ``nonce + AESGCM.encrypt(nonce, marker + payload, cid)``, written
        # straight into one buffer: the two concatenations of a 512 KiB body that the one-shot
        # AEAD call needs were ~3 % of an export's CPU. GCM is a stream mode: each update writes
        # exactly as many bytes as it is given (``update_into`` wants 15 bytes of slack, which
        # the tag's 16 provide).
        size = len(payload)
        out = bytearray(NONCE_SIZE + 1 + size + _TAG_SIZE)
        out[:NONCE_SIZE] = nonce
        encryptor = Cipher(self._aes, modes.GCM(nonce)).encryptor()
        encryptor.authenticate_additional_data(cid)
        view = memoryview(out)
        encryptor.update_into(bytes([marker]), view[NONCE_SIZE:])
        encryptor.update_into(payload, view[NONCE_SIZE + 1 :])
        encryptor.finalize()
        out[NONCE_SIZE + 1 + size :] = encryptor.tag
        return out

    def decode(self, cid: bytes, blob: bytes | memoryview) -> bytes:
        """The chunk; ``InvalidTag`` unless the blob authenticates *and* hashes to ``cid``;
        ``DecompressionLimit`` when its frame claims more than a chunk."""
        if self._aead is None:
            raise ValueError("BlobCodec without a data key cannot decode")
        view = memoryview(blob)
        if len(view) < NONCE_SIZE + 17:
            raise InvalidTag
        body = self._aead.decrypt(bytes(view[:NONCE_SIZE]), view[NONCE_SIZE:], cid)
        if body[0] == BLOB_ZSTD:
            data = _unzstd(memoryview(body)[1:], MAX_CHUNK_PLAIN)
        elif body[0] == BLOB_RAW:
            data = body[1:]
        else:
            raise InvalidTag
        if self.chunk_id(data) != cid:
            raise InvalidTag
        return data


def encode_recipient(public: bytes) -> str:
    """``ikr1`` + base32(pub || BLAKE3(pub)[:3]), lowercase, unpadded."""
    raw = public + blake3.blake3(public).digest()[:3]
    return RECIPIENT_PREFIX + base64.b32encode(raw).decode("ascii").lower().rstrip("=")


def decode_recipient(text: str) -> bytes:
    """The 32-byte public key of a recipient string; ``ValueError`` when malformed."""
    text = text.strip()
    if not text.startswith(RECIPIENT_PREFIX):
        raise ValueError(f"not an imagekit recipient (expected {RECIPIENT_PREFIX}…): {text!r}")
    body = text[len(RECIPIENT_PREFIX) :].upper()
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
    except ValueError as exc:
        raise ValueError(f"recipient {text!r} is not valid base32") from exc
    if len(raw) != 35 or blake3.blake3(raw[:32]).digest()[:3] != raw[32:]:
        raise ValueError(f"recipient {text!r} is mistyped (checksum mismatch)")
    return raw[:32]
