"""A repository on a backend: init/open, keys, typed reads and writes of every object kind.

Everything above (ingest, restore, verify, prune, copy) goes through ``Repository``; it is the one
place where authentication failures become ``WrongKey`` or ``IntegrityError`` naming the object.
"""

from __future__ import annotations

import json
import logging
import os
from collections import deque
from collections.abc import Collection, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from imagekit.errors import IntegrityError, ObjectNotFound, StoreError, UsageError, WrongKey
from imagekit.store.backends.base import Backend, ObjectInfo
from imagekit.store.crypto import BlobCodec, InvalidTag, MetaCipher, seal, unseal
from imagekit.store.format import (
    CONFIG,
    DATA_PREFIX,
    IMAGES_PREFIX,
    INDEX_PREFIX,
    KEYS_PREFIX,
    KIND_INDEX,
    KIND_MANIFEST,
    REPOSITORY_FORMAT,
    REPOSITORY_ID_SIZE,
    REPOSITORY_VERSION,
    SLOT_ID_SIZE,
)
from imagekit.store.identity import Identity
from imagekit.store.index import Index, Location, PackRecord, decode_index, encode_index
from imagekit.store.jsondoc import integer, load_object, member, text
from imagekit.store.keys import (
    Access,
    KeySlot,
    MasterKey,
    normalize_fingerprint,
    passphrase_slot,
    recipient_slot,
    sign_slot,
)
from imagekit.store.locks import RepositoryLock
from imagekit.store.manifest import ImageManifest, StoredImage, decode_manifest, encode_manifest
from imagekit.store.memory import PageBuffers
from imagekit.store.pack import header_length, join_into, object_id, pack_name, read_pack_header
from imagekit.store.slots import (
    SlotReview,
    describe_slots,
    expected_fingerprint,
    open_slots,
    read_slots,
    review_slots,
)
from imagekit.store.trust import KnownStores

log = logging.getLogger(__name__)

#: Parallel small reads (index objects, manifests, pack headers): latency-bound, not CPU-bound.
METADATA_READERS = 8
#: What an index entry takes stored: 44 bytes, ~34 after zstd (measured on index objects of
#: random chunk ids and realistic offsets); sizes the in-memory index before it is read.
STORED_BYTES_PER_ENTRY = 34
#: Most pack headers fit in this tail; longer ones cost a second read.
PACK_TAIL_GUESS = 64 << 10


@dataclass(frozen=True)
class Config:
    id: bytes
    version: int
    #: The fingerprint of the repository's keys as ``init`` wrote it. Plaintext and writable by
    #: the storage provider: it is a claim, checked against the pinned value and the keys.
    #: None in repositories written before fingerprints existed (they open all the same).
    fingerprint: str | None = None

    def encode(self) -> bytes:
        doc: dict[str, Any] = {
            "format": REPOSITORY_FORMAT,
            "version": self.version,
            "id": self.id.hex(),
        }
        if self.fingerprint is not None:
            doc["fingerprint"] = self.fingerprint
        return (json.dumps(doc, sort_keys=True) + "\n").encode("utf-8")

    @staticmethod
    def decode(data: bytes, where: str) -> Config:
        try:
            doc = load_object(data, "config")
            if doc.get("format") != REPOSITORY_FORMAT:
                raise ValueError("not an imagekit repository config")
            rid = bytes.fromhex(text(member(doc, "id", "config"), "config id"))
            if len(rid) != REPOSITORY_ID_SIZE:
                raise ValueError("repository id has the wrong length")
            version = integer(member(doc, "version", "config"), "config version")
            declared = doc.get("fingerprint")
            fingerprint = None if declared is None else normalize_fingerprint(str(declared))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise IntegrityError(f"{where}/config: malformed ({exc})") from exc
        if version != REPOSITORY_VERSION:
            raise StoreError(
                f"{where}: repository format version {version} is not supported "
                f"(this imagekit reads version {REPOSITORY_VERSION})",
                hint="upgrade imagekit",
            )
        return Config(rid, version, fingerprint)


class Repository:
    """An opened repository. Thread-safe for reads and writes of distinct objects."""

    def __init__(
        self,
        backend: Backend,
        config: Config,
        key: MasterKey,
        *,
        opened: Mapping[str, KeySlot] | None = None,
        foreign: Collection[str] = (),
    ):
        self.backend = backend
        self.config = config
        self.key = key
        #: Slots this client opened and found matching the fingerprint (as it read them), and
        #: those it opened to other keys: what ``review_slots`` knows beyond the slot MACs.
        self.opened_slots: Mapping[str, KeySlot] = dict(opened or {})
        self.foreign_slots = frozenset(foreign)
        chunk_id_key, metadata_key = key.keys()
        self.chunk_id_key = chunk_id_key
        self.meta = MetaCipher(metadata_key)
        self._codecs: dict[bytes, BlobCodec] = {}
        self._buffers = PageBuffers()

    # -- creation and opening -------------------------------------------------------------

    @classmethod
    def init(
        cls,
        backend: Backend,
        *,
        recipients: Sequence[str] = (),
        passphrase: str | None = None,
        writers: Sequence[str] = (),
    ) -> Repository:
        """Create a repository; readers are ``recipients`` and/or the passphrase."""
        if not recipients and passphrase is None:
            raise UsageError("a repository needs at least one --recipient or a --passphrase")
        if backend.exists(CONFIG):
            raise UsageError(f"{backend.url}: already holds a repository")
        rid = os.urandom(REPOSITORY_ID_SIZE)
        key = MasterKey.generate(rid)
        config = Config(rid, REPOSITORY_VERSION, key.fingerprint)
        slots = [_slot_for(key, r, "read") for r in recipients]
        slots += [_slot_for(key, r, "write") for r in writers]
        if passphrase is not None:
            slots.append(passphrase_slot(key, passphrase, "read"))
        # Key slots before config: a config without a slot would be a repository nobody opens.
        for slot in slots:
            _write_slot(backend, key, slot)
        backend.write(CONFIG, config.encode())
        return cls(backend, config, key)

    @classmethod
    def open(
        cls,
        backend: Backend,
        *,
        identity: Identity | None = None,
        passphrase: str | None = None,
        fingerprint: str | None = None,
        known: KnownStores | None = None,
    ) -> Repository:
        """Open with an identity or passphrase, accepting only keys that match the fingerprint.

        The fingerprint expected is ``fingerprint`` (pinned by a plan or the command line), else
        the one ``known`` recorded for this store on first use, else the one ``config`` claims.
        A slot whose keys do not match it is ignored with a warning (anyone who can write the
        bucket can plant a slot sealed to a known recipient); with nothing to match, every slot
        that opens must agree. ``known`` records the fingerprint on first use.
        """
        config = read_config(backend)
        if identity is None and passphrase is None:
            raise UsageError(
                f"{backend.url}: opening needs an identity (--identity) or a passphrase"
            )
        expected, source = expected_fingerprint(backend.url, config.fingerprint, fingerprint, known)
        opened, foreign = open_slots(
            backend, config.id.hex(), identity, passphrase, expected, source
        )
        if not opened:
            what = "identity" if identity is not None else "passphrase"
            hint = None
            if foreign:
                hint = (
                    f"{len(foreign)} slot(s) opened but were not written with this "
                    f"repository's keys: {foreign}"
                )
            raise WrongKey(f"{backend.url}: no key slot opens with this {what}", hint=hint)
        prints = {key.fingerprint for _, _, key in opened}
        if len(prints) > 1:
            names = ", ".join(f"{n} ({k.fingerprint})" for n, _, k in opened)
            raise IntegrityError(
                f"{backend.url}: key slots open to different keys: {names}",
                hint="some were planted; pin the fingerprint `imagekit store init` printed "
                "(plan store `fingerprint:`, or --fingerprint)",
            )
        best = max((key for _, _, key in opened), key=lambda k: k.access == "read")
        if fingerprint is None and known is not None and source != "recorded":
            known.record(backend.url, best.fingerprint)
        slots = {name: slot for name, slot, _ in opened}
        return cls(backend, config, best, opened=slots, foreign=foreign)

    @property
    def fingerprint(self) -> str:
        """The fingerprint of the keys this repository was opened with."""
        return self.key.fingerprint

    # -- objects ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.backend.url

    def where(self, name: str) -> str:
        return f"{self.backend.url}/{name}"

    def read_meta(self, kind: bytes, name: str) -> bytes:
        data = self.backend.read(name)
        if object_id(data) != name.rsplit("/", 1)[-1]:
            raise IntegrityError(f"{self.where(name)}: content does not match its name")
        try:
            return self.meta.decrypt(kind, data)
        except InvalidTag as exc:
            raise IntegrityError(f"{self.where(name)}: failed authentication") from exc

    def write_meta(self, kind: bytes, prefix: str, payload: bytes) -> tuple[str, int]:
        """Encrypt and write a content-addressed object; return (its id, bytes written)."""
        data = self.meta.encrypt(kind, payload)
        oid = object_id(data)
        self.backend.write(f"{prefix}{oid}", data)
        return oid, len(data)

    def write_pack(self, parts: Sequence[bytes | bytearray]) -> tuple[str, int]:
        """Join ``parts`` into one pack object and write it; its id and size.

        A backend that writes straight from page-aligned memory (a directory, with ``O_DIRECT``)
        gets the pack joined into a reused aligned buffer; every other one gets ``bytes``.
        """
        size = sum(len(p) for p in parts)
        if not self.backend.aligned_writes:
            data = b"".join(parts)
            pid = object_id(data)
            self.backend.write(pack_name(pid), data)
            return pid, size
        with self._buffers.take(size) as view:
            join_into(parts, view)
            pid = object_id(view)
            self.backend.write_from(pack_name(pid), view)
        return pid, size

    def pack_objects(self) -> dict[str, ObjectInfo]:
        """Pack id → listing of every object under ``data/`` named as a pack; anything else
        there is ignored with a warning (and so never indexed, restored from, or pruned)."""
        packs = {}
        for info in self.backend.list(DATA_PREFIX):
            oid = info.name.rsplit("/", 1)[-1]
            if _is_object_id(oid) and info.name == pack_name(oid):
                packs[oid] = info
            else:
                log.warning("%s: not a pack name, ignored", self.where(info.name))
        return packs

    def list_packs(self) -> dict[str, int]:
        """Pack id → size (see ``pack_objects``)."""
        return {p: info.size for p, info in self.pack_objects().items()}

    def pack_ids(self) -> set[str]:
        return set(self.pack_objects())

    def _sized(self, prefix: str) -> list[tuple[str, int]]:
        """(id, size) of every object under ``prefix`` named as the format names objects;
        anything else there is ignored with a warning."""
        ids = []
        for info in self.backend.list(prefix):
            oid = info.name[len(prefix) :]
            if _is_object_id(oid):
                ids.append((oid, info.size))
            else:
                log.warning("%s: not an object name of the format, ignored", self.where(info.name))
        return ids

    def _ids(self, prefix: str) -> list[str]:
        return [oid for oid, _ in self._sized(prefix)]

    # -- index -----------------------------------------------------------------------------

    def index_names(self) -> list[str]:
        return [f"{INDEX_PREFIX}{oid}" for oid in self._ids(INDEX_PREFIX)]

    def read_index(self, name: str) -> list[PackRecord]:
        try:
            return decode_index(self.read_meta(KIND_INDEX, name))
        except ValueError as exc:
            raise IntegrityError(f"{self.where(name)}: {exc}") from exc

    def load_index(self, names: Sequence[str] | None = None) -> Index:
        """The union of the index objects ``names`` (default: all), each object's payload
        decoded straight into the table: no Python object per entry, even transiently."""
        if names is None:
            listed = {f"{INDEX_PREFIX}{oid}": size for oid, size in self._sized(INDEX_PREFIX)}
            names = list(listed)
        else:
            listed = {}
        # Sized from the stored bytes, so the table is built once instead of grown and rebuilt.
        index = Index(expected=sum(listed.values()) // STORED_BYTES_PER_ENTRY)
        with ThreadPoolExecutor(METADATA_READERS) as pool:
            # A window of reads ahead, not all of them: a decoded object holds 44 bytes a
            # chunk until it is in the table, and holding every one at once doubled the peak.
            pending: deque[tuple[str, Future[bytes | None]]] = deque()
            for name in [*names, None]:
                if name is not None:
                    pending.append((name, pool.submit(self._index_payload, name)))
                while pending and (name is None or len(pending) > METADATA_READERS):
                    done, future = pending.popleft()
                    payload = future.result()
                    if payload is None:
                        continue
                    try:
                        index.add_payload(payload)
                    except ValueError as exc:
                        log.warning("%s: %s; ignored", self.where(done), exc)
        return index

    def _index_payload(self, name: str) -> bytes | None:
        try:
            return self.read_meta(KIND_INDEX, name)
        except IntegrityError as exc:
            # Anyone who can write the bucket can add an object named by its own hash; one that
            # does not authenticate was not written with this repository's keys. ``verify``
            # reports it; here it only costs the chunks it claims, which are then in no index.
            log.warning("%s; ignored", exc)
            return None

    def write_index(self, records: Sequence[PackRecord]) -> tuple[str, int]:
        return self.write_meta(KIND_INDEX, INDEX_PREFIX, encode_index(records))

    def read_pack_record(self, pack_id: str) -> PackRecord:
        """Rebuild a pack's index record from its header (crash recovery, verify)."""
        name = pack_name(pack_id)
        size = self.backend.stat(name).size
        tail = self.backend.read(name, max(0, size - PACK_TAIL_GUESS))
        try:
            need = header_length(tail) + 4
            if need > len(tail):
                if need > size:
                    raise ValueError("header length exceeds the pack")
                tail = self.backend.read(name, size - need)
            header = read_pack_header(self.meta, tail)
            for e in header.entries:
                if e.offset + e.length > size - need:
                    raise ValueError("an entry points outside the pack")
        except InvalidTag as exc:
            raise IntegrityError(f"{self.where(name)}: pack header failed authentication") from exc
        except ValueError as exc:
            raise IntegrityError(f"{self.where(name)}: {exc}") from exc
        return PackRecord(pack_id, header.sealed_data_key, header.entries)

    def index_unindexed_packs(self, index: Index) -> list[PackRecord]:
        """Index packs a crashed writer uploaded but never indexed; they are then reused."""
        missing = sorted(self.pack_ids() - index.pack_ids)
        if not missing:
            return []
        with ThreadPoolExecutor(METADATA_READERS) as pool:
            found = list(pool.map(self._pack_record_or_skip, missing))
        records = [r for r in found if r is not None]
        if records:
            self.write_index(records)
        for r in records:
            index.add(r)
        return records

    def _pack_record_or_skip(self, pack_id: str) -> PackRecord | None:
        try:
            return self.read_pack_record(pack_id)
        except IntegrityError as exc:
            # An object named like a pack whose header does not authenticate was not written
            # with this repository's keys (anyone who can write the bucket can name one so):
            # never indexed, so never read; prune removes it once it is old enough.
            log.warning("%s; not indexed", exc)
            return None

    # -- data ------------------------------------------------------------------------------

    def new_sealed_data_key(self) -> tuple[bytes, bytes]:
        """A fresh session data key and its seal to the read key."""
        data_key = os.urandom(32)
        return data_key, seal(self.key.read_public, data_key, self.config.id)

    def codec_for(self, sealed_data_key: bytes, where: str) -> BlobCodec:
        """The blob codec of a pack's data key; only a reader can open it."""
        codec = self._codecs.get(sealed_data_key)
        if codec is not None:
            return codec
        private: X25519PrivateKey | None = self.key.read_private
        if private is None:
            raise WrongKey(
                f"{self.url}: this key is write-only; it cannot decrypt data ({where})",
                hint="use an identity or passphrase with read access",
            )
        try:
            data_key = unseal(private, sealed_data_key, self.config.id)
        except InvalidTag as exc:
            raise IntegrityError(f"{where}: data key failed authentication") from exc
        codec = BlobCodec(self.chunk_id_key, data_key)
        self._codecs[sealed_data_key] = codec
        return codec

    def decode_blob(self, loc: Location, chunk_id: bytes, blob: bytes | memoryview) -> bytes:
        where = f"{self.where(pack_name(loc.pack_id))} chunk {chunk_id.hex()[:16]}"
        codec = self.codec_for(loc.sealed_data_key, where)
        try:
            data = codec.decode(chunk_id, blob)
        except InvalidTag as exc:
            raise IntegrityError(f"{where}: failed authentication") from exc
        except ValueError as exc:  # a frame claiming more than a chunk (a writer's bomb)
            raise IntegrityError(f"{where}: {exc}") from exc
        if len(data) != loc.raw_length:
            raise IntegrityError(f"{where}: has {len(data)} bytes, index says {loc.raw_length}")
        return data

    def read_chunk(self, loc: Location, chunk_id: bytes) -> bytes:
        blob = self.backend.read(pack_name(loc.pack_id), loc.offset, loc.length)
        if len(blob) != loc.length:
            raise IntegrityError(f"{self.where(pack_name(loc.pack_id))}: truncated blob")
        return self.decode_blob(loc, chunk_id, blob)

    # -- images ----------------------------------------------------------------------------

    def write_image(self, manifest: ImageManifest) -> tuple[StoredImage, int]:
        oid, size = self.write_meta(KIND_MANIFEST, IMAGES_PREFIX, encode_manifest(manifest))
        return StoredImage(oid, manifest), size

    def load_image(self, image_id: str) -> StoredImage:
        name = f"{IMAGES_PREFIX}{image_id}"
        try:
            return StoredImage(image_id, decode_manifest(self.read_meta(KIND_MANIFEST, name)))
        except ValueError as exc:
            raise IntegrityError(f"{self.where(name)}: {exc}") from exc

    def image_ids(self) -> list[str]:
        return self._ids(IMAGES_PREFIX)

    def _load_image_or_skip(self, image_id: str) -> StoredImage | None:
        try:
            return self.load_image(image_id)
        except IntegrityError as exc:
            log.warning("%s; ignored", exc)  # verify reports it; see _index_payload
            return None

    def list_images(self) -> list[StoredImage]:
        """Every image that authenticates, oldest first (the others: a warning each)."""
        with ThreadPoolExecutor(METADATA_READERS) as pool:
            loaded = list(pool.map(self._load_image_or_skip, self.image_ids()))
        images = [i for i in loaded if i is not None]
        return sorted(images, key=lambda i: (i.manifest.created, i.id))

    def resolve(self, ref: str, images: Sequence[StoredImage] | None = None) -> StoredImage:
        """An image by id, unique id prefix, or name (the newest of that name)."""
        images = self.list_images() if images is None else images
        by_id = [i for i in images if i.id.startswith(ref.lower())] if ref else []
        if len(by_id) == 1:
            return by_id[0]
        by_name = [i for i in images if i.manifest.name == ref]
        if by_name:
            return by_name[-1]
        if len(by_id) > 1:
            raise UsageError(f"image id prefix {ref!r} is ambiguous ({len(by_id)} images)")
        raise ObjectNotFound(f"{self.url}: no image with id or name {ref!r}")

    def delete_image(self, image_id: str) -> None:
        self.backend.delete(f"{IMAGES_PREFIX}{image_id}")

    # -- keys and locks ---------------------------------------------------------------------

    def add_slot(self, slot: KeySlot) -> str:
        """Write ``slot`` under a new name, with its MAC (``docs/format.md`` § Slot MAC)."""
        return _write_slot(self.backend, self.key, slot)

    def review_slots(self) -> SlotReview:
        """Every slot, judged genuine, unverified or planted with this repository's keys."""
        return review_slots(
            self.backend,
            self.config.id.hex(),
            self.key,
            self.opened_slots,
            self.foreign_slots,
        )

    def add_recipient(self, recipient: str, access: Access) -> str:
        if access == "read" and self.key.read_private is None:
            raise WrongKey(f"{self.url}: a write-only key cannot grant read access")
        return self.add_slot(_slot_for(self.key, recipient, access))

    def add_passphrase(self, passphrase: str, access: Access) -> str:
        if access == "read" and self.key.read_private is None:
            raise WrongKey(f"{self.url}: a write-only key cannot grant read access")
        return self.add_slot(passphrase_slot(self.key, passphrase, access))

    def remove_recipient(self, recipient: str) -> list[str]:
        """Delete the slots of ``recipient``: the genuine ones and those written before slot
        MACs (removing a slot grants nothing); planted ones are ignored, never counted.

        Refuses to remove the last genuine read slot (nobody could read the data again). A
        write-only key removes only write slots: it can neither grant nor judge read access.
        """
        review = self.review_slots()
        gone = [(n, s) for n, s in review.genuine + review.unverified if s.recipient == recipient]
        if self.key.read_private is None:
            # It cannot judge read slots either: a planted one must not block removing a writer.
            reads = [n for n, s in gone if s.access == "read"]
            gone = [(n, s) for n, s in gone if s.access == "write"]
            if reads and not gone:
                raise WrongKey(f"{self.url}: a write-only key cannot remove read access")
        if not gone:
            raise ObjectNotFound(f"{self.url}: no key slot for recipient {recipient}")
        names = {n for n, _ in gone}
        readers_left = [n for n in review.readers() if n not in names]
        if any(s.access == "read" for _, s in gone) and not readers_left:
            raise UsageError(
                f"{self.url}: refusing to remove the last genuine key slot with read access",
                hint="add another reader first (`imagekit key add`)",
            )
        for name, _ in gone:
            self.backend.delete(name)
        return sorted(names)

    @contextmanager
    def lock(self, *, exclusive: bool = False) -> Iterator[RepositoryLock]:
        with RepositoryLock(self.backend, self.meta, exclusive=exclusive) as held:
            yield held


def _is_object_id(text: str) -> bool:
    """64 lowercase hex digits: the name of a content-addressed object."""
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def _write_slot(backend: Backend, key: MasterKey, slot: KeySlot) -> str:
    sid = os.urandom(SLOT_ID_SIZE)
    name = f"{KEYS_PREFIX}{sid.hex()}"
    backend.write(name, sign_slot(key, sid, slot).encode())
    return name


def _slot_for(key: MasterKey, recipient: str, access: Access) -> KeySlot:
    try:
        return recipient_slot(key, recipient, access)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def read_config(backend: Backend) -> Config:
    try:
        data = backend.read(CONFIG)
    except ObjectNotFound as exc:
        raise ObjectNotFound(
            f"{backend.url}: no repository here (no config object)",
            hint="create one with `imagekit store init`",
        ) from exc
    return Config.decode(data, backend.url)


def declared_fingerprint(backend: Backend) -> str | None:
    """The fingerprint ``config`` claims (needs no key, proves nothing on its own)."""
    return read_config(backend).fingerprint


__all__ = [
    "Config",
    "Repository",
    "declared_fingerprint",
    "describe_slots",
    "read_config",
    "read_slots",
]
