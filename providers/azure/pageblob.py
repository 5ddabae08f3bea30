"""Upload a fixed VHD as an Azure **page blob** through libcloud's signed blob connection.

libcloud 3.9.1 writes block blobs only, and Azure imports a managed disk only from a page blob.
The Blob service calls made here (API version 2018-11-09, the one libcloud signs with):

1. Put Blob — ``PUT /CONTAINER/BLOB`` with ``x-ms-blob-type: PageBlob`` and
   ``x-ms-blob-content-length: SIZE``, no body. No ``Content-Length`` header is named: Shared Key
   signs an empty value for an empty body, and naming ``0`` breaks the signature.
2. Put Page — ``PUT /CONTAINER/BLOB?comp=page`` with ``x-ms-page-write: update`` and
   ``x-ms-range: bytes=START-END``, START and END+1 multiples of 512, at most 4 MiB per call.

A new page blob reads as zeros, so only ranges holding data are written: holes of the sparse
file are found with ``SEEK_DATA``/``SEEK_HOLE`` and never read; data windows are read and their
all-zero granules skipped too. Writes run on a small pool of threads, one driver each (a libcloud
connection keeps per-request signing state and is not safe to share).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from libcloud.common.types import InvalidCredsError, LibcloudError

from imagekit.errors import ProviderError, UsageError
from imagekit.progress import NullProgress, Progress
from imagekit.store import sources

#: Azure pages are 512 bytes; every page range must start and end on this boundary.
PAGE = 512
#: 4 MiB: the largest range one Put Page call accepts.
MAX_PAGE_WRITE = 4 << 20
#: 64 KiB: zero runs at least this long inside data are skipped. A multiple of PAGE; small enough
#: to skip a filesystem's zeroed tables, big enough that the check costs nothing next to the write.
ZERO_GRANULE = 64 << 10
#: Four writes in flight keep a 2-core uploader busy without tripping the per-blob write limits.
DEFAULT_WORKERS = 4
#: Attempts per Put Page: one retry for a dropped connection or a 500/503, then a second one.
ATTEMPTS = 3
RETRY_PAUSE = 1.0  # seconds before a retry, doubled each time

_CREATED = 201
_TRANSIENT = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class PageRange:
    """Bytes ``[offset, offset + length)`` of the file, written as one Put Page."""

    offset: int
    length: int

    @property
    def header(self) -> str:
        return f"bytes={self.offset}-{self.offset + self.length - 1}"


@dataclass(frozen=True)
class PageBlobUpload:
    """What an upload did: ``bytes_written`` ≤ ``size``, the rest is holes and zeros."""

    container: str
    blob: str
    size: int
    page_writes: int
    bytes_written: int
    seconds: float


def data_extents(path: Path, size: int) -> list[tuple[int, int]]:
    """``(start, end)`` of the regions of ``path`` that may hold data (holes left out)."""
    with path.open("rb") as handle:
        try:
            return list(sources.data_extents(handle.fileno(), size))
        except OSError:
            return [(0, size)]  # no hole support on this filesystem: read everything


def windows(extents: list[tuple[int, int]], size: int) -> list[PageRange]:
    """Page-aligned windows of at most ``MAX_PAGE_WRITE`` covering every extent (pure)."""
    out: list[PageRange] = []
    last_end = 0
    for start, end in extents:
        start = max(start // PAGE * PAGE, last_end)
        end = min(-(-end // PAGE) * PAGE, size)
        while start < end:
            length = min(MAX_PAGE_WRITE - start % MAX_PAGE_WRITE, end - start)
            out.append(PageRange(start, length))
            start += length
        last_end = max(last_end, end)
    return out


def nonzero_ranges(data: bytes, offset: int) -> list[PageRange]:
    """The parts of ``data`` (read at ``offset``) not made of whole zero granules (pure)."""
    ranges: list[PageRange] = []
    run_start: int | None = None
    for pos in range(0, len(data), ZERO_GRANULE):
        granule = data[pos : pos + ZERO_GRANULE]
        if granule.count(0) == len(granule):
            if run_start is not None:
                ranges.append(PageRange(offset + run_start, pos - run_start))
                run_start = None
        elif run_start is None:
            run_start = pos
    if run_start is not None:
        ranges.append(PageRange(offset + run_start, len(data) - run_start))
    return ranges


def blob_path(container: str, blob: str) -> str:
    return f"/{quote(container)}/{quote(blob)}"


def create_page_blob(driver: Any, container: str, blob: str, size: int) -> None:
    """Put Blob of an empty page blob of ``size`` bytes (replaces an existing blob)."""
    headers = {"x-ms-blob-type": "PageBlob", "x-ms-blob-content-length": str(size)}
    _call(driver, "Put Blob", blob_path(container, blob), {}, headers, b"")


def put_page(driver: Any, container: str, blob: str, page: PageRange, data: bytes) -> None:
    """Put Page: write ``data`` at ``page`` (``len(data) == page.length``)."""
    headers = {
        "x-ms-page-write": "update",
        "x-ms-range": page.header,
        "Content-Length": str(len(data)),
        "Content-Type": "application/octet-stream",
    }
    _call(driver, "Put Page", blob_path(container, blob), {"comp": "page"}, headers, data)


def delete_blob(driver: Any, container: str, blob: str) -> bool:
    """Delete Blob; ``False`` when it was already gone."""
    try:
        response = driver.connection.request(blob_path(container, blob), method="DELETE")
    except InvalidCredsError as exc:
        raise ProviderError("Azure storage refused the account key (Delete Blob)") from exc
    except LibcloudError as exc:
        raise ProviderError(f"Azure Delete Blob of {blob} failed: {exc}") from exc
    status = int(response.status)
    if status == 404:
        return False
    if status not in (200, 202):
        raise ProviderError(f"Azure Delete Blob of {blob} failed: HTTP {status}")
    return True


def blob_exists(driver: Any, container: str, blob: str) -> bool:
    """Get Blob Properties answers 200."""
    response = driver.connection.request(blob_path(container, blob), method="HEAD")
    return int(response.status) == 200


def _call(
    driver: Any, what: str, path: str, params: dict[str, str], headers: dict[str, str], data: bytes
) -> None:
    pause = RETRY_PAUSE
    for attempt in range(1, ATTEMPTS + 1):
        try:
            response = driver.connection.request(
                path, params=params, method="PUT", data=data, headers=headers
            )
            status = int(response.status)
        except InvalidCredsError as exc:
            raise ProviderError(
                f"Azure storage refused the account key ({what})",
                hint="check the storage account name and key (IMAGEKIT_AZURE_ACCOUNT/KEY)",
            ) from exc
        except (LibcloudError, OSError) as exc:
            status = 0
            failure: str = type(exc).__name__
            if attempt == ATTEMPTS:
                raise ProviderError(f"Azure {what} failed: {failure}", transient=True) from exc
        else:
            if status == _CREATED:
                return
            failure = f"HTTP {status}: {_error_text(response)}"
            if status not in _TRANSIENT or attempt == ATTEMPTS:
                hint = "does the container exist?" if status == 404 else None
                raise ProviderError(f"Azure {what} of {path} failed: {failure}", hint=hint)
        time.sleep(pause)
        pause *= 2
    raise AssertionError("unreachable")


def _error_text(response: Any) -> str:
    body = response.body if isinstance(response.body, str) else ""
    for tag in ("Message", "Code"):
        start = body.find(f"<{tag}>")
        if start >= 0:
            end = body.find(f"</{tag}>", start)
            return body[start + len(tag) + 2 : end].split("\n")[0]
    return body[:200]


def upload_page_blob(
    driver_factory: Callable[[], Any],
    container: str,
    blob: str,
    path: Path,
    *,
    workers: int = DEFAULT_WORKERS,
    progress: Progress | None = None,
) -> PageBlobUpload:
    """Upload ``path`` (a fixed VHD: size a multiple of 512) as page blob ``container/blob``."""
    progress = progress or NullProgress()
    began = time.monotonic()
    size = path.stat().st_size
    if size % PAGE:
        raise UsageError(
            f"{path}: {size} bytes is not a whole number of 512-byte pages",
            hint="convert it with the vhd-azure target (a fixed VHD of N MiB + 512 bytes)",
        )
    local = threading.local()
    drivers: list[Any] = []
    lock = threading.Lock()

    def driver() -> Any:
        if not hasattr(local, "driver"):
            local.driver = driver_factory()
            with lock:
                drivers.append(local.driver)
        return local.driver

    create_page_blob(driver(), container, blob, size)
    plan = windows(data_extents(path, size), size)
    progress.start(f"upload {blob}", size)
    progress.advance(size - sum(w.length for w in plan))  # holes: nothing to send
    counts = {"writes": 0, "bytes": 0}

    def send(window: PageRange) -> None:
        with path.open("rb") as handle:
            handle.seek(window.offset)
            data = handle.read(window.length)
        for page in nonzero_ranges(data, window.offset):
            start = page.offset - window.offset
            put_page(driver(), container, blob, page, data[start : start + page.length])
            with lock:
                counts["writes"] += 1
                counts["bytes"] += page.length
        with lock:
            progress.advance(window.length)

    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for future in [pool.submit(send, w) for w in plan]:
                future.result()
    finally:
        progress.finish()
        for each in drivers:
            _close(each)
    return PageBlobUpload(
        container, blob, size, counts["writes"], counts["bytes"], time.monotonic() - began
    )


def _close(driver: Any) -> None:
    conn = getattr(driver, "connection", None)
    if conn is not None and getattr(conn, "connection", None) is not None:
        conn.connection.close()
