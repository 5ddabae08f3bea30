"""Cloud Files (Swift) uploads for the rackspace profile: one object, or a static large object.

Swift (and so Rackspace Cloud Files) stores one object of at most 5 GiB. A larger file goes up
as a *static large object*: its segments (each ≤ 5 GiB) as ordinary objects in the same
container, then a manifest — ``PUT /CONTAINER/NAME?multipart-manifest=put`` with the JSON list of
the segments' ``path``, ``etag`` and ``size_bytes`` — which Swift checks against the segments and
serves as the whole file from then on (Glance's import task reads it like any object).
``DELETE …?multipart-manifest=delete`` removes the manifest and its segments together.

Each segment is streamed from its range of the file through an MD5 that is compared with the
ETag Swift answers, so a damaged segment is caught before the manifest names it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from imagekit.errors import ProviderError

#: 5 GiB: Swift's (and Cloud Files') largest single object; bigger needs a segmented upload.
OBJECT_LIMIT = 5 << 30
#: 1 GiB segments: well under the limit, and a failed segment costs little to send again.
SEGMENT_SIZE = 1 << 30
OCTET = "application/octet-stream"
SLO_PUT = {"multipart-manifest": "put"}
SLO_DELETE = {"multipart-manifest": "delete"}
_BLOCK = 1 << 20


@dataclass(frozen=True)
class Segment:
    name: str  # the object name in the container
    offset: int
    length: int


def segments(name: str, total: int, segment_size: int = SEGMENT_SIZE) -> list[Segment]:
    """The segments of a ``total``-byte file uploaded as ``name``: ``NAME.segments/00000``…,
    sorted by name in file order (the manifest lists them in that order)."""
    if segment_size <= 0 or segment_size > OBJECT_LIMIT:
        raise ValueError(f"segment size {segment_size}: must be 1 byte to 5 GiB")
    return [
        Segment(f"{name}.segments/{i:05d}", offset, min(segment_size, total - offset))
        for i, offset in enumerate(range(0, total, segment_size))
    ]


def manifest(container: str, uploaded: list[tuple[Segment, str]]) -> list[dict[str, Any]]:
    """The static large object manifest: each segment's path, ETag (MD5 hex) and size."""
    return [
        {"path": f"/{container}/{seg.name}", "etag": etag, "size_bytes": seg.length}
        for seg, etag in uploaded
    ]


class SegmentReader:
    """The bytes ``[offset, offset + length)`` of an open file, read as a stream, hashed."""

    def __init__(self, handle: BinaryIO, offset: int, length: int):
        self._handle = handle
        self._left = length
        self.length = length
        self.md5 = hashlib.md5()
        handle.seek(offset)

    def __len__(self) -> int:  # requests sends a Content-Length, not a chunked body
        return self.length

    def read(self, size: int = -1) -> bytes:
        want = self._left if size is None or size < 0 else min(size, self._left)
        data = self._handle.read(want) if want else b""
        self._left -= len(data)
        self.md5.update(data)
        return data

    def __iter__(self) -> Any:
        while block := self.read(_BLOCK):
            yield block


Call = Callable[[str, Callable[[], Any]], Any]  # glance.call: the error translation


def put_object(call: Call, conn: Any, container: str, name: str, path: Path) -> None:
    """One object: the file streamed as its body."""
    with path.open("rb") as body:
        call(
            "upload to Cloud Files",
            lambda: conn.request(
                f"/{container}/{name}", method="PUT", data=body, headers={"Content-Type": OCTET}
            ),
        )


def put_segment(call: Call, conn: Any, container: str, segment: Segment, handle: BinaryIO) -> str:
    """One segment from its range of the file; its MD5, checked against Swift's ETag."""
    reader = SegmentReader(handle, segment.offset, segment.length)
    response = call(
        f"upload of segment {segment.name} to Cloud Files",
        lambda: conn.request(
            f"/{container}/{segment.name}",
            method="PUT",
            data=reader,
            headers={"Content-Type": OCTET},
        ),
    )
    digest = reader.md5.hexdigest()
    etag = str((getattr(response, "headers", None) or {}).get("etag", "")).strip('"')
    if etag and etag != digest:
        raise ProviderError(
            f"Cloud Files stored segment {segment.name} with ETag {etag}, not its MD5 {digest}",
            transient=True,
        )
    return digest


def put_manifest(call: Call, conn: Any, container: str, name: str, body: list[Any]) -> None:
    call(
        "static large object manifest upload",
        lambda: conn.request(
            f"/{container}/{name}",
            params=dict(SLO_PUT),
            method="PUT",
            data=json.dumps(body),
            headers={"Content-Type": "application/json"},
        ),
    )


__all__ = [
    "OBJECT_LIMIT",
    "SEGMENT_SIZE",
    "SLO_DELETE",
    "Segment",
    "SegmentReader",
    "manifest",
    "put_manifest",
    "put_object",
    "put_segment",
    "segments",
]
