"""The index (``docs/format.md`` § Index): chunk id → pack, offset, length. Pure."""

from __future__ import annotations

import struct
from array import array
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass

from imagekit.store.format import ENTRY_SIZE, ID_SIZE, SEALED_DATA_KEY_SIZE
from imagekit.store.pack import (
    ENTRY_STRUCT as _ENTRY_FIELDS,
)
from imagekit.store.pack import (
    BlobEntry,
    check_entry_list,
    decode_entries,
    encode_entries,
)

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


#: One slot of the table: chunk id, pack number, offset, length, raw length.
_SLOT = struct.Struct("<32sIIII")
SLOT_SIZE = _SLOT.size  # 48
#: The table grows when fuller than this, to ``count / _RESIZE_LOAD`` slots: linear probing
#: stays short (about 3.3 probes for a miss at 0.7, 13 at 0.8) and a chunk costs 49 / load =
#: 61-70 bytes.
_MAX_LOAD = 0.8
_RESIZE_LOAD = 0.7
_MIN_SLOTS = 1024


class Index:
    """The union of index objects in memory: chunk id → location, ~61-70 bytes a chunk.

    One open-addressing table (linear probing) of fixed 48-byte slots in a ``bytearray``, a
    byte per slot saying whether it is used, and one list entry per *pack*: no Python object
    per chunk (a dict of ``Location`` objects cost ~378 bytes a chunk, ~755 MiB per TiB of
    unique data, in every export, restore, prune and verify). Slots are found by Python's own
    ``hash`` of the id (SipHash with a per-process key), so a writer forging ids cannot aim
    them at one stretch of the table (unless ``PYTHONHASHSEED`` fixes the key: leave it
    unset). The first pack to name a chunk wins; duplicates (two concurrent writers) are
    equally good.

    Not thread-safe for writes: one owner thread adds; lookups may run from many threads.
    """

    def __init__(self, records: Iterable[PackRecord] = (), *, expected: int = 0):
        self._pack_ids: list[str] = []
        self._sealed: list[bytes] = []
        self._numbers: dict[str, int] = {}
        self._count = 0
        self._slots = max(_MIN_SLOTS, int(expected / _RESIZE_LOAD) + 1)
        self._table = bytearray(self._slots * SLOT_SIZE)
        self._used = bytearray(self._slots)
        for r in records:
            self.add(r)

    # -- building ------------------------------------------------------------------------------

    def _pack_number(self, pack_id: str, sealed_data_key: bytes) -> int:
        number = self._numbers.get(pack_id)
        if number is None:
            number = len(self._pack_ids)
            self._pack_ids.append(pack_id)
            self._sealed.append(sealed_data_key)
            self._numbers[pack_id] = number
        return number

    def _grow(self, needed: int) -> None:
        if needed <= self._slots * _MAX_LOAD:
            return
        old, old_used = self._table, self._used
        size = self._slots = int(needed / _RESIZE_LOAD) + 1
        table = self._table = bytearray(size * SLOT_SIZE)
        used = self._used = bytearray(size)
        for j, u in enumerate(old_used):
            if u:  # ids are unique in the old table: move each slot to its first free place
                o = j * SLOT_SIZE
                i = hash(bytes(old[o : o + 32])) % size
                while used[i]:
                    i = i + 1 if i + 1 < size else 0
                table[i * SLOT_SIZE : (i + 1) * SLOT_SIZE] = old[o : o + SLOT_SIZE]
                used[i] = 1

    def _insert_entries(self, entries: Iterable[tuple[bytes, int, int, int]], number: int) -> None:
        """Put each (chunk id, offset, length, raw length) of pack ``number`` unless its id is
        in. The one hot loop of opening a repository: kept flat, names local."""
        table, used, size = self._table, self._used, self._slots
        pack_into = _SLOT.pack_into
        added = 0
        for cid, offset, length, raw in entries:
            i = hash(cid) % size
            while used[i]:
                o = i * SLOT_SIZE
                if table[o : o + 32] == cid:
                    break  # first pack wins
                i = i + 1 if i + 1 < size else 0
            else:
                pack_into(table, i * SLOT_SIZE, cid, number, offset, length, raw)
                used[i] = 1
                added += 1
        self._count += added

    def add(self, record: PackRecord) -> None:
        number = self._pack_number(record.pack_id, record.sealed_data_key)
        self._grow(self._count + len(record.entries))
        self._insert_entries(
            ((e.chunk_id, e.offset, e.length, e.raw_length) for e in record.entries), number
        )

    def add_payload(self, payload: bytes) -> None:
        """Add an index object's payload (``decode_index``'s input) without building a Python
        object per entry: what opening a repository costs, in time and in peak memory."""
        if len(payload) < 4:
            raise ValueError("index shorter than its count")
        (count,) = _U32.unpack_from(payload, 0)
        view = memoryview(payload)
        pos = 4
        for _ in range(count):
            head = payload[pos : pos + ID_SIZE + SEALED_DATA_KEY_SIZE]
            if len(head) != ID_SIZE + SEALED_DATA_KEY_SIZE:
                raise ValueError("truncated index record")
            pos += len(head)
            entries = check_entry_list(payload, pos)
            number = self._pack_number(head[:ID_SIZE].hex(), head[ID_SIZE:])
            self._grow(self._count + entries)
            pos += 4
            end = pos + entries * ENTRY_SIZE
            self._insert_entries(_ENTRY_FIELDS.iter_unpack(view[pos:end]), number)
            pos = end
        if pos != len(payload):
            raise ValueError("trailing bytes after the index")

    # -- reading -------------------------------------------------------------------------------

    def _find(self, chunk_id: object) -> int:
        """The slot offset holding ``chunk_id``, or -1."""
        if not isinstance(chunk_id, bytes) or len(chunk_id) != ID_SIZE:
            return -1
        table, used, size = self._table, self._used, self._slots
        i = hash(chunk_id) % size
        while used[i]:
            o = i * SLOT_SIZE
            if table[o : o + 32] == chunk_id:
                return o
            i = i + 1 if i + 1 < size else 0
        return -1

    def __contains__(self, chunk_id: object) -> bool:
        return self._find(chunk_id) >= 0

    def __len__(self) -> int:
        return self._count

    def _slots_used(self) -> Iterator[tuple[bytes, int, int, int, int]]:
        view = memoryview(self._table)
        for i, u in enumerate(self._used):
            if u:
                yield _SLOT.unpack_from(view, i * SLOT_SIZE)

    def __iter__(self) -> Iterator[bytes]:
        for slot in self._slots_used():
            yield slot[0]

    def get(self, chunk_id: bytes) -> Location | None:
        o = self._find(chunk_id)
        if o < 0:
            return None
        _, number, offset, length, raw = _SLOT.unpack_from(self._table, o)
        return Location(self._pack_ids[number], self._sealed[number], offset, length, raw)

    @property
    def pack_ids(self) -> set[str]:
        return set(self._numbers)

    def iter_records(self) -> Iterator[PackRecord]:
        """Every pack with the entries the table resolves to it, one pack at a time (a chunk
        indexed in two packs is listed with the first): memory for one pack's entries, not all."""
        by_pack = self._slots_by_pack()
        view = memoryview(self._table)
        for number, positions in enumerate(by_pack):
            entries = []
            for i in positions:
                cid, _, offset, length, raw = _SLOT.unpack_from(view, i * SLOT_SIZE)
                entries.append(BlobEntry(cid, offset, length, raw))
            entries.sort(key=lambda e: e.offset)
            yield PackRecord(self._pack_ids[number], self._sealed[number], tuple(entries))

    def records(self) -> list[PackRecord]:
        """``iter_records`` as a list."""
        return list(self.iter_records())

    def _slots_by_pack(self) -> list[array[int]]:
        """Per pack number, the table positions of the chunks it resolves (4 bytes each)."""
        by_pack = [array("I") for _ in self._pack_ids]
        table = self._table
        for i, u in enumerate(self._used):
            if u:
                o = i * SLOT_SIZE
                by_pack[_U32.unpack_from(table, o + 32)[0]].append(i)
        return by_pack

    def packs_holding(self, chunk_ids: Collection[bytes]) -> set[str]:
        """The packs the table resolves any of ``chunk_ids`` to (one pass, no objects per
        chunk): what prune keeps."""
        held = set()
        for cid in chunk_ids:
            o = self._find(cid)
            if o >= 0:
                held.add(self._pack_ids[_U32.unpack_from(self._table, o + 32)[0]])
        return held

    def encode(self, pack_ids: Collection[str]) -> bytes:
        """The index payload (``encode_index``'s output) of ``pack_ids``, straight from the
        table: a prune rewrites the index of millions of chunks without a record per chunk."""
        wanted = [self._numbers[p] for p in self._pack_ids if p in pack_ids]
        by_pack = self._slots_by_pack()
        table = self._table
        out = bytearray(_U32.pack(len(wanted)))
        for number in wanted:
            out += bytes.fromhex(self._pack_ids[number]) + self._sealed[number]
            positions = by_pack[number]
            out += _U32.pack(len(positions))
            for i in positions:
                o = i * SLOT_SIZE
                out += table[o : o + 32]  # chunk id
                out += table[o + 36 : o + SLOT_SIZE]  # offset, length, raw length
        return bytes(out)

    @property
    def packs(self) -> dict[str, PackRecord]:
        """Pack id → record, rebuilt from the table on every call (see ``records``)."""
        return {r.pack_id: r for r in self.records()}

    @property
    def memory(self) -> int:
        """Bytes the table holds (the bulk of the index's memory)."""
        return len(self._table) + len(self._used)


__all__ = ["Index", "Location", "PackRecord", "decode_index", "encode_index"]
