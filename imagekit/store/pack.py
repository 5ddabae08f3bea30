"""Packs and index entries (``docs/format.md`` § Packs, § Index). Pure: bytes in, bytes out."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import blake3

from imagekit.store.crypto import InvalidTag, MetaCipher
from imagekit.store.format import (
    CHUNK_SIZE,
    ENTRY_SIZE,
    ID_SIZE,
    KIND_PACK_HEADER,
    NONCE_SIZE,
    SEALED_DATA_KEY_SIZE,
    TAG_SIZE,
)

_ENTRY = struct.Struct("<32sIII")
#: An index or pack header entry: chunk id, offset, length, raw length.
ENTRY_STRUCT = _ENTRY
#: The longest a blob can be: nonce, marker byte, a whole chunk stored raw, tag.
MAX_BLOB_SIZE = NONCE_SIZE + 1 + CHUNK_SIZE + TAG_SIZE
_U32 = struct.Struct("<I")


@dataclass(frozen=True)
class BlobEntry:
    """Where one chunk's blob sits in its pack."""

    chunk_id: bytes
    offset: int
    length: int
    raw_length: int


@dataclass(frozen=True)
class PackHeader:
    sealed_data_key: bytes
    entries: tuple[BlobEntry, ...]


def object_id(data: bytes | bytearray | memoryview) -> str:
    """Name of a content-addressed object: hex unkeyed BLAKE3 of its stored bytes."""
    return blake3.blake3(data).hexdigest()


def pack_name(pack_id: str) -> str:
    return f"data/{pack_id[:2]}/{pack_id}"


def encode_entries(entries: Sequence[BlobEntry]) -> bytes:
    out = bytearray(_U32.pack(len(entries)))
    for e in entries:
        out += _ENTRY.pack(e.chunk_id, e.offset, e.length, e.raw_length)
    return bytes(out)


def check_entry_list(buf: bytes, pos: int) -> int:
    """The count of the entry list at ``pos`` after checking every entry; ``ValueError`` when
    it is truncated or an entry claims more than a chunk's sizes (forged: a reader would
    otherwise ask for gigabyte range reads)."""
    if pos + 4 > len(buf):
        raise ValueError("truncated entry count")
    (count,) = _U32.unpack_from(buf, pos)
    start = pos + 4
    if start + count * ENTRY_SIZE > len(buf):
        raise ValueError("truncated entry list")
    for cid, _offset, length, raw_length in _ENTRY.iter_unpack(
        memoryview(buf)[start : start + count * ENTRY_SIZE]
    ):
        if not 0 < raw_length <= CHUNK_SIZE or not 0 < length <= MAX_BLOB_SIZE:
            raise ValueError(
                f"entry for chunk {cid.hex()[:16]} claims {length} stored and "
                f"{raw_length} plain bytes, beyond a chunk's"
            )
    return int(count)


def decode_entries(buf: bytes, pos: int) -> tuple[tuple[BlobEntry, ...], int]:
    """Entries starting at ``pos`` (count first); returns them and the position after them."""
    count = check_entry_list(buf, pos)
    pos += 4
    entries = tuple(BlobEntry(*_ENTRY.unpack_from(buf, pos + i * ENTRY_SIZE)) for i in range(count))
    return entries, pos + count * ENTRY_SIZE


def encode_pack_header(header: PackHeader) -> bytes:
    if len(header.sealed_data_key) != SEALED_DATA_KEY_SIZE:
        raise ValueError("sealed data key has the wrong size")
    return header.sealed_data_key + encode_entries(header.entries)


def decode_pack_header(payload: bytes) -> PackHeader:
    sealed = payload[:SEALED_DATA_KEY_SIZE]
    entries, end = decode_entries(payload, SEALED_DATA_KEY_SIZE)
    if len(sealed) != SEALED_DATA_KEY_SIZE or end != len(payload):
        raise ValueError("malformed pack header")
    return PackHeader(sealed, entries)


class PackBuilder:
    """Collects blobs for one pack; ``seal`` hands out the pack's parts, joined once by the caller.

    The blobs are kept as they are and joined once: one copy of each blob into the pack, where
    appending to a growing buffer and then freezing it as ``bytes`` would be two. The caller
    joins them where the write wants them (``Repository.write_pack``: an aligned buffer for a
    directory store).
    """

    def __init__(self, meta: MetaCipher, sealed_data_key: bytes):
        self._meta = meta
        self._sealed = sealed_data_key
        self._blobs: list[bytes | bytearray] = []
        self._size = 0
        self._entries: list[BlobEntry] = []

    @property
    def size(self) -> int:
        return self._size

    @property
    def count(self) -> int:
        return len(self._entries)

    def add(self, chunk_id: bytes, blob: bytes | bytearray, raw_length: int) -> None:
        self._entries.append(BlobEntry(chunk_id, self._size, len(blob), raw_length))
        self._blobs.append(blob)
        self._size += len(blob)

    def seal(self) -> tuple[list[bytes | bytearray], PackHeader]:
        """The pack's parts in order (blobs, sealed header, its length) and its header; the
        builder is then empty again."""
        header = PackHeader(self._sealed, tuple(self._entries))
        sealed_header = self._meta.encrypt(KIND_PACK_HEADER, encode_pack_header(header))
        parts = [*self._blobs, sealed_header, _U32.pack(len(sealed_header))]
        self._blobs = []
        self._size = 0
        self._entries = []
        return parts, header

    def finish(self) -> tuple[bytes, PackHeader]:
        """The complete pack bytes and its header; the builder is then empty again."""
        parts, header = self.seal()
        return b"".join(parts), header


def join_into(parts: Sequence[bytes | bytearray], view: memoryview) -> None:
    """Copy ``parts`` end to end into ``view``, which must be exactly their total length."""
    pos = 0
    for part in parts:
        view[pos : pos + len(part)] = part
        pos += len(part)
    if pos != len(view):
        raise ValueError(f"pack parts hold {pos} bytes, the buffer {len(view)}")


def header_length(tail: bytes) -> int:
    """The header length from a pack's last four bytes."""
    if len(tail) < 4:
        raise ValueError("pack shorter than its length field")
    return int(_U32.unpack_from(tail, len(tail) - 4)[0])


def read_pack_header(meta: MetaCipher, pack_tail: bytes) -> PackHeader:
    """Parse the header from the end of a pack (``pack_tail`` = at least header + 4 bytes).

    ``InvalidTag`` when it does not authenticate, ``ValueError`` when malformed.
    """
    length = header_length(pack_tail)
    if length + 4 > len(pack_tail):
        raise ValueError("pack header longer than the bytes given")
    start = len(pack_tail) - 4 - length
    return decode_pack_header(meta.decrypt(KIND_PACK_HEADER, pack_tail[start:-4]))


def check_entries(entries: Iterable[BlobEntry], data_end: int) -> None:
    """Every blob lies inside the pack's data area."""
    for e in entries:
        if e.offset + e.length > data_end or len(e.chunk_id) != ID_SIZE:
            raise ValueError("pack entry points outside the pack")


__all__ = [
    "ENTRY_STRUCT",
    "BlobEntry",
    "InvalidTag",
    "PackBuilder",
    "PackHeader",
    "check_entries",
    "check_entry_list",
    "decode_entries",
    "decode_pack_header",
    "encode_entries",
    "encode_pack_header",
    "header_length",
    "object_id",
    "pack_name",
    "read_pack_header",
]
