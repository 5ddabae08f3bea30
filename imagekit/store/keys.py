"""Repository keys and key slots (``docs/format.md`` § Keys). Pure: values ↔ bytes.

A reader's ``MasterKey`` holds the write key W *and* the read private key; a writer's holds W and
only the read *public* key, so everything it seals is readable by readers and not by itself.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import struct
from dataclasses import dataclass, replace
from typing import Any, Literal

import blake3
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from imagekit.store.crypto import (
    InvalidTag,
    check_scrypt_params,
    decode_recipient,
    derive_keys,
    encode_recipient,
    hkdf,
    public_bytes,
    scrypt_key,
    seal,
    unseal,
)
from imagekit.store.format import (
    AAD_SLOT,
    ACCESS_READ,
    ACCESS_WRITE,
    FINGERPRINT_PREFIX,
    FINGERPRINT_SIZE,
    INFO_FINGERPRINT,
    INFO_SLOT_MAC_READ,
    INFO_SLOT_MAC_WRITE,
    KEY_SIZE,
    LABEL_SLOT_MAC,
    MASTER_KEY_VERSION,
    NONCE_SIZE,
    REPOSITORY_ID_SIZE,
    SCRYPT_N,
    SCRYPT_P,
    SCRYPT_R,
    SLOT_ID_SIZE,
    SLOT_MAC_SIZE,
    SLOT_TYPE_SCRYPT,
    SLOT_TYPE_X25519,
    SLOT_VERSION,
    SLOT_VERSION_LEGACY,
)
from imagekit.store.jsondoc import integer, load_object, member, text

Access = Literal["read", "write"]
_ACCESS_BYTE: dict[str, int] = {"read": ACCESS_READ, "write": ACCESS_WRITE}
_TYPE_BYTE: dict[str, int] = {"x25519": SLOT_TYPE_X25519, "scrypt": SLOT_TYPE_SCRYPT}


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

    @property
    def fingerprint(self) -> str:
        """The repository fingerprint: what these keys are, in a form safe to publish."""
        return fingerprint(self.repository_id, self.write_key, self.read_public)

    def writer(self) -> MasterKey:
        """The same repository keys without the read key."""
        return MasterKey(self.repository_id, self.write_key, self.read_public)

    @staticmethod
    def generate(repository_id: bytes) -> MasterKey:
        private = X25519PrivateKey.generate()
        return MasterKey(repository_id, os.urandom(KEY_SIZE), public_bytes(private), private)


def fingerprint(repository_id: bytes, write_key: bytes, read_public: bytes) -> str:
    """``ikf1`` + base32 of 20 bytes committing to the repository id, W and the read public key.

    Sealing a slot needs only a recipient's public key, so anyone who can write ``keys/`` can
    plant a slot holding keys of their own. A client that knows the fingerprint accepts only
    slots whose keys produce it: a planted read slot (other read key pair) or write slot (other
    W, or another read public key to seal data keys to) never matches. W enters through HKDF, so
    the published value says nothing about W itself.
    """
    commit = hkdf(write_key, repository_id, INFO_FINGERPRINT)
    digest = blake3.blake3(INFO_FINGERPRINT + repository_id + commit + read_public).digest()
    raw = digest[:FINGERPRINT_SIZE]
    return FINGERPRINT_PREFIX + base64.b32encode(raw).decode("ascii").lower()


def normalize_fingerprint(text: str) -> str:
    """A fingerprint as written by ``fingerprint``; ``ValueError`` when it is not one."""
    value = text.strip().lower()
    body = value[len(FINGERPRINT_PREFIX) :]
    try:
        raw = base64.b32decode(body.upper())
    except ValueError:
        raw = b""
    if not value.startswith(FINGERPRINT_PREFIX) or len(raw) != FINGERPRINT_SIZE:
        raise ValueError(
            f"not a repository fingerprint (expected {FINGERPRINT_PREFIX} and 32 base32 "
            f"characters, as `imagekit store init` prints): {text!r}"
        )
    return value


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
    #: The slot MAC (``slot_mac``); None: a slot as written before slot MACs (version 1).
    mac: bytes | None = None

    @property
    def version(self) -> int:
        return SLOT_VERSION if self.mac is not None else SLOT_VERSION_LEGACY

    def encode(self) -> bytes:
        doc: dict[str, Any] = {
            "version": self.version,
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
        if self.mac is not None:
            doc["mac"] = base64.b64encode(self.mac).decode("ascii")
        return (json.dumps(doc, sort_keys=True) + "\n").encode("utf-8")

    @staticmethod
    def decode(data: bytes) -> KeySlot:
        """``ValueError`` when the slot is not a well-formed key slot of version 2 (or 1)."""
        try:
            doc = load_object(data, "key slot")
            version = doc["version"]
            if version not in (SLOT_VERSION, SLOT_VERSION_LEGACY) or isinstance(version, bool):
                raise ValueError(f"unknown key slot version {version!r}")
            if doc["type"] not in ("x25519", "scrypt") or doc["access"] not in _ACCESS_BYTE:
                raise ValueError("unknown key slot type or access")
            scrypt = None
            if doc["type"] == "scrypt":
                s = doc["scrypt"]
                n, r, p = (integer(member(s, k, "scrypt"), f"scrypt {k}") for k in "nrp")
                scrypt = (n, r, p, base64.b64decode(s["salt"]))
                check_scrypt_params(n, r, p)
            mac = None
            if version == SLOT_VERSION:
                mac = base64.b64decode(text(doc["mac"], "slot MAC"), validate=True)
                if len(mac) != SLOT_MAC_SIZE:
                    raise ValueError("slot MAC has the wrong length")
            recipient = doc.get("recipient")
            return KeySlot(
                type=doc["type"],
                access=doc["access"],
                repository=str(doc["repository"]),
                sealed=base64.b64decode(doc["sealed"]),
                recipient=None if recipient is None else text(recipient, "recipient"),
                scrypt=scrypt,
                mac=mac,
            )
        except (KeyError, TypeError, UnicodeDecodeError) as exc:
            raise ValueError(f"malformed key slot: {exc}") from exc


def _slot_mac_key(key: MasterKey, access: Access) -> bytes:
    """A write slot's MAC key comes from W, a read slot's from W and the read private key.

    So a writer (it holds W) can make and check write slots, as it may grant write access; a
    read slot only a reader can make: a compromised export host cannot plant one that counts.
    """
    if access == "write":
        return hkdf(key.write_key, key.repository_id, INFO_SLOT_MAC_WRITE)
    if key.read_private is None:
        raise ValueError("a read slot's MAC needs the read key")
    ikm = key.write_key + key.read_private.private_bytes_raw()
    return hkdf(ikm, key.repository_id, INFO_SLOT_MAC_READ)


def slot_mac(key: MasterKey, slot_id: bytes, slot: KeySlot) -> bytes:
    """The MAC binding every field of a slot, and its object name, to the repository's keys.

    ``ValueError`` when ``key`` cannot make it (a read slot and a write-only key) or the slot's
    fields do not fit the layout of ``docs/format.md`` § Slot MAC.
    """
    if len(slot_id) != SLOT_ID_SIZE:
        raise ValueError("a slot id is 16 bytes")
    if slot.type == "x25519":
        if slot.recipient is None:
            raise ValueError("an x25519 slot names its recipient")
        params = decode_recipient(slot.recipient)
    else:
        if slot.scrypt is None:
            raise ValueError("a scrypt slot carries its parameters")
        n, r, p, salt = slot.scrypt
        if len(salt) > 255:
            raise ValueError("scrypt salt longer than 255 bytes")
        params = struct.pack("<IIIB", n, r, p, len(salt)) + salt
    message = (
        LABEL_SLOT_MAC
        + bytes.fromhex(slot.repository)
        + slot_id
        + bytes([_ACCESS_BYTE[slot.access], _TYPE_BYTE[slot.type]])
        + params
        + struct.pack("<I", len(slot.sealed))
        + slot.sealed
    )
    return blake3.blake3(message, key=_slot_mac_key(key, slot.access)).digest()


def sign_slot(key: MasterKey, slot_id: bytes, slot: KeySlot) -> KeySlot:
    """``slot`` with its MAC for the object ``keys/<slot id hex>`` (version 2)."""
    return replace(slot, mac=slot_mac(key, slot_id, slot))


def slot_mac_ok(key: MasterKey, slot_id: bytes, slot: KeySlot) -> bool:
    """Whether ``slot`` (version 2) was written under ``key`` as ``keys/<slot id hex>``;
    ``ValueError`` when ``key`` cannot tell (a read slot and a write-only key)."""
    if slot.mac is None:
        return False
    if slot.access == "read" and key.read_private is None:
        raise ValueError("a read slot's MAC needs the read key")
    try:
        expected = slot_mac(key, slot_id, slot)
    except ValueError:
        return False  # fields a genuine slot never has (no recipient, a huge salt)
    return hmac.compare_digest(expected, slot.mac)


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
    "fingerprint",
    "normalize_fingerprint",
    "open_with_identity",
    "open_with_passphrase",
    "passphrase_slot",
    "recipient_slot",
    "sign_slot",
    "slot_mac",
    "slot_mac_ok",
]
