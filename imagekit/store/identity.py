"""Identity files (``docs/format.md`` § Recipients and identity files) and passphrases.

An identity is an X25519 private key; its recipient (the public key, ``ikr1…``) is what
``store init --recipient`` and ``key add`` take. The file is passphrase-protected (scrypt +
AES-256-GCM), written 0600 under a temporary name and renamed, so it is never seen half-written
or world-readable.
"""

from __future__ import annotations

import base64
import getpass
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from imagekit.errors import InputError, UsageError, WrongKey
from imagekit.state import write_private
from imagekit.store.crypto import encode_recipient, public_bytes, scrypt_key
from imagekit.store.format import AAD_IDENTITY, NONCE_SIZE, SCRYPT_N, SCRYPT_P, SCRYPT_R
from imagekit.store.jsondoc import integer, load_object

PASSPHRASE_ENV = "IMAGEKIT_PASSPHRASE"
IDENTITY_VERSION = 1

#: Asks for a passphrase; ``confirm`` asks twice (new secrets).
PassphraseSource = Callable[[str, bool], str]


@dataclass(frozen=True)
class Identity:
    private: X25519PrivateKey

    @property
    def recipient(self) -> str:
        return encode_recipient(public_bytes(self.private))

    @staticmethod
    def generate() -> Identity:
        return Identity(X25519PrivateKey.generate())


def env_or_prompt(prompt: str, confirm: bool) -> str:
    """``IMAGEKIT_PASSPHRASE`` if set, else a hidden prompt on the terminal."""
    value = os.environ.get(PASSPHRASE_ENV)
    if value is not None:
        # Refused here as at the prompt: an empty variable is more often a mistake (a secret
        # that failed to load) than a choice, and it would protect nothing.
        if not value:
            raise UsageError(
                f"{PASSPHRASE_ENV} is set but empty",
                hint="an empty passphrase protects nothing; set it, or unset it to be prompted",
            )
        return value
    if not sys.stdin.isatty():
        raise UsageError(f"a passphrase is needed: set {PASSPHRASE_ENV} or run on a terminal")
    first = getpass.getpass(f"{prompt}: ")
    if confirm and getpass.getpass(f"{prompt} (again): ") != first:
        raise UsageError("the passphrases differ")
    if not first:
        raise UsageError("an empty passphrase protects nothing")
    return first


def encode_identity(
    identity: Identity, passphrase: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P
) -> bytes:
    salt, nonce = os.urandom(16), os.urandom(NONCE_SIZE)
    k = scrypt_key(passphrase, salt, n, r, p)
    sealed = nonce + AESGCM(k).encrypt(nonce, identity.private.private_bytes_raw(), AAD_IDENTITY)
    doc = {
        "version": IDENTITY_VERSION,
        "kdf": "scrypt",
        "n": n,
        "r": r,
        "p": p,
        "salt": base64.b64encode(salt).decode("ascii"),
        "sealed": base64.b64encode(sealed).decode("ascii"),
    }
    return (
        "# imagekit identity: keep it secret; it opens every repository that lists its recipient\n"
        f"# recipient: {identity.recipient}\n"
        f"{json.dumps(doc, sort_keys=True)}\n"
    ).encode()


def decode_identity(data: bytes, passphrase: str, *, name: str = "identity") -> Identity:
    """``WrongKey`` for a wrong passphrase, ``InputError`` for a file that is not an identity."""
    try:
        lines = [ln for ln in data.decode("utf-8").splitlines() if ln and not ln.startswith("#")]
        doc = load_object(lines[-1], "its last line")
        if doc.get("version") != IDENTITY_VERSION or doc.get("kdf") != "scrypt":
            raise ValueError("unknown identity version or kdf")
        salt = base64.b64decode(doc["salt"])
        sealed = base64.b64decode(doc["sealed"])
        if len(sealed) != NONCE_SIZE + 32 + 16:
            raise ValueError("sealed key has the wrong length")
        n, r, p = (integer(doc[k], f"scrypt {k}") for k in "nrp")
        k = scrypt_key(passphrase, salt, n, r, p)
    except (ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError) as exc:
        raise InputError(f"{name}: not an imagekit identity file ({exc})") from exc
    try:
        raw = AESGCM(k).decrypt(sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], AAD_IDENTITY)
    except InvalidTag as exc:
        raise WrongKey(f"{name}: wrong passphrase for this identity file") from exc
    return Identity(X25519PrivateKey.from_private_bytes(raw))


def write_identity(path: Path, identity: Identity, passphrase: str, *, force: bool = False) -> None:
    """Write 0600 to a temporary name beside ``path``, then rename; refuse to overwrite."""
    if path.exists() and not force:
        raise UsageError(f"{path}: exists; refusing to overwrite an identity")
    write_private(path, encode_identity(identity, passphrase))


def read_identity(path: Path, passphrase: PassphraseSource = env_or_prompt) -> Identity:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read identity file ({exc.strerror})") from exc
    return decode_identity(data, passphrase(f"passphrase for {path}", False), name=str(path))


__all__ = [
    "PASSPHRASE_ENV",
    "Identity",
    "PassphraseSource",
    "decode_identity",
    "encode_identity",
    "env_or_prompt",
    "read_identity",
    "write_identity",
]
