"""Planted key slots: a party with bucket write access (with or without a writer key) must never
make a client seal to, read with, or restore from keys of its own (``docs/format.md`` §
Repository fingerprint)."""

from __future__ import annotations

import json
import logging
import resource
from pathlib import Path

import pytest

from imagekit.errors import InputError, IntegrityError, UsageError, WrongKey
from imagekit.store.crypto import MetaCipher
from imagekit.store.format import CONFIG, IMAGES_PREFIX, KIND_MANIFEST
from imagekit.store.identity import Identity, decode_identity, encode_identity, env_or_prompt
from imagekit.store.ingest import ingest
from imagekit.store.keys import passphrase_slot
from imagekit.store.manifest import encode_manifest
from imagekit.store.repository import Repository
from imagekit.store.sources import RawFileSource
from imagekit.store.trust import KnownStores
from tests.store.attackers import BucketAttacker, WriterAttacker
from tests.store.helpers import MemoryBackend, make_disk


def _export(repo: Repository, tmp_path: Path, name: str = "web") -> None:
    disk = make_disk(tmp_path / f"{name}.raw", 4 << 20, data_chunks=4)
    ingest(repo, [RawFileSource(disk)], name=name, source="test")


def _sealed_data_keys(repo: Repository) -> list[bytes]:
    return [r.sealed_data_key for r in repo.load_index().packs.values()]


def test_init_declares_the_fingerprint_of_its_keys(repo: Repository) -> None:
    assert repo.config.fingerprint == repo.fingerprint
    assert repo.fingerprint.startswith("ikf1") and len(repo.fingerprint) == 4 + 32


def test_planted_read_slot_never_becomes_the_export_hosts_key(
    backend: MemoryBackend, repo: Repository, writer: Identity, tmp_path: Path
) -> None:
    attacker = BucketAttacker(backend)
    assert writer.recipient in attacker.recipients()
    planted = attacker.plant_read_slot(writer.recipient)
    host = Repository.open(backend, identity=writer, fingerprint=repo.fingerprint)
    # Without the fingerprint the host preferred the planted read slot and sealed data keys to
    # the attacker's read key.
    assert host.key.access == "write"
    assert host.key.read_public == repo.key.read_public
    _export(host, tmp_path)
    sealed = _sealed_data_keys(repo)
    assert sealed and not any(attacker.can_open(s, repo.config.id) for s in sealed)
    assert planted  # named in the warning (checked below)


def test_a_slot_that_does_not_match_is_ignored_with_a_warning_naming_it(
    backend: MemoryBackend,
    repo: Repository,
    writer: Identity,
    caplog: pytest.LogCaptureFixture,
) -> None:
    planted = BucketAttacker(backend).plant_read_slot(writer.recipient)
    with caplog.at_level(logging.WARNING):
        Repository.open(backend, identity=writer, fingerprint=repo.fingerprint)
    assert planted in caplog.text and "ignored" in caplog.text


def test_trust_on_first_use_records_and_then_enforces(
    backend: MemoryBackend,
    repo: Repository,
    writer: Identity,
    state_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    known = KnownStores(state_dir)
    with caplog.at_level(logging.WARNING):
        Repository.open(backend, identity=writer, known=known)
    assert "first use" in caplog.text and repo.fingerprint in caplog.text
    assert known.get(backend.url) == repo.fingerprint
    caplog.clear()
    # The attacker replaces the config's claim too: the recorded value is what counts.
    attacker = BucketAttacker(backend)
    attacker.plant_read_slot(writer.recipient)
    doc = json.loads(backend.objects[CONFIG])
    doc["fingerprint"] = attacker.key.fingerprint
    backend.objects[CONFIG] = json.dumps(doc).encode()
    with pytest.raises(IntegrityError) as err:
        Repository.open(backend, identity=writer, known=known)
    assert attacker.key.fingerprint in str(err.value) and repo.fingerprint in str(err.value)
    assert "first use" not in caplog.text  # said once only


def test_a_config_claiming_other_keys_is_refused_naming_both_fingerprints(
    backend: MemoryBackend, repo: Repository, reader: Identity
) -> None:
    attacker = BucketAttacker(backend)
    doc = json.loads(backend.objects[CONFIG])
    doc["fingerprint"] = attacker.key.fingerprint
    backend.objects[CONFIG] = json.dumps(doc).encode()
    with pytest.raises(IntegrityError, match="declares fingerprint") as err:
        Repository.open(backend, identity=reader, fingerprint=repo.fingerprint)
    assert attacker.key.fingerprint in str(err.value) and repo.fingerprint in str(err.value)


def test_only_planted_slots_opening_is_wrong_key(
    backend: MemoryBackend, repo: Repository, writer: Identity
) -> None:
    attacker = BucketAttacker(backend)
    for name in [n for n in backend.names("keys/")]:
        del backend.objects[name]  # the attacker also deleted the real slots
    attacker.plant_read_slot(writer.recipient)
    with pytest.raises(WrongKey, match="no key slot opens"):
        Repository.open(backend, identity=writer, fingerprint=repo.fingerprint)


def test_a_legacy_repository_without_a_pin_refuses_disagreeing_slots(
    backend: MemoryBackend, repo: Repository, writer: Identity
) -> None:
    doc = json.loads(backend.objects[CONFIG])
    del doc["fingerprint"]  # written before fingerprints existed
    backend.objects[CONFIG] = json.dumps(doc).encode()
    assert Repository.open(backend, identity=writer).fingerprint == repo.fingerprint
    planted = BucketAttacker(backend).plant_read_slot(writer.recipient)
    with pytest.raises(IntegrityError, match="different keys") as err:
        Repository.open(backend, identity=writer)
    assert planted in str(err.value)


def test_writer_key_holder_cannot_redirect_data_keys(
    backend: MemoryBackend, repo: Repository, writer: Identity, tmp_path: Path
) -> None:
    """A compromised export host knows W; a slot with the real W and its own read key pair
    would let it read what *other* export hosts write."""
    other_host = Identity.generate()
    repo.add_recipient(other_host.recipient, "write")
    stolen = Repository.open(backend, identity=writer, fingerprint=repo.fingerprint).key
    attacker = WriterAttacker(backend, stolen)
    attacker.plant_read_slot(other_host.recipient)
    from imagekit.store.keys import recipient_slot

    attacker.plant(recipient_slot(attacker.key.writer(), other_host.recipient, "write"))
    host = Repository.open(backend, identity=other_host, fingerprint=repo.fingerprint)
    assert host.key.read_public == repo.key.read_public
    _export(host, tmp_path)
    assert not any(attacker.can_open(s, repo.config.id) for s in _sealed_data_keys(repo))


def test_reader_never_lists_images_written_under_planted_keys(
    backend: MemoryBackend, repo: Repository, reader: Identity, tmp_path: Path
) -> None:
    _export(repo, tmp_path)
    attacker = BucketAttacker(backend)
    attacker.plant_read_slot(reader.recipient)
    # The attacker's own image, encrypted under the metadata key of its planted keys.
    forged = MetaCipher(attacker.key.keys()[1]).encrypt(
        KIND_MANIFEST, encode_manifest(repo.list_images()[0].manifest)
    )
    attacker.plant_content_addressed(IMAGES_PREFIX, forged)
    opened = Repository.open(backend, identity=reader, fingerprint=repo.fingerprint)
    assert opened.key.read_public == repo.key.read_public
    assert len(opened.list_images()) == 1  # the forged manifest does not authenticate: skipped


def test_junk_under_keys_is_ignored(
    backend: MemoryBackend, repo: Repository, writer: Identity, caplog: pytest.LogCaptureFixture
) -> None:
    attacker = BucketAttacker(backend)
    real = sorted(backend.names("keys/"))[0]
    attacker.plant_object("keys/not-json", b"\xff\x00")
    attacker.plant_object("keys/wrong-shape", b'{"version": 1}')
    other = dict(json.loads(backend.objects[real]))
    other["repository"] = "00" * 16
    attacker.plant_object("keys/other-repo", json.dumps(other).encode())
    with caplog.at_level(logging.WARNING):
        # A writer looks at every slot (it stops early only at a read slot).
        Repository.open(backend, identity=writer, fingerprint=repo.fingerprint)
    for name in ("keys/not-json", "keys/wrong-shape", "keys/other-repo"):
        assert name in caplog.text


def test_planted_slot_cannot_exhaust_memory_with_scrypt(
    backend: MemoryBackend, caplog: pytest.LogCaptureFixture
) -> None:
    repo = Repository.init(backend, passphrase="pw")
    attacker = BucketAttacker(backend)
    slot = passphrase_slot(attacker.key, "pw", "read", n=2, r=1, p=1)
    doc = json.loads(slot.encode())
    doc["scrypt"]["n"] = 1 << 40  # 128 TiB of scrypt memory if obeyed
    attacker.plant_object("keys/bomb", json.dumps(doc).encode())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with caplog.at_level(logging.WARNING):
        opened = Repository.open(backend, passphrase="pw", fingerprint=repo.fingerprint)
    assert opened.key.read_public == repo.key.read_public
    assert "keys/bomb" in caplog.text
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 256 << 10  # KiB


@pytest.mark.parametrize(
    ("n", "r", "p"), [(1 << 21, 8, 1), (1 << 15, 8, 64), (1 << 15, 1024, 1), (3, 8, 1)]
)
def test_identity_files_with_unbounded_kdf_are_refused(n: int, r: int, p: int) -> None:
    data = encode_identity(Identity.generate(), "pw", n=2, r=1, p=1)
    lines = data.decode().splitlines()
    doc = json.loads(lines[-1])
    doc.update(n=n, r=r, p=p)
    forged = "\n".join([*lines[:-1], json.dumps(doc)]).encode()
    with pytest.raises(InputError, match="scrypt"):
        decode_identity(forged, "pw")


def test_an_empty_passphrase_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEKIT_PASSPHRASE", "")
    with pytest.raises(UsageError, match="empty"):
        env_or_prompt("passphrase", False)


def test_a_malformed_pin_is_a_usage_error(
    backend: MemoryBackend, repo: Repository, reader: Identity
) -> None:
    with pytest.raises(UsageError, match="fingerprint"):
        Repository.open(backend, identity=reader, fingerprint="ikf1nope")


def test_a_costly_planted_passphrase_slot_is_never_derived_before_the_real_one(
    backend: MemoryBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone who knew the passphrase (a former operator) plants a slot of other keys, at the
    highest scrypt cost the bounds allow: it is ignored, and not even derived."""
    repo = Repository.init(backend, passphrase="pw")
    attacker = BucketAttacker(backend)
    slot = passphrase_slot(attacker.key, "pw", "read", n=2, r=1, p=1)
    doc = json.loads(slot.encode())
    doc["scrypt"].update(n=1 << 20, r=8, p=2)  # within the bounds: 1 GiB and 2^24 of work
    for i in range(3):
        attacker.plant_object(f"keys/bait{i}", json.dumps(doc).encode())
    from imagekit.store import keys

    derived: list[int] = []
    real = keys.scrypt_key

    def counting(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
        derived.append(n)
        return real(passphrase, salt, n, r, p)

    monkeypatch.setattr(keys, "scrypt_key", counting)
    opened = Repository.open(backend, passphrase="pw", fingerprint=repo.fingerprint)
    assert opened.key.read_public == repo.key.read_public
    assert derived == [1 << 15]  # the real slot only
