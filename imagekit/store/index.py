"""The index (``docs/format.md`` § Index): chunk id → pack, offset, length. Pure."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from imagekit.store.format import ID_SIZE, SEALED_DATA_KEY_SIZE
from imagekit.store.pack import BlobEntry, decode_entries, encode_entries

_U32 = struct.Struct("<I")


@dataclass(frozen=True)
class PackRecord:
    """One pack as the index knows it."""

    pack_id: str  # hex
    sealed_data_key: bytes
    entries: tuple[BlobEntry, ...]

    @property
    def data_size(self) -> int:
        return sum(e.length for e in self.entries)


@dataclass(frozen=True)
class Location:
    pack_id: str
    sealed_data_key: bytes
    offset: int
    length: int
    raw_length: int


def encode_index(records: Iterable[PackRecord]) -> bytes:
    records = list(records)
    out = bytearray(_U32.pack(len(records)))
    for r in records:
        if len(r.sealed_data_key) != SEALED_DATA_KEY_SIZE:
            raise ValueError("sealed data key has the wrong size")
        out += bytes.fromhex(r.pack_id) + r.sealed_data_key + encode_entries(r.entries)
    return bytes(out)


def decode_index(payload: bytes) -> list[PackRecord]:
    """``ValueError`` when the payload is malformed."""
    if len(payload) < 4:
        raise ValueError("index shorter than its count")
    (count,) = _U32.unpack_from(payload, 0)
    pos = 4
    records = []
    for _ in range(count):
        head = payload[pos : pos + ID_SIZE + SEALED_DATA_KEY_SIZE]
        if len(head) != ID_SIZE + SEALED_DATA_KEY_SIZE:
            raise ValueError("truncated index record")
        pos += len(head)
        entries, pos = decode_entries(payload, pos)
        records.append(PackRecord(head[:ID_SIZE].hex(), head[ID_SIZE:], entries))
    if pos != len(payload):
        raise ValueError("trailing bytes after the index")
    return records


class Index:
    """The union of index objects in memory. Not thread-safe: one owner thread."""

    def __init__(self, records: Iterable[PackRecord] = ()):
        self.packs: dict[str, PackRecord] = {}
        self._chunks: dict[bytes, Location] = {}
        for r in records:
            self.add(r)

    def add(self, record: PackRecord) -> None:
        self.packs[record.pack_id] = record
        for e in record.entries:
            # First pack wins; duplicates (two concurrent writers) are equally good.
            self._chunks.setdefault(
                e.chunk_id,
                Location(record.pack_id, record.sealed_data_key, e.offset, e.length, e.raw_length),
            )

    def __contains__(self, chunk_id: object) -> bool:
        return chunk_id in self._chunks

    def __len__(self) -> int:
        return len(self._chunks)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._chunks)

    def get(self, chunk_id: bytes) -> Location | None:
        return self._chunks.get(chunk_id)


__all__ = ["Index", "Location", "PackRecord", "decode_index", "encode_index"]
