"""Image manifests (``docs/format.md`` § Image manifests). Pure: values ↔ bytes."""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from imagekit.store.format import CHUNK_SIZE, ID_SIZE
from imagekit.store.jsondoc import integer, load_object, member, text

MANIFEST_JSON_VERSION = 1
_U32 = struct.Struct("<I")
_MAP_ENTRY = struct.Struct("<I32s")


@dataclass(frozen=True)
class VolumeManifest:
    """One volume: its size and the ids of its non-zero chunks, sorted by chunk index."""

    name: str
    virtual_size: int
    chunks: tuple[tuple[int, bytes], ...] = ()
    stored_size: int = 0

    @property
    def chunk_count(self) -> int:
        return -(-self.virtual_size // CHUNK_SIZE)

    def chunk_map(self) -> dict[int, bytes]:
        return dict(self.chunks)


@dataclass(frozen=True)
class ImageManifest:
    name: str
    created: datetime
    source: str
    volumes: tuple[VolumeManifest, ...]
    parent: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    bytes_read: int = 0
    bytes_uploaded: int = 0

    @property
    def stored_size(self) -> int:
        return sum(v.stored_size for v in self.volumes)


@dataclass(frozen=True)
class StoredImage:
    """A manifest together with its id (the name of its object)."""

    id: str
    manifest: ImageManifest

    def summary(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "id": self.id,
            "name": m.name,
            "created": format_time(m.created),
            "source": m.source,
            "parent": m.parent,
            "volumes": [
                {"name": v.name, "virtual_size": v.virtual_size, "stored_size": v.stored_size}
                for v in m.volumes
            ],
            "stored_size": m.stored_size,
            "metadata": dict(m.metadata),
        }


def format_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def encode_manifest(m: ImageManifest) -> bytes:
    doc = {
        "version": MANIFEST_JSON_VERSION,
        "name": m.name,
        "created": format_time(m.created),
        "source": m.source,
        "parent": m.parent,
        "metadata": dict(m.metadata),
        "volumes": [
            {"name": v.name, "virtual_size": v.virtual_size, "stored_size": v.stored_size}
            for v in m.volumes
        ],
        "stats": {"bytes_read": m.bytes_read, "bytes_uploaded": m.bytes_uploaded},
    }
    text = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")
    out = bytearray(_U32.pack(len(text)) + text)
    for v in m.volumes:
        out += _U32.pack(len(v.chunks))
        previous = -1
        for index, cid in v.chunks:
            if index <= previous or len(cid) != ID_SIZE:
                raise ValueError(f"volume {v.name}: chunk map not sorted or malformed")
            out += _MAP_ENTRY.pack(index, cid)
            previous = index
    return bytes(out)


def check_chunk_map(volume: VolumeManifest) -> None:
    """``ValueError`` unless the chunk map is sorted, without repeats, inside the volume.

    A writer key holder can write any manifest; a restore trusts these indexes for where it
    writes, so a map pointing past ``virtual_size`` would grow the output, and repeats or
    disorder would break the one-entry-per-chunk rule the readers rely on.
    """
    if volume.virtual_size < 0:
        raise ValueError(f"volume {volume.name!r}: negative virtual size")
    previous = -1
    last = volume.chunk_count - 1
    for index, _ in volume.chunks:
        if index <= previous:
            raise ValueError(
                f"volume {volume.name!r}: chunk map not sorted or repeats chunk index {index}"
            )
        if index > last:
            raise ValueError(
                f"volume {volume.name!r}: chunk index {index} lies outside the volume's "
                f"{volume.virtual_size} bytes"
            )
        previous = index


def decode_manifest(payload: bytes) -> ImageManifest:
    """``ValueError`` when malformed (the envelope already proved it was not tampered with)."""
    try:
        (length,) = _U32.unpack_from(payload, 0)
        doc = load_object(payload[4 : 4 + length], "manifest")
        if doc.get("version") != MANIFEST_JSON_VERSION:
            raise ValueError(f"unknown manifest version {doc.get('version')!r}")
        pos = 4 + length
        volumes = []
        for v in doc["volumes"]:
            (count,) = _U32.unpack_from(payload, pos)
            pos += 4
            if pos + count * _MAP_ENTRY.size > len(payload):
                # Checked before the tuple is built: a forged count of 2^32 - 1 would otherwise
                # allocate entries until the struct error, long after.
                raise ValueError("chunk map longer than the manifest")
            chunks = tuple(
                _MAP_ENTRY.unpack_from(payload, pos + i * _MAP_ENTRY.size) for i in range(count)
            )
            pos += count * _MAP_ENTRY.size
            volume = VolumeManifest(
                name=str(member(v, "name", "volume")),
                virtual_size=integer(member(v, "virtual_size", "volume"), "virtual size"),
                chunks=chunks,
                stored_size=integer(member(v, "stored_size", "volume"), "stored size"),
            )
            check_chunk_map(volume)
            volumes.append(volume)
        if pos != len(payload):
            raise ValueError("trailing bytes after the chunk maps")
        return ImageManifest(
            name=str(doc["name"]),
            created=parse_time(doc["created"]),
            source=str(doc["source"]),
            volumes=tuple(volumes),
            parent=None if doc.get("parent") is None else text(doc["parent"], "parent"),
            metadata=dict(doc.get("metadata") or {}),
            bytes_read=integer(member(doc["stats"], "bytes_read", "stats"), "bytes read"),
            bytes_uploaded=integer(
                member(doc["stats"], "bytes_uploaded", "stats"), "bytes uploaded"
            ),
        )
    except (struct.error, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed manifest: {exc}") from exc
    # (ValueError from check_chunk_map or parse_time passes through with its own message.)


__all__ = [
    "ImageManifest",
    "StoredImage",
    "VolumeManifest",
    "check_chunk_map",
    "decode_manifest",
    "encode_manifest",
    "format_time",
    "parse_time",
]
