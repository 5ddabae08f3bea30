"""Key slots: reading them from a bucket anyone may write, and choosing the ones to trust.

A slot is sealed to a recipient's public key or a passphrase; sealing needs no secret, so the
bucket may hold slots of keys that are not the repository's. Only slots whose keys match the
repository fingerprint (``docs/format.md`` § Repository fingerprint) are used; everything else
under ``keys/`` is ignored with a warning, so a planted object can neither be used nor stop a
client.
"""

from __future__ import annotations

import logging
from typing import Any

from imagekit.errors import IntegrityError, ObjectNotFound, UsageError
from imagekit.store.backends.base import Backend
from imagekit.store.crypto import InvalidTag
from imagekit.store.format import KEYS_PREFIX
from imagekit.store.identity import Identity
from imagekit.store.keys import (
    KeySlot,
    MasterKey,
    normalize_fingerprint,
    open_with_identity,
    open_with_passphrase,
)
from imagekit.store.trust import KnownStores

log = logging.getLogger(__name__)


def open_slots(
    backend: Backend,
    repository: str,
    identity: Identity | None,
    passphrase: str | None,
    expected: str | None,
    source: str,
) -> tuple[list[tuple[str, MasterKey]], list[str]]:
    """The slots that open with the identity or passphrase and match ``expected`` (when set),
    and the names of those that opened with keys of another fingerprint."""
    opened: list[tuple[str, MasterKey]] = []
    foreign: list[str] = []
    # Cheapest key derivation first: a planted passphrase slot may ask for the most scrypt
    # the bounds allow (~1 GiB, seconds), and once a matching read slot opens the search
    # stops, so the repository's own (default-cost) slots are reached before such bait.
    for name, slot in sorted(read_slots(backend), key=_slot_cost):
        if slot.repository != repository:
            log.warning("%s/%s: key slot of another repository; ignored", backend.url, name)
            continue
        try:
            if identity is not None and slot.type == "x25519":
                key = open_with_identity(slot, identity.private)
            elif passphrase is not None and slot.type == "scrypt":
                key = open_with_passphrase(slot, passphrase)
            else:
                continue
        except InvalidTag:
            continue
        except ValueError as exc:
            log.warning("%s/%s: unusable key slot ignored (%s)", backend.url, name, exc)
            continue
        if expected is not None and key.fingerprint != expected:
            log.warning(
                "%s/%s: key slot holds keys of fingerprint %s, not the %s fingerprint %s; "
                "ignored (it was not written with this repository's keys)",
                backend.url,
                name,
                key.fingerprint,
                source,
                expected,
            )
            foreign.append(name)
            continue
        opened.append((name, key))
        if expected is not None and key.access == "read":
            break  # the best there is: no need to pay for more key derivations
    return opened, foreign


def _slot_cost(item: tuple[str, KeySlot]) -> int:
    n, r, p, _ = item[1].scrypt or (0, 0, 0, b"")
    return n * r * p


def expected_fingerprint(
    url: str, declared: str | None, pinned: str | None, known: KnownStores | None
) -> tuple[str | None, str]:
    """The fingerprint the keys must match, and where it came from (pinned, recorded on first
    use, or declared by ``config``); ``IntegrityError`` when ``config`` declares another."""
    expected: str | None
    if pinned is not None:
        try:
            expected, source = normalize_fingerprint(pinned), "pinned"
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
    else:
        recorded = known.get(url) if known is not None else None
        expected, source = recorded, "recorded"
    if expected is None:
        return declared, "declared"
    if declared is not None and declared != expected:
        where = f" in {known.path}" if source == "recorded" and known is not None else ""
        raise IntegrityError(
            f"{url}/config: declares fingerprint {declared}, but the {source} "
            f"fingerprint of this store is {expected}{where}",
            hint="the repository's keys were replaced, or the pin is wrong: compare with what "
            "`imagekit store init` printed; only if the store was re-created on purpose, "
            "remove its entry there (or pin the new value)",
        )
    return expected, source


def read_slots(backend: Backend) -> list[tuple[str, KeySlot]]:
    """Every well-formed key slot; anything else under ``keys/`` is ignored with a warning
    (whoever can write the bucket can put objects there; they must not stop a client)."""
    slots = []
    for info in backend.list(KEYS_PREFIX):
        try:
            slots.append((info.name, KeySlot.decode(backend.read(info.name))))
        except ValueError as exc:
            log.warning("%s/%s: not a key slot, ignored (%s)", backend.url, info.name, exc)
        except ObjectNotFound:
            continue  # removed between the listing and the read
    return slots


def describe_slots(backend: Backend) -> list[dict[str, Any]]:
    return [
        {"name": n, "type": s.type, "access": s.access, "recipient": s.recipient}
        for n, s in read_slots(backend)
    ]


__all__ = ["describe_slots", "expected_fingerprint", "open_slots", "read_slots"]
