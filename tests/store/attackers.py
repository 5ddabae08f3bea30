"""The parties of the threat model (``docs/format.md`` § Threat model), as test fixtures.

``BucketAttacker`` can write, replace and delete any object of the store and holds no key: it
knows only what the bucket shows (the config, the recipients named in key slots). ``WriterAttacker``
also holds a write-only key slot's keys (a compromised export host). Both build their objects with
the project's own encoders, so every planted object is well-formed: what stops it must be a check,
not a parse error.
"""

from __future__ import annotations

import os
from dataclasses import replace

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from imagekit.store.crypto import MetaCipher, public_bytes
from imagekit.store.format import KEYS_PREFIX
from imagekit.store.keys import KeySlot, MasterKey, passphrase_slot, recipient_slot, sign_slot
from imagekit.store.pack import object_id
from imagekit.store.repository import read_config, read_slots
from tests.store.helpers import MemoryBackend


class BucketAttacker:
    """Write access to the bucket, no keys."""

    def __init__(self, backend: MemoryBackend):
        self.backend = backend
        self.repository_id = read_config(backend).id
        # Keys of its own for the victim's repository id: whatever it seals, it can open.
        self.key = MasterKey.generate(self.repository_id)

    def recipients(self) -> list[str]:
        """What any bucket reader learns: the recipients the key slots name."""
        return [s.recipient for _, s in read_slots(self.backend) if s.recipient]

    def plant(self, slot: KeySlot, *, legacy: bool = False) -> str:
        """``slot`` under a fresh slot name, with a MAC made with the attacker's own keys (a
        slot consistent in itself), or as a version-1 slot without MAC (``legacy``)."""
        sid = os.urandom(16)
        name = f"{KEYS_PREFIX}{sid.hex()}"
        planted = replace(slot, mac=None) if legacy else sign_slot(self.key, sid, slot)
        self.backend.write(name, planted.encode())
        return name

    def plant_read_slot(self, recipient: str, *, legacy: bool = False) -> str:
        """A read slot sealed to a victim's recipient, holding the attacker's keys."""
        return self.plant(recipient_slot(self.key, recipient, "read"), legacy=legacy)

    def plant_write_slot(self, recipient: str, *, legacy: bool = False) -> str:
        """A write slot sealed to a victim's recipient: data keys it seals go to the attacker."""
        return self.plant(recipient_slot(self.key.writer(), recipient, "write"), legacy=legacy)

    def plant_passphrase_slot(self, passphrase: str, **scrypt: int) -> str:
        return self.plant(passphrase_slot(self.key, passphrase, "read", **scrypt))

    def copy_slot(self, name: str) -> str:
        """A genuine slot's bytes under another name: one reader made to look like two."""
        copy = f"{KEYS_PREFIX}{os.urandom(16).hex()}"
        self.backend.write(copy, self.backend.objects[name])
        return copy

    def relabel_slot(self, name: str, recipient: str) -> None:
        """A genuine slot made to name another recipient (the sealed part is unchanged)."""
        slot = KeySlot.decode(self.backend.objects[name])
        self.backend.write(name, replace(slot, recipient=recipient).encode())

    def plant_object(self, name: str, data: bytes) -> None:
        self.backend.write(name, data)

    def plant_content_addressed(self, prefix: str, data: bytes) -> str:
        """An object named by its own hash, as the format names them: passes the name check."""
        name = f"{prefix}{object_id(data)}"
        self.backend.write(name, data)
        return name

    def can_open(self, sealed: bytes, aad: bytes) -> bool:
        from imagekit.store.crypto import InvalidTag, unseal

        assert self.key.read_private is not None
        try:
            unseal(self.key.read_private, sealed, aad)
        except InvalidTag:
            return False
        return True


class WriterAttacker(BucketAttacker):
    """A compromised export host: bucket write access and the write key W (not the read key)."""

    def __init__(self, backend: MemoryBackend, writer_key: MasterKey):
        super().__init__(backend)
        self.writer_key = writer_key
        self.meta = MetaCipher(writer_key.keys()[1])
        # The real W with a read key pair of its own: data keys sealed to it would be readable.
        private = X25519PrivateKey.generate()
        self.key = MasterKey(
            self.repository_id, writer_key.write_key, public_bytes(private), private
        )


__all__ = ["BucketAttacker", "WriterAttacker"]
