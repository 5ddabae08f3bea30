"""Reading snapshots through the EBS direct APIs: list blocks, fetch them, verify each one.

The contract (AWS EBS direct API reference): data is addressed in 512 KiB blocks; blocks never
written are not listed and read as zeros; listings paginate with a ``NextToken`` that expires after
60 minutes; ``GetSnapshotBlock``'s body is *not* covered by the request signature, so the
``x-amz-Checksum`` (base64 SHA-256) is the only integrity check and is always verified.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import botocore.exceptions

from imagekit.errors import ExportError
from imagekit.export.aws import error_code, translate

log = logging.getLogger(__name__)

#: The EBS snapshot block size; the store's chunk size is the same, so block i is chunk i.
EBS_BLOCK_SIZE = 524_288

#: Largest page AWS allows for List*Blocks: fewer calls against the 50 requests/s quota.
MAX_RESULTS = 10_000

#: A block whose checksum fails is fetched again this many times before the export fails.
CHECKSUM_ATTEMPTS = 3


@dataclass(frozen=True)
class BlockRef:
    """A block to read: ``token`` None means the block is gone in this snapshot (reads as zeros)."""

    index: int
    token: str | None


class NotRelated(ExportError):
    """``ListChangedBlocks`` refused: the snapshots are not of one lineage, or the first is gone."""


def _is_expired_token(exc: botocore.exceptions.ClientError) -> bool:
    message = str(exc.response.get("Error", {}).get("Message", "")).lower()
    return error_code(exc) == "ValidationException" and "token" in message and "expir" in message


def _paginate(
    call: Callable[..., dict[str, Any]],
    operation: str,
    subject: str,
    key: str,
    to_ref: Callable[[dict[str, Any]], BlockRef],
    params: dict[str, Any],
) -> Iterator[BlockRef]:
    """Every entry of a List*Blocks listing, in index order.

    An expired ``NextToken`` restarts the listing just after the last index seen, so an export
    slower than the token's 60-minute life still sees every block once.
    """
    token: str | None = None
    start: int | None = None
    last = -1
    while True:
        args = dict(params, MaxResults=MAX_RESULTS)
        if token:
            args["NextToken"] = token
        elif start is not None:
            args["StartingBlockIndex"] = start
        try:
            page = call(**args)
        except botocore.exceptions.ClientError as exc:
            if token and _is_expired_token(exc):
                log.info("%s: listing token expired; restarting after block %d", subject, last)
                token, start = None, last + 1
                continue
            message = str(exc.response.get("Error", {}).get("Message", ""))
            if operation == "ListChangedBlocks" and error_code(exc) == "ValidationException":
                raise NotRelated(f"{subject}: {message}") from exc
            first = params.get("FirstSnapshotId")
            if (
                operation == "ListChangedBlocks"
                and error_code(exc) == "ResourceNotFoundException"
                and first
                and str(first) in message
            ):
                # The base is gone (deleted since the last export): as good as unrelated.
                raise NotRelated(f"{subject}: {message}") from exc
            raise translate(exc, operation, subject) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise translate(exc, operation, subject) from exc
        size = page.get("BlockSize", EBS_BLOCK_SIZE)
        if size != EBS_BLOCK_SIZE:
            raise ExportError(f"{subject}: block size {size}, expected {EBS_BLOCK_SIZE}")
        for entry in page.get(key, []):
            ref = to_ref(entry)
            if ref.index > last:  # a restarted listing may repeat the boundary
                last = ref.index
                yield ref
        token = page.get("NextToken")
        if not token:
            return


def list_snapshot_blocks(ebs: Any, snapshot_id: str) -> Iterator[BlockRef]:
    """Every written block of ``snapshot_id``."""
    return _paginate(
        ebs.list_snapshot_blocks,
        "ListSnapshotBlocks",
        snapshot_id,
        "Blocks",
        lambda e: BlockRef(int(e["BlockIndex"]), str(e["BlockToken"])),
        {"SnapshotId": snapshot_id},
    )


def list_changed_blocks(ebs: Any, first: str, second: str) -> Iterator[BlockRef]:
    """Blocks that differ in ``second`` from ``first``; raises ``NotRelated`` across lineages."""
    return _paginate(
        ebs.list_changed_blocks,
        "ListChangedBlocks",
        f"{first}..{second}",
        "ChangedBlocks",
        lambda e: BlockRef(int(e["BlockIndex"]), e.get("SecondBlockToken")),
        {"FirstSnapshotId": first, "SecondSnapshotId": second},
    )


def fetch_block(
    ebs: Any,
    snapshot_id: str,
    ref: BlockRef,
    *,
    gate: AbstractContextManager[Any] | None = None,
) -> bytes:
    """One block's data, its SHA-256 checksum verified (fetched again when it does not match).

    ``gate`` is held around each request, body included, and released before the checksum is
    computed: with a semaphore it bounds the requests in flight, not the threads hashing.
    """
    if ref.token is None:
        return bytes(EBS_BLOCK_SIZE)
    subject = f"{snapshot_id} block {ref.index}"
    held = gate if gate is not None else contextlib.nullcontext()
    for attempt in range(1, CHECKSUM_ATTEMPTS + 1):
        try:
            with held:
                answer = ebs.get_snapshot_block(
                    SnapshotId=snapshot_id, BlockIndex=ref.index, BlockToken=ref.token
                )
                # One read of the whole body: no chunked reads to join.
                data: bytes = answer["BlockData"].read()
        except botocore.exceptions.ClientError as exc:
            raise translate(exc, "GetSnapshotBlock", subject) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise translate(exc, "GetSnapshotBlock", subject) from exc
        algorithm = answer.get("ChecksumAlgorithm", "SHA256")
        if algorithm != "SHA256":
            raise ExportError(f"{subject}: unsupported checksum algorithm {algorithm}")
        expected = answer.get("Checksum")
        actual = base64.b64encode(hashlib.sha256(data).digest()).decode()
        if len(data) == EBS_BLOCK_SIZE and expected == actual:
            return data
        log.warning("%s: checksum or length mismatch (attempt %d)", subject, attempt)
    raise ExportError(
        f"{subject}: data failed its SHA-256 checksum {CHECKSUM_ATTEMPTS} times",
        hint="the network path corrupts data; retry the export",
        transient=True,
    )


def fetch_blocks(
    ebs: Any, snapshot_id: str, refs: Iterable[BlockRef], *, concurrency: int = 8
) -> Iterator[tuple[int, bytes]]:
    """(index, verified 512 KiB data) for each ref, in the refs' order.

    A fixed pool of ``concurrency`` workers; at most twice that many blocks are in memory, so
    memory stays bounded however large the snapshot. The first failure stops the export.
    """
    window = max(1, concurrency) * 2
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="ebs") as pool:
        pending: deque[tuple[int, Future[bytes]]] = deque()
        try:
            for ref in refs:
                pending.append((ref.index, pool.submit(fetch_block, ebs, snapshot_id, ref)))
                if len(pending) >= window:
                    index, future = pending.popleft()
                    yield index, future.result()
            while pending:
                index, future = pending.popleft()
                yield index, future.result()
        finally:
            for _, future in pending:
                future.cancel()
