"""Repository keys and key slots (``docs/format.md`` § Keys). Pure: values ↔ bytes.

A reader's ``MasterKey`` holds the write key W *and* the read private key; a writer's holds W and
only the read *public* key, so everything it seals is readable by readers and not by itself.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from imagekit.store.crypto import (
    InvalidTag,
    decode_recipient,
    derive_keys,
    encode_recipient,
    public_bytes,
    scrypt_key,
    seal,
    unseal,
)
from imagekit.store.format import (
    AAD_SLOT,
    ACCESS_READ,
    ACCESS_WRITE,
    KEY_SIZE,
    MASTER_KEY_VERSION,
    NONCE_SIZE,
    REPOSITORY_ID_SIZE,
    SCRYPT_N,
    SCRYPT_P,
    SCRYPT_R,
)

Access = Literal["read", "write"]
_ACCESS_BYTE: dict[str, int] = {"read": ACCESS_READ, "write": ACCESS_WRITE}
SLOT_VERSION = 1


@dataclass(frozen=True)
class MasterKey:
    repository_id: bytes
    write_key: bytes
    read_public: bytes
    read_private: X25519PrivateKey | None = None  # None: a writer

    @property
    def access(self) -> Access:
        return "read" if self.read_private is not None else "write"

    def keys(self) -> tuple[bytes, bytes]:
        """(CHUNK_ID_KEY, METADATA_KEY)."""
        return derive_keys(self.write_key, self.repository_id)

    def writer(self) -> MasterKey:
        """The same repository keys without the read key."""
        return MasterKey(self.repository_id, self.write_key, self.read_public)

    @staticmethod
    def generate(repository_id: bytes) -> MasterKey:
        private = X25519PrivateKey.generate()
        return MasterKey(repository_id, os.urandom(KEY_SIZE), public_bytes(private), private)


def encode_master(key: MasterKey, access: Access) -> bytes:
    if access == "read":
        if key.read_private is None:
            raise ValueError("a writer cannot grant read access")
        part = key.read_private.private_bytes_raw()
    else:
        part = key.read_public
    return (
        bytes([MASTER_KEY_VERSION])
        + key.repository_id
        + bytes([_ACCESS_BYTE[access]])
        + key.write_key
        + part
    )


def decode_master(data: bytes) -> MasterKey:
    if len(data) != 1 + REPOSITORY_ID_SIZE + 1 + 2 * KEY_SIZE or data[0] != MASTER_KEY_VERSION:
        raise ValueError("malformed master key")
    rid = data[1 : 1 + REPOSITORY_ID_SIZE]
    access = data[1 + REPOSITORY_ID_SIZE]
    w = data[2 + REPOSITORY_ID_SIZE : 2 + REPOSITORY_ID_SIZE + KEY_SIZE]
    part = data[2 + REPOSITORY_ID_SIZE + KEY_SIZE :]
    if access == ACCESS_READ:
        private = X25519PrivateKey.from_private_bytes(part)
        return MasterKey(rid, w, public_bytes(private), private)
    if access == ACCESS_WRITE:
        return MasterKey(rid, w, part)
    raise ValueError(f"unknown access byte {access}")


def _slot_aad(repository_id: bytes, access: Access) -> bytes:
    return AAD_SLOT + repository_id + bytes([_ACCESS_BYTE[access]])


@dataclass(frozen=True)
class KeySlot:
    type: Literal["x25519", "scrypt"]
    access: Access
    repository: str  # hex repository id
    sealed: bytes
    recipient: str | None = None
    scrypt: tuple[int, int, int, bytes] | None = None  # n, r, p, salt

    def encode(self) -> bytes:
        doc: dict[str, Any] = {
            "version": SLOT_VERSION,
            "repository": self.repository,
            "type": self.type,
            "access": self.access,
            "sealed": base64.b64encode(self.sealed).decode("ascii"),
        }
        if self.recipient is not None:
            doc["recipient"] = self.recipient
        if self.scrypt is not None:
            n, r, p, salt = self.scrypt
            doc["scrypt"] = {"n": n, "r": r, "p": p, "salt": base64.b64encode(salt).decode()}
        return (json.dumps(doc, sort_keys=True) + "\n").encode("utf-8")

    @staticmethod
    def decode(data: bytes) -> KeySlot:
        """``ValueError`` when the slot is not a well-formed version-1 key slot."""
        try:
            doc = json.loads(data.decode("utf-8"))
            if doc["version"] != SLOT_VERSION:
                raise ValueError(f"unknown key slot version {doc['version']!r}")
            if doc["type"] not in ("x25519", "scrypt") or doc["access"] not in _ACCESS_BYTE:
                raise ValueError("unknown key slot type or access")
            scrypt = None
            if doc["type"] == "scrypt":
                s = doc["scrypt"]
                scrypt = (int(s["n"]), int(s["r"]), int(s["p"]), base64.b64decode(s["salt"]))
            return KeySlot(
                type=doc["type"],
                access=doc["access"],
                repository=str(doc["repository"]),
                sealed=base64.b64decode(doc["sealed"]),
                recipient=doc.get("recipient"),
                scrypt=scrypt,
            )
        except (KeyError, TypeError, UnicodeDecodeError) as exc:
            raise ValueError(f"malformed key slot: {exc}") from exc


def recipient_slot(key: MasterKey, recipient: str, access: Access) -> KeySlot:
    public = decode_recipient(recipient)
    sealed = seal(public, encode_master(key, access), _slot_aad(key.repository_id, access))
    return KeySlot("x25519", access, key.repository_id.hex(), sealed, recipient=recipient)


def passphrase_slot(
    key: MasterKey,
    passphrase: str,
    access: Access,
    *,
    n: int = SCRYPT_N,
    r: int = SCRYPT_R,
    p: int = SCRYPT_P,
) -> KeySlot:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    salt, nonce = os.urandom(16), os.urandom(NONCE_SIZE)
    k = scrypt_key(passphrase, salt, n, r, p)
    sealed = nonce + AESGCM(k).encrypt(
        nonce, encode_master(key, access), _slot_aad(key.repository_id, access)
    )
    return KeySlot("scrypt", access, key.repository_id.hex(), sealed, scrypt=(n, r, p, salt))


def _checked(slot: KeySlot, plain: bytes) -> MasterKey:
    key = decode_master(plain)
    if key.repository_id.hex() != slot.repository or key.access != slot.access:
        raise ValueError("key slot contents disagree with its header")
    return key


def open_with_identity(slot: KeySlot, identity: X25519PrivateKey) -> MasterKey:
    """``InvalidTag`` unless the slot was sealed to this identity."""
    if slot.type != "x25519":
        raise InvalidTag
    aad = _slot_aad(bytes.fromhex(slot.repository), slot.access)
    return _checked(slot, unseal(identity, slot.sealed, aad))


def open_with_passphrase(slot: KeySlot, passphrase: str) -> MasterKey:
    """``InvalidTag`` unless the passphrase is this slot's."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if slot.type != "scrypt" or slot.scrypt is None:
        raise InvalidTag
    n, r, p, salt = slot.scrypt
    k = scrypt_key(passphrase, salt, n, r, p)
    aad = _slot_aad(bytes.fromhex(slot.repository), slot.access)
    plain = AESGCM(k).decrypt(slot.sealed[:NONCE_SIZE], slot.sealed[NONCE_SIZE:], aad)
    return _checked(slot, plain)


__all__ = [
    "Access",
    "KeySlot",
    "MasterKey",
    "decode_master",
    "encode_master",
    "encode_recipient",
    "open_with_identity",
    "open_with_passphrase",
    "passphrase_slot",
    "recipient_slot",
]
