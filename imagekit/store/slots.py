"""Key slots: reading them from a bucket anyone may write, and choosing the ones to trust.

A slot is sealed to a recipient's public key or a passphrase; sealing needs no secret, so the
bucket may hold slots of keys that are not the repository's. Only slots whose keys match the
repository fingerprint (``docs/format.md`` § Repository fingerprint) are used; everything else
under ``keys/`` is ignored with a warning, so a planted object can neither be used nor stop a
client.

Opening uses one slot; managing keys (``key list``, ``key remove``, ``store upgrade``) judges
every slot, most of which the caller cannot open: ``review_slots`` sorts them into genuine (the
slot MAC verifies under the repository's keys, or the caller opened it and it matched),
unverified (a slot written before slot MACs that the caller cannot open, or a read slot judged
by a write-only key) and planted (``docs/format.md`` § Slot MAC).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from imagekit.errors import IntegrityError, ObjectNotFound, UsageError
from imagekit.store.backends.base import Backend
from imagekit.store.crypto import InvalidTag
from imagekit.store.format import KEYS_PREFIX, SLOT_ID_SIZE
from imagekit.store.identity import Identity
from imagekit.store.keys import (
    KeySlot,
    MasterKey,
    normalize_fingerprint,
    open_with_identity,
    open_with_passphrase,
    slot_mac_ok,
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
) -> tuple[list[tuple[str, KeySlot, MasterKey]], list[str]]:
    """The slots that open with the identity or passphrase and match ``expected`` (when set),
    with their keys, and the names of those that opened to keys not written as the repository's
    (another fingerprint, or a MAC they did not make)."""
    opened: list[tuple[str, KeySlot, MasterKey]] = []
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
        if slot.mac is not None and not _mac_ok(key, name, slot):
            # Keys that open but a MAC they did not make: fields changed after writing (say the
            # recipient label), or a slot copied to another name. Not the slot as written.
            log.warning(
                "%s/%s: key slot MAC does not verify under the keys it holds; ignored",
                backend.url,
                name,
            )
            foreign.append(name)
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
        opened.append((name, slot, key))
        if expected is not None and key.access == "read":
            break  # the best there is: no need to pay for more key derivations
    return opened, foreign


def slot_id(name: str) -> bytes | None:
    """The slot id of ``keys/<32 hex>``; None for any other name (no genuine slot has one)."""
    text = name[len(KEYS_PREFIX) :] if name.startswith(KEYS_PREFIX) else ""
    if len(text) != 2 * SLOT_ID_SIZE or any(c not in "0123456789abcdef" for c in text):
        return None
    return bytes.fromhex(text)


def _mac_ok(key: MasterKey, name: str, slot: KeySlot) -> bool:
    sid = slot_id(name)
    return sid is not None and slot_mac_ok(key, sid, slot)


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


def describe(name: str, slot: KeySlot) -> dict[str, Any]:
    return {
        "name": name,
        "type": slot.type,
        "access": slot.access,
        "recipient": slot.recipient,
        "version": slot.version,
    }


def describe_slots(backend: Backend) -> list[dict[str, Any]]:
    """Every slot as the bucket lists it: claims, none of them checked."""
    return [describe(n, s) for n, s in read_slots(backend)]


@dataclass
class SlotReview:
    """Every slot under ``keys/``, judged with the keys of an opened repository."""

    #: Written with the repository's keys: the only slots counted, shown or removed as its own.
    genuine: list[tuple[str, KeySlot]] = field(default_factory=list)
    #: That these keys cannot judge: version-1 slots they did not open (``store upgrade``), and
    #: read slots when the keys are write-only. Never counted as the repository's.
    unverified: list[tuple[str, KeySlot]] = field(default_factory=list)
    #: Not written with the repository's keys (or altered since): ignored, with a warning.
    planted: list[str] = field(default_factory=list)

    def readers(self) -> list[str]:
        return [n for n, s in self.genuine if s.access == "read"]


def review_slots(
    backend: Backend,
    repository: str,
    key: MasterKey,
    opened: Mapping[str, KeySlot] | None = None,
    foreign: Collection[str] = (),
) -> SlotReview:
    """Judge every slot with the repository's ``key``. ``opened``: slots the caller opened and
    found matching the fingerprint, as it read them (a version-1 slot is genuine only so, and
    only while the bucket serves the same bytes: it may serve others to a second read);
    ``foreign``: slots it opened to other keys (planted whatever their MAC says)."""
    opened = opened or {}
    review = SlotReview()
    for name, slot in sorted(read_slots(backend)):
        why = None
        if slot.repository != repository:
            why = "a key slot of another repository"
        elif slot_id(name) is None:
            why = "not named keys/<32 hex>, as every slot is written"  # a copy, at best
        elif name in foreign:
            why = "it opened, but not to this repository's keys as written"
        elif opened.get(name) == slot:
            review.genuine.append((name, slot))
            continue
        elif slot.mac is None:
            review.unverified.append((name, slot))
            continue
        elif slot.access == "read" and key.read_private is None:
            review.unverified.append((name, slot))  # only a reader can check a read slot
            continue
        elif _mac_ok(key, name, slot):
            review.genuine.append((name, slot))
            continue
        else:
            why = "its MAC does not verify: not written with this repository's keys"
        log.warning("%s/%s: key slot ignored (%s)", backend.url, name, why)
        review.planted.append(name)
    legacy = [n for n, s in review.unverified if s.mac is None]
    if legacy:
        log.warning(
            "%s: %d key slot(s) written before slot MACs cannot be checked with this key and "
            "are not counted: %s (run `imagekit store upgrade`)",
            backend.url,
            len(legacy),
            ", ".join(legacy),
        )
    return review


__all__ = [
    "SlotReview",
    "describe",
    "describe_slots",
    "expected_fingerprint",
    "open_slots",
    "read_slots",
    "review_slots",
    "slot_id",
]
