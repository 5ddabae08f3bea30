"""Keys: the write-only property, wrong keys, identity files, key slots."""

from __future__ import annotations

import filecmp
import stat
from pathlib import Path

import pytest

from imagekit.errors import InputError, IntegrityError, UsageError, WrongKey
from imagekit.store.identity import Identity, decode_identity, encode_identity, write_identity
from imagekit.store.ingest import ingest
from imagekit.store.keys import KeySlot, passphrase_slot
from imagekit.store.repository import Repository, read_slots
from imagekit.store.restore import restore
from imagekit.store.sources import RawFileSource
from tests.store.helpers import MemoryBackend, make_disk

# Cheap scrypt for tests that make many slots; the default cost is exercised by the CLI tests.
FAST = {"n": 1 << 10, "r": 8, "p": 1}


def test_write_only_identity_adds_images_but_cannot_read_data(
    backend: MemoryBackend, repo: Repository, reader: Identity, writer: Identity, tmp_path: Path
) -> None:
    disk = make_disk(tmp_path / "disk.raw", 4 << 20)
    export_host = Repository.open(backend, identity=writer)
    assert export_host.key.access == "write"
    assert export_host.key.read_private is None  # it never even holds the read key
    result = ingest(export_host, [RawFileSource(disk)], name="web", source="export host")

    # It may list metadata (for incremental exports) ...
    assert [i.id for i in export_host.list_images()] == [result.image.id]
    # ... but every path to chunk data is closed.
    index = export_host.load_index()
    cid = result.image.manifest.volumes[0].chunks[0][1]
    loc = index.get(cid)
    assert loc is not None
    with pytest.raises(WrongKey, match="write-only"):
        export_host.read_chunk(loc, cid)
    with pytest.raises(WrongKey, match="write-only"):
        restore(export_host, result.image, tmp_path / "stolen.raw")
    assert not (tmp_path / "stolen.raw").exists()
    with pytest.raises(WrongKey):
        export_host.add_recipient(Identity.generate().recipient, "read")
    # The data key it sealed opens with nothing the writer holds: not its own identity either.
    from imagekit.store.crypto import InvalidTag, unseal

    with pytest.raises(InvalidTag):
        unseal(writer.private, loc.sealed_data_key, repo.config.id)

    # A reader restores what the writer stored, byte for byte.
    owner = Repository.open(backend, identity=reader)
    restore(owner, result.image, tmp_path / "out.raw")
    assert filecmp.cmp(disk, tmp_path / "out.raw", shallow=False)


def test_unknown_identity_and_wrong_passphrase_are_wrong_key(backend: MemoryBackend) -> None:
    repo = Repository.init(backend, recipients=[Identity.generate().recipient])
    with pytest.raises(WrongKey, match="identity"):
        Repository.open(backend, identity=Identity.generate())
    repo.add_slot(passphrase_slot(repo.key, "right", "read", **FAST))
    with pytest.raises(WrongKey, match="passphrase"):
        Repository.open(backend, passphrase="wrong")
    assert Repository.open(backend, passphrase="right").key.access == "read"


def test_slot_relabelled_to_read_access_fails(
    backend: MemoryBackend, repo: Repository, writer: Identity
) -> None:
    # A provider flips a write-only slot's header to "read": the AAD binds the access byte.
    for name, slot in read_slots(backend):
        if slot.recipient == writer.recipient:
            forged = KeySlot(slot.type, "read", slot.repository, slot.sealed, slot.recipient)
            backend.objects[name] = forged.encode()
    with pytest.raises(WrongKey):
        Repository.open(backend, identity=writer)


def test_add_and_remove_recipient(
    backend: MemoryBackend, repo: Repository, reader: Identity
) -> None:
    other = Identity.generate()
    repo.add_recipient(other.recipient, "read")
    assert Repository.open(backend, identity=other).key.access == "read"
    repo.remove_recipient(other.recipient)
    with pytest.raises(WrongKey):
        Repository.open(backend, identity=other)
    with pytest.raises(UsageError, match="last"):
        repo.remove_recipient(reader.recipient)


def test_init_refuses_existing_and_keyless(backend: MemoryBackend, repo: Repository) -> None:
    with pytest.raises(UsageError, match="already"):
        Repository.init(backend, passphrase="x")
    with pytest.raises(UsageError):
        Repository.init(MemoryBackend(), recipients=[])
    with pytest.raises(UsageError, match="recipient"):
        Repository.init(MemoryBackend(), recipients=["ikr1nonsense"])


def test_unknown_config_version_is_refused(backend: MemoryBackend, repo: Repository) -> None:
    from imagekit.errors import StoreError

    backend.objects["config"] = backend.objects["config"].replace(b'"version": 1', b'"version": 9')
    with pytest.raises(StoreError, match="version 9"):
        Repository.open(backend, passphrase="x")
    backend.objects["config"] = b"not json"
    with pytest.raises(IntegrityError, match="config"):
        Repository.open(backend, passphrase="x")


def test_identity_file_round_trip(tmp_path: Path) -> None:
    identity = Identity.generate()
    path = tmp_path / "id.key"
    write_identity(path, identity, "secret")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert identity.recipient in text
    assert identity.private.private_bytes_raw().hex() not in text
    assert decode_identity(path.read_bytes(), "secret").recipient == identity.recipient
    with pytest.raises(WrongKey, match="wrong passphrase"):
        decode_identity(path.read_bytes(), "Secret")
    with pytest.raises(UsageError, match="exists"):
        write_identity(path, identity, "secret")
    with pytest.raises(InputError, match="not an imagekit identity"):
        decode_identity(b"hello", "secret")
    assert not list(tmp_path.glob(".*tmp"))  # no temporary left behind


def test_identity_encoding_is_salted() -> None:
    identity = Identity.generate()
    assert encode_identity(identity, "p", **FAST) != encode_identity(identity, "p", **FAST)
