"""Managing key slots in a bucket others write: what ``key list``, ``key remove``, ``store
upgrade`` and ``store verify`` count and show (``docs/format.md`` § Slot MAC).

The attacker writes the bucket (``BucketAttacker``) or also holds a writer key
(``WriterAttacker``); every planted slot is well-formed and, where the attacker can make one,
carries a MAC of its own keys, so what stops it must be the check against the repository's keys.
"""

from __future__ import annotations

import json
import logging
import struct
from dataclasses import replace
from pathlib import Path

import blake3
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from imagekit.errors import UsageError, WrongKey
from imagekit.store.crypto import decode_recipient
from imagekit.store.identity import Identity
from imagekit.store.keys import KeySlot, MasterKey, recipient_slot, slot_mac
from imagekit.store.repository import Repository, read_slots
from imagekit.store.upgrade import upgrade_slots
from imagekit.store.verify import verify
from tests.store.attackers import BucketAttacker, WriterAttacker
from tests.store.helpers import Crash, MemoryBackend, downgrade_slots

LEGACY = json.loads((Path(__file__).parent / "data" / "legacy-v1-slots.json").read_text())


def _slots_of(backend: MemoryBackend, recipient: str) -> list[KeySlot]:
    return [s for _, s in read_slots(backend) if s.recipient == recipient]


def _slot_named(backend: MemoryBackend, recipient: str) -> str:
    (name,) = [n for n, s in read_slots(backend) if s.recipient == recipient]
    return name


def test_planted_slots_of_every_kind_are_ignored_with_a_warning_naming_each(
    backend: MemoryBackend,
    repo: Repository,
    reader: Identity,
    writer: Identity,
    caplog: pytest.LogCaptureFixture,
) -> None:
    attacker = BucketAttacker(backend)
    mine, hosts = _slot_named(backend, reader.recipient), _slot_named(backend, writer.recipient)
    planted = {
        attacker.plant_read_slot(writer.recipient),
        attacker.plant_write_slot(writer.recipient),
        attacker.plant_passphrase_slot("guess", n=2, r=1, p=1),
        attacker.plant_read_slot(Identity.generate().recipient),  # to a recipient of its own
        attacker.copy_slot(mine),  # one genuine reader made to look like two
        hosts,  # relabelled below: no longer the slot as written
        "keys/not-a-slot-id",
    }
    attacker.relabel_slot(hosts, Identity.generate().recipient)
    attacker.plant_object("keys/not-a-slot-id", backend.objects[mine])
    owner = Repository.open(backend, identity=reader, fingerprint=repo.fingerprint)
    with caplog.at_level(logging.WARNING):
        review = owner.review_slots()
    assert [n for n, _ in review.genuine] == [mine]
    assert set(review.planted) == planted
    assert not review.unverified
    for name in planted:
        assert name in caplog.text


def test_the_last_genuine_reader_cannot_be_removed_however_many_readers_are_planted(
    backend: MemoryBackend, repo: Repository, reader: Identity
) -> None:
    attacker = BucketAttacker(backend)
    (real,) = [n for n, s in read_slots(backend) if s.access == "read"]
    attacker.plant_read_slot(reader.recipient)
    attacker.plant_read_slot(Identity.generate().recipient)
    attacker.plant_read_slot(Identity.generate().recipient, legacy=True)
    attacker.copy_slot(real)
    attacker.plant_passphrase_slot("pw", n=2, r=1, p=1)
    # Counting the bucket's slots, there were six readers; one is the repository's.
    owner = Repository.open(backend, identity=reader, fingerprint=repo.fingerprint)
    with pytest.raises(UsageError, match="last genuine"):
        owner.remove_recipient(reader.recipient)
    assert real in backend.objects
    assert Repository.open(backend, identity=reader, fingerprint=repo.fingerprint)


def test_removing_a_genuine_slot_works_and_planted_slots_are_never_counted_as_it(
    backend: MemoryBackend, repo: Repository, reader: Identity, writer: Identity
) -> None:
    attacker = BucketAttacker(backend)
    planted = attacker.plant_write_slot(writer.recipient)
    owner = Repository.open(backend, identity=reader, fingerprint=repo.fingerprint)
    gone = owner.remove_recipient(writer.recipient)
    assert len(gone) == 1 and planted not in gone
    with pytest.raises(WrongKey):
        Repository.open(backend, identity=writer, fingerprint=repo.fingerprint)
    # Only planted slots name it now: there is nothing of the repository's to remove.
    with pytest.raises(Exception, match="no key slot for recipient"):
        owner.remove_recipient(writer.recipient)


def test_a_writer_key_holder_cannot_plant_a_reader_that_counts(
    backend: MemoryBackend, repo: Repository, reader: Identity, writer: Identity
) -> None:
    """It holds W, so it can make a write slot's MAC; a read slot's needs the read key."""
    stolen = Repository.open(backend, identity=writer, fingerprint=repo.fingerprint).key
    attacker = WriterAttacker(backend, stolen)
    fake_readers = {
        attacker.plant_read_slot(reader.recipient),
        attacker.plant_read_slot(Identity.generate().recipient),
    }
    # A read slot holding exactly the writer's keys, MAC'd as a write slot would be.
    sid = bytes(range(16))
    slot = recipient_slot(stolen, Identity.generate().recipient, "write")
    forged = replace(slot, access="read", mac=slot_mac(stolen, sid, slot))
    backend.objects[f"keys/{sid.hex()}"] = forged.encode()
    fake_readers.add(f"keys/{sid.hex()}")
    owner = Repository.open(backend, identity=reader, fingerprint=repo.fingerprint)
    review = owner.review_slots()
    assert fake_readers <= set(review.planted)
    assert len(review.readers()) == 1
    with pytest.raises(UsageError, match="last genuine"):
        owner.remove_recipient(reader.recipient)


def test_a_write_only_key_checks_write_slots_and_cannot_remove_read_access(
    backend: MemoryBackend, repo: Repository, reader: Identity, writer: Identity
) -> None:
    other = Identity.generate()
    repo.add_recipient(other.recipient, "write")
    host = Repository.open(backend, identity=writer, fingerprint=repo.fingerprint)
    attacker = BucketAttacker(backend)
    planted = attacker.plant_write_slot(other.recipient)
    blocker = attacker.plant_read_slot(other.recipient)  # a writer cannot judge read slots
    review = host.review_slots()
    assert {s.recipient for _, s in review.genuine} == {writer.recipient, other.recipient}
    assert {n for n, _ in review.unverified} == {blocker, _slot_named(backend, reader.recipient)}
    assert review.planted == [planted]
    with pytest.raises(WrongKey, match="write-only"):
        host.remove_recipient(reader.recipient)
    assert len(host.remove_recipient(other.recipient)) == 1
    assert {n for n, s in read_slots(backend) if s.recipient == other.recipient} == {
        planted,
        blocker,
    }


def test_a_slot_altered_or_copied_does_not_open(
    backend: MemoryBackend,
    repo: Repository,
    reader: Identity,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The access byte is in the sealed part's AAD, the rest (recipient label, name) only in
    the MAC: a genuine slot relabelled or copied opens to the right keys but is not used."""
    attacker = BucketAttacker(backend)
    (real,) = [n for n, s in read_slots(backend) if s.recipient == reader.recipient]
    copy = attacker.copy_slot(real)
    del backend.objects[real]
    with caplog.at_level(logging.WARNING), pytest.raises(WrongKey) as err:
        Repository.open(backend, identity=reader, fingerprint=repo.fingerprint)
    assert copy in caplog.text and "MAC" in caplog.text and copy in str(err.value)


def test_verify_reports_planted_slots(
    backend: MemoryBackend, repo: Repository, reader: Identity, writer: Identity
) -> None:
    planted = BucketAttacker(backend).plant_read_slot(writer.recipient)
    owner = Repository.open(backend, identity=reader, fingerprint=repo.fingerprint)
    problems = verify(owner).problems
    assert len(problems) == 1 and planted in problems[0]


def test_slot_decoding_refuses_unknown_versions_and_a_missing_mac(
    backend: MemoryBackend, repo: Repository
) -> None:
    name = sorted(backend.names("keys/"))[0]
    doc = json.loads(backend.objects[name])
    assert doc["version"] == 2 and len(doc["mac"]) == 44  # 32 bytes, base64
    for change in ({"version": 3}, {"version": True}, {"mac": "AAAA"}):
        with pytest.raises(ValueError):
            KeySlot.decode(json.dumps({**doc, **change}).encode())
    del doc["mac"]
    with pytest.raises(ValueError):
        KeySlot.decode(json.dumps(doc).encode())


def test_the_slot_mac_is_the_one_format_md_specifies() -> None:
    """Computed here from the text of § Slot MAC, with the primitives alone."""
    rid, w = bytes(range(16)), bytes(range(16, 48))
    private = X25519PrivateKey.from_private_bytes(bytes(range(48, 80)))
    key = MasterKey(rid, w, private.public_key().public_bytes_raw(), private)
    recipient = Identity(X25519PrivateKey.from_private_bytes(bytes(32))).recipient
    sid = bytes(range(100, 116))

    def hkdf(ikm: bytes, info: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=rid, info=info).derive(ikm)

    for access, type_byte, access_byte, mac_key in (
        ("read", 1, 2, hkdf(w + private.private_bytes_raw(), b"imagekit/v1/slot-mac/read")),
        ("write", 1, 1, hkdf(w, b"imagekit/v1/slot-mac/write")),
    ):
        slot = KeySlot("x25519", access, rid.hex(), b"s" * 80, recipient=recipient)  # type: ignore[arg-type]
        message = (
            b"imagekit/v1/slot-mac" + rid + sid + bytes([access_byte, type_byte])
            + decode_recipient(recipient) + struct.pack("<I", 80) + b"s" * 80
        )  # fmt: skip
        assert slot_mac(key, sid, slot) == blake3.blake3(message, key=mac_key).digest()
    salt = b"\x07" * 16
    slot = KeySlot("scrypt", "read", rid.hex(), b"t" * 60, scrypt=(1024, 8, 1, salt))
    message = (
        b"imagekit/v1/slot-mac" + rid + sid + bytes([2, 2])
        + struct.pack("<IIIB", 1024, 8, 1, 16) + salt + struct.pack("<I", 60) + b"t" * 60
    )  # fmt: skip
    read_key = hkdf(w + private.private_bytes_raw(), b"imagekit/v1/slot-mac/read")
    assert slot_mac(key, sid, slot) == blake3.blake3(message, key=read_key).digest()
    with pytest.raises(ValueError, match="read key"):
        slot_mac(key.writer(), sid, slot)


# -- repositories written before slot MACs ------------------------------------------------------


@pytest.fixture
def legacy() -> MemoryBackend:
    """The config and key slots the release before slot MACs wrote (a frozen copy)."""
    backend = MemoryBackend("memory://legacy")
    backend.objects = {k: v.encode() for k, v in LEGACY["objects"].items()}
    return backend


LEGACY_READER = Identity(X25519PrivateKey.from_private_bytes(bytes(range(32))))
LEGACY_WRITER = Identity(X25519PrivateKey.from_private_bytes(bytes(range(32, 64))))


def test_a_repository_written_before_slot_macs_opens_for_every_holder(
    legacy: MemoryBackend,
) -> None:
    pin = LEGACY["fingerprint"]
    assert Repository.open(legacy, identity=LEGACY_READER, fingerprint=pin).key.access == "read"
    assert Repository.open(legacy, identity=LEGACY_WRITER, fingerprint=pin).key.access == "write"
    assert Repository.open(legacy, passphrase="legacy pw", fingerprint=pin).key.access == "read"
    assert Repository.open(legacy, identity=LEGACY_READER).fingerprint == pin  # declared


def test_old_slots_count_only_where_they_open_to_the_fingerprint(
    legacy: MemoryBackend, caplog: pytest.LogCaptureFixture
) -> None:
    pin = LEGACY["fingerprint"]
    attacker = BucketAttacker(legacy)
    planted = attacker.plant_read_slot(LEGACY_READER.recipient, legacy=True)
    owner = Repository.open(legacy, identity=LEGACY_READER, fingerprint=pin)
    with caplog.at_level(logging.WARNING):
        review = owner.review_slots()
    assert [s.recipient for _, s in review.genuine] == [LEGACY_READER.recipient]
    assert planted in [n for n, _ in review.unverified] and "store upgrade" in caplog.text
    # The passphrase slot and the planted one cannot be checked with this identity: not
    # counted, so the only reader this key knows is itself.
    with pytest.raises(UsageError, match="last genuine"):
        owner.remove_recipient(LEGACY_READER.recipient)
    # Removing another holder removes its old slot (removal grants nothing).
    assert len(owner.remove_recipient(LEGACY_WRITER.recipient)) == 1
    with pytest.raises(WrongKey):
        Repository.open(legacy, identity=LEGACY_WRITER, fingerprint=pin)


def test_a_planted_old_slot_opening_to_other_keys_is_planted(
    legacy: MemoryBackend, caplog: pytest.LogCaptureFixture
) -> None:
    planted = BucketAttacker(legacy).plant_read_slot(LEGACY_WRITER.recipient, legacy=True)
    host = Repository.open(legacy, identity=LEGACY_WRITER, fingerprint=LEGACY["fingerprint"])
    assert host.key.access == "write"
    assert planted in host.review_slots().planted


def test_upgrade_macs_own_slots_in_place_and_replaces_only_vouched_ones(
    legacy: MemoryBackend,
) -> None:
    pin = LEGACY["fingerprint"]
    attacker = BucketAttacker(legacy)
    # The attacker's old-style slot sealed to a recipient of its own: nobody vouches for it.
    own = Identity.generate()
    bait = attacker.plant_read_slot(own.recipient, legacy=True)
    before = {n: KeySlot.decode(d) for n, d in legacy.objects.items() if n.startswith("keys/")}
    owner = Repository.open(legacy, identity=LEGACY_READER, fingerprint=pin)
    report = upgrade_slots(owner, writers=[LEGACY_WRITER.recipient])
    (mine,) = report.upgraded
    after = KeySlot.decode(legacy.objects[mine])
    assert after.version == 2 and after.sealed == before[mine].sealed
    assert len(report.added) == 1 and len(report.removed) == 1
    assert {x["name"] for x in report.left} == {bait, *_passphrase_names(legacy)}
    assert not _slots_of(legacy, own.recipient)[0].mac  # never given a slot of the real keys
    for opener in ({"identity": LEGACY_READER}, {"identity": LEGACY_WRITER}):
        assert Repository.open(legacy, fingerprint=pin, **opener).fingerprint == pin  # type: ignore[arg-type]
    # The passphrase holder upgrades its own slot.
    upgrade_slots(Repository.open(legacy, passphrase="legacy pw", fingerprint=pin))
    review = Repository.open(legacy, identity=LEGACY_READER, fingerprint=pin).review_slots()
    assert len(review.genuine) == 3 and all(s.version == 2 for _, s in review.genuine)
    assert [n for n, _ in review.unverified] == [bait]


def _passphrase_names(backend: MemoryBackend) -> list[str]:
    return [n for n, s in read_slots(backend) if s.type == "scrypt"]


def test_upgrade_refuses_vouching_beyond_what_the_old_slot_claims(legacy: MemoryBackend) -> None:
    pin = LEGACY["fingerprint"]
    owner = Repository.open(legacy, identity=LEGACY_READER, fingerprint=pin)
    before = dict(legacy.objects)
    with pytest.raises(UsageError, match="claim write"):
        upgrade_slots(owner, readers=[LEGACY_WRITER.recipient])  # a writer made a reader
    with pytest.raises(UsageError, match="no version-1 slot"):
        upgrade_slots(owner, writers=[Identity.generate().recipient])
    host = Repository.open(legacy, identity=LEGACY_WRITER, fingerprint=pin)
    with pytest.raises(WrongKey, match="write-only"):
        upgrade_slots(host, readers=[LEGACY_READER.recipient])
    assert legacy.objects == before  # nothing written before the refusal


class CrashingBackend(MemoryBackend):
    """Dies at the ``at``-th write or delete under ``keys/`` (as a kill would, between two
    whole-object operations: a backend write itself is atomic)."""

    def __init__(self, inner: MemoryBackend, at: int):
        super().__init__(inner.url)
        self.objects = inner.objects
        self.at = at
        self.done = 0

    def _step(self, name: str) -> None:
        if name.startswith("keys/"):
            if self.done == self.at:
                raise Crash(f"killed before {name}")
            self.done += 1

    def write(self, name: str, data: bytes) -> None:
        self._step(name)
        super().write(name, data)

    def delete(self, name: str) -> None:
        self._step(name)
        super().delete(name)


def _upgrade(backend: MemoryBackend) -> None:
    owner = Repository.open(backend, identity=LEGACY_READER, fingerprint=LEGACY["fingerprint"])
    upgrade_slots(owner, writers=[LEGACY_WRITER.recipient])


@pytest.mark.parametrize("at", range(3))  # in-place rewrite, new writer slot, old one deleted
def test_upgrade_killed_at_any_step_leaves_every_holder_able_to_open_and_finishes_on_rerun(
    legacy: MemoryBackend, at: int
) -> None:
    pin = LEGACY["fingerprint"]
    with pytest.raises(Crash):
        _upgrade(CrashingBackend(legacy, at))
    holders = (
        {"identity": LEGACY_READER},
        {"identity": LEGACY_WRITER},
        {"passphrase": "legacy pw"},
    )
    for opener in holders:
        assert Repository.open(legacy, fingerprint=pin, **opener).fingerprint == pin  # type: ignore[arg-type]
    owner = Repository.open(legacy, identity=LEGACY_READER, fingerprint=pin)
    assert owner.review_slots().readers()  # never zero genuine readers
    _upgrade(legacy)
    _upgrade(legacy)  # and a rerun of a finished upgrade changes nothing
    review = Repository.open(legacy, identity=LEGACY_READER, fingerprint=pin).review_slots()
    assert sorted((s.access, s.recipient or "") for _, s in review.genuine) == [
        ("read", LEGACY_READER.recipient),
        ("write", LEGACY_WRITER.recipient),
    ]
    assert [s.type for _, s in review.unverified] == ["scrypt"]  # its holder's to upgrade
    for opener in holders:
        assert Repository.open(legacy, fingerprint=pin, **opener).fingerprint == pin  # type: ignore[arg-type]


def test_downgraded_slots_of_a_new_repository_behave_as_old_ones(
    backend: MemoryBackend, repo: Repository, reader: Identity, writer: Identity
) -> None:
    """The attacker strips every MAC (version 1 again): nothing opens to other keys, and the
    slots the caller cannot open stop counting rather than count unchecked."""
    downgrade_slots(backend)
    owner = Repository.open(backend, identity=reader, fingerprint=repo.fingerprint)
    review = owner.review_slots()
    assert [s.recipient for _, s in review.genuine] == [reader.recipient]
    assert [s.recipient for _, s in review.unverified] == [writer.recipient]


def test_a_slot_swapped_after_opening_is_not_taken_as_the_one_opened(
    legacy: MemoryBackend,
) -> None:
    """The provider serves the genuine old slot to the open and its own to the next read: the
    upgrade must not give the attacker's slot a MAC of the real keys (a reader that counts)."""
    pin = LEGACY["fingerprint"]
    owner = Repository.open(legacy, identity=LEGACY_READER, fingerprint=pin)
    (mine,) = owner.opened_slots
    attacker = BucketAttacker(legacy)
    swapped = replace(recipient_slot(attacker.key, LEGACY_READER.recipient, "read"), mac=None)
    legacy.objects[mine] = swapped.encode()
    review = owner.review_slots()
    assert mine not in [n for n, _ in review.genuine] and not review.readers()
    assert upgrade_slots(owner).upgraded == []
    assert KeySlot.decode(legacy.objects[mine]).mac is None


def test_vouching_for_a_writer_removes_only_its_old_write_slots(legacy: MemoryBackend) -> None:
    """An old read slot naming the export host, which the reader cannot open, is not judged by
    vouching for the host as a writer: it stays, unverified. The host itself opens it and sees
    other keys: planted, to it."""
    pin = LEGACY["fingerprint"]
    planted = BucketAttacker(legacy).plant_read_slot(LEGACY_WRITER.recipient, legacy=True)
    owner = Repository.open(legacy, identity=LEGACY_READER, fingerprint=pin)
    report = upgrade_slots(owner, writers=[LEGACY_WRITER.recipient])
    assert len(report.added) == 1 and planted not in report.removed
    assert planted in {x["name"] for x in report.left} and planted in legacy.objects
    host = Repository.open(legacy, identity=LEGACY_WRITER, fingerprint=pin)
    assert planted in host.review_slots().planted


def test_a_genuine_old_slot_under_another_name_is_planted(
    legacy: MemoryBackend, caplog: pytest.LogCaptureFixture
) -> None:
    pin = LEGACY["fingerprint"]
    (real,) = [n for n, s in read_slots(legacy) if s.recipient == LEGACY_READER.recipient]
    BucketAttacker(legacy).plant_object("keys/copy", legacy.objects[real])
    del legacy.objects[real]
    owner = Repository.open(legacy, identity=LEGACY_READER, fingerprint=pin)  # its keys are real
    with caplog.at_level(logging.WARNING):
        review = owner.review_slots()
    assert review.planted == ["keys/copy"] and not review.readers() and "keys/copy" in caplog.text
    assert upgrade_slots(owner).upgraded == []
