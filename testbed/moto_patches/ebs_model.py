"""The EBS direct APIs as AWS documents them, as a pure in-memory model (no HTTP, no moto).

moto 5.2.1's own EBS model stores blocks under the string index it was given, reports a 512-byte
block size, never paginates and validates nothing. This model is what the patched server answers
from instead. It follows the AWS API reference for the six EBS direct actions
(StartSnapshot, PutSnapshotBlock, CompleteSnapshot, ListSnapshotBlocks, ListChangedBlocks,
GetSnapshotBlock) and the EBS direct APIs FAQ ("block indexes are unique and in numerical order",
"MaxResults under 100 still returns at least 100", "only completed snapshots can be read").

Error codes, HTTP statuses and ``Reason`` values come from the service model
(``botocore/data/ebs/2019-11-02/service-2.json``). Where AWS's exact message wording is not
documented the message is ours, written to read like AWS's ("The snapshot 'snap-…' does not
exist." is AWS's own wording).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

BLOCK_SIZE = 524_288
"""512 KiB: the EBS direct APIs' only block size (PutSnapshotBlock DataLength's one value)."""

BLOCKS_PER_GIB = (1 << 30) // BLOCK_SIZE
"""2048 blocks per GiB: VolumeSize is in GiB, so the last valid index is VolumeSize × 2048 − 1."""

MAX_VOLUME_GIB = 65_536
"""64 TiB: StartSnapshot's documented maximum VolumeSize."""

MIN_MAX_RESULTS, MAX_MAX_RESULTS = 100, 10_000
"""MaxResults' documented range. Below 100 AWS still returns at least 100 (EBS direct APIs FAQ)."""

DEFAULT_MAX_RESULTS = MAX_MAX_RESULTS
"""AWS does not document a default page size; the largest one keeps unpaginated callers working."""

PAGE_TOKEN_TTL_SECONDS = 3600.0
"""A NextToken is valid for 60 minutes (ListSnapshotBlocks / ListChangedBlocks reference)."""

BLOCK_TOKEN_TTL_SECONDS = 7 * 24 * 3600.0
"""Block tokens expire after 7 days; the listings report it as ExpiryTime."""

CHECKSUM_ALGORITHM = "SHA256"
"""The only checksum algorithm the EBS direct APIs support."""

DEFAULT_SNAPSHOT_POLLS = 2
"""DescribeSnapshots answers a volume snapshot gets while pending before it completes: AWS takes
minutes; two polls let a client's wait loop and its progress be exercised without sleeping."""


class EbsError(Exception):
    """An error the EBS direct APIs answer with: code (x-amzn-ErrorType), HTTP status, Reason."""

    def __init__(self, code: str, status: int, message: str, reason: str | None = None):
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message
        self.reason = reason


def validation_error(message: str, reason: str = "INVALID_PARAMETER_VALUE") -> EbsError:
    return EbsError("ValidationException", 400, message, reason)


def snapshot_not_found(snapshot_id: str) -> EbsError:
    # AWS's wording, as reported by EBS direct API clients (coldsnap).
    return EbsError(
        "ResourceNotFoundException",
        404,
        f"The snapshot '{snapshot_id}' does not exist.",
        "SNAPSHOT_NOT_FOUND",
    )


def kms_access_denied(snapshot: EbsSnapshot, principal_arn: str) -> EbsError:
    # Reading an encrypted snapshot needs kms:Decrypt on its key; AWS reports the failed
    # dependency call with Reason DEPENDENCY_ACCESS_DENIED and names the KMS action.
    return EbsError(
        "AccessDeniedException",
        403,
        f"User: {principal_arn} is not authorized to perform: kms:Decrypt on resource: "
        f"{snapshot.kms_key_arn} (snapshot '{snapshot.snapshot_id}' is encrypted)",
        "DEPENDENCY_ACCESS_DENIED",
    )


def sha256_b64(data: bytes) -> str:
    """The checksum format of the EBS direct APIs: base64 of the SHA-256 digest."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


@dataclass(frozen=True)
class Block:
    """One written 512 KiB block: which write produced it and the digest of its bytes."""

    write_id: str
    digest: bytes

    @property
    def checksum(self) -> str:
        return base64.b64encode(self.digest).decode("ascii")


@dataclass
class EbsSnapshot:
    """A snapshot as the EBS direct APIs see it; ``blocks`` starts as a copy of the parent's."""

    snapshot_id: str
    owner_id: str
    volume_size: int
    lineage: str
    start_time: float
    parent_id: str | None = None
    description: str | None = None
    tags: list[dict[str, str]] = field(default_factory=list)
    status: str = "pending"
    encrypted: bool = False
    kms_key_arn: str | None = None
    kms_decrypt_denied: bool = False
    blocks: dict[int, Block] = field(default_factory=dict)
    written: set[int] = field(default_factory=set)
    volume_id: str | None = None  # set for a snapshot EC2 took of a volume (CreateSnapshot[s])
    polls_left: int = 0  # DescribeSnapshots answers until a volume snapshot completes
    polls_total: int = 0

    @property
    def progress(self) -> str:
        """EC2's ``Progress``: how far a pending volume snapshot is, as AWS shows it (``40%``)."""
        if self.status != "pending" or not self.polls_total:
            return "100%" if self.status == "completed" else "0%"
        return f"{100 * (self.polls_total - self.polls_left) // (self.polls_total + 1)}%"

    def block_token(self, index: int) -> str:
        raw = f"{self.snapshot_id}:{index}:{self.blocks[index].write_id}".encode()
        return base64.b64encode(raw).decode("ascii")

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "SnapshotId": self.snapshot_id,
            "OwnerId": self.owner_id,
            "Status": self.status,
            "StartTime": self.start_time,
            "VolumeSize": self.volume_size,
            "BlockSize": BLOCK_SIZE,
            "Tags": self.tags,
        }
        if self.description is not None:
            out["Description"] = self.description
        if self.parent_id is not None:
            out["ParentSnapshotId"] = self.parent_id
        if self.kms_key_arn is not None:
            out["KmsKeyArn"] = self.kms_key_arn
        return out


def effective_max_results(max_results: int | None) -> int:
    if max_results is None:
        return DEFAULT_MAX_RESULTS
    if max_results > MAX_MAX_RESULTS:
        raise validation_error(
            f"MaxResults must be between {MIN_MAX_RESULTS} and {MAX_MAX_RESULTS}, "
            f"got {max_results}."
        )
    # FAQ: a MaxResults under 100 is served as if it were 100.
    return max(max_results, MIN_MAX_RESULTS)


def encode_page_token(scope: str, next_index: int, issued_at: float) -> str:
    """Opaque to clients; it names what it pages over so it cannot be replayed elsewhere."""
    raw = json.dumps({"s": scope, "i": next_index, "t": round(issued_at, 3)}).encode()
    return base64.b64encode(raw).decode("ascii")


def decode_page_token(token: str, scope: str, now: float, ttl: float) -> int:
    """The block index a token resumes at, or the ValidationException AWS answers with."""
    try:
        payload = json.loads(base64.b64decode(token, validate=True))
        token_scope, next_index, issued_at = payload["s"], int(payload["i"]), float(payload["t"])
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise validation_error("The pagination token is not valid.", "INVALID_PAGE_TOKEN") from exc
    if token_scope != scope:
        raise validation_error(
            "The pagination token was issued for a different request.", "INVALID_PAGE_TOKEN"
        )
    if now - issued_at > ttl:
        raise validation_error("The pagination token has expired.", "INVALID_PAGE_TOKEN")
    return next_index


def page(
    indexes: Iterable[int], start_index: int, max_results: int
) -> tuple[list[int], int | None]:
    """Sorted indexes from ``start_index``, at most ``max_results``; where the next page starts."""
    selected = sorted(i for i in indexes if i >= start_index)
    if len(selected) <= max_results:
        return selected, None
    return selected[:max_results], selected[max_results]


@dataclass(frozen=True)
class Listing:
    """One page of ListSnapshotBlocks / ListChangedBlocks."""

    entries: list[dict[str, object]]
    volume_size: int
    expiry_time: float
    next_token: str | None

    def to_json(self, key: str) -> dict[str, object]:
        out: dict[str, object] = {
            key: self.entries,
            "ExpiryTime": self.expiry_time,
            "VolumeSize": self.volume_size,
            "BlockSize": BLOCK_SIZE,
        }
        if self.next_token is not None:
            out["NextToken"] = self.next_token
        return out


@dataclass
class EbsVolume:
    """What an attached EBS volume holds now: blocks written by the instance, block by block.

    A volume made from a snapshot starts as a copy of the snapshot's blocks and joins its lineage,
    so its later snapshots compare with that one (ListChangedBlocks) as on AWS.
    """

    volume_id: str
    volume_size: int
    lineage: str
    blocks: dict[int, Block] = field(default_factory=dict)


class EbsState:
    """All EBS direct API state of one account and region, safe to use from server threads."""

    def __init__(self, owner_id: str, now: Callable[[], float] = time.time):
        self.owner_id = owner_id
        self.now = now
        self.snapshots: dict[str, EbsSnapshot] = {}
        self.contents: dict[
            bytes, bytes
        ] = {}  # digest -> block bytes; identical blocks stored once
        self.client_tokens: dict[
            str, tuple[str, str]
        ] = {}  # ClientToken -> (request key, snapshot)
        self.volumes: dict[str, EbsVolume] = {}
        self.lock = threading.RLock()

    # -- volumes (what EC2 instances write; the bench changes them through a test hook) --------

    def create_volume(
        self, volume_id: str, volume_size: int, snapshot_id: str | None = None
    ) -> EbsVolume:
        with self.lock:
            source = self.snapshots.get(snapshot_id) if snapshot_id else None
            volume = EbsVolume(
                volume_id=volume_id,
                volume_size=volume_size,
                lineage=source.lineage if source is not None else volume_id,
                blocks=dict(source.blocks) if source is not None else {},
            )
            self.volumes[volume_id] = volume
            return volume

    def write_volume(self, volume_id: str, writes: Mapping[int, bytes | None]) -> int:
        """The instance writes ``writes`` (index → 512 KiB, None: discarded/zeroed); the count."""
        with self.lock:
            volume = self.volumes.get(volume_id)
            if volume is None:
                raise KeyError(f"no volume {volume_id}")
            for index, data in writes.items():
                if not 0 <= index < volume.volume_size * BLOCKS_PER_GIB:
                    raise ValueError(f"block {index} is outside {volume_id}")
                if data is None:
                    volume.blocks.pop(index, None)
                    continue
                if len(data) != BLOCK_SIZE:
                    raise ValueError(f"block {index}: {len(data)} bytes, not {BLOCK_SIZE}")
                digest = hashlib.sha256(data).digest()
                self.contents.setdefault(digest, data)
                volume.blocks[index] = Block(write_id=uuid.uuid4().hex, digest=digest)
            return len(writes)

    def volume_digests(self, volume_id: str) -> dict[int, str]:
        """Block index → base64 SHA-256 of what the volume holds now (unwritten blocks absent)."""
        with self.lock:
            volume = self.volumes.get(volume_id)
            if volume is None:
                raise KeyError(f"no volume {volume_id}")
            return {i: b.checksum for i, b in sorted(volume.blocks.items())}

    def snapshot_volume(
        self,
        snapshot_id: str,
        volume_id: str,
        description: str | None,
        polls: int = DEFAULT_SNAPSHOT_POLLS,
    ) -> None:
        """EC2 CreateSnapshot(s): the volume's blocks as of now, frozen; pending for a few polls.

        Copy-on-write as AWS does it: unchanged blocks keep their write, so ListChangedBlocks
        against the previous snapshot of the volume names only what the instance wrote since.
        """
        with self.lock:
            volume = self.volumes.get(volume_id)
            if volume is None:
                return  # a volume moto made before the patches knew it: no data to freeze
            self.snapshots[snapshot_id] = EbsSnapshot(
                snapshot_id=snapshot_id,
                owner_id=self.owner_id,
                volume_size=volume.volume_size,
                lineage=volume.lineage,
                start_time=self.now(),
                description=description,
                blocks=dict(volume.blocks),
                written=set(volume.blocks),
                volume_id=volume_id,
                polls_left=polls,
                polls_total=polls,
                status="pending" if polls > 0 else "completed",
            )

    def poll_snapshot(self, snapshot_id: str) -> EbsSnapshot | None:
        """One DescribeSnapshots answer about a volume snapshot: it progresses, then completes."""
        with self.lock:
            snapshot = self.snapshots.get(snapshot_id)
            if snapshot is None or snapshot.volume_id is None or snapshot.status != "pending":
                return snapshot
            snapshot.polls_left -= 1
            if snapshot.polls_left <= 0:
                snapshot.status = "completed"
            return snapshot

    def delete_snapshot(self, snapshot_id: str) -> None:
        with self.lock:
            self.snapshots.pop(snapshot_id, None)

    # -- writing ----------------------------------------------------------------------------

    def check_start(self, params: Mapping[str, object]) -> EbsSnapshot | None:
        """Validate a StartSnapshot request; the parent snapshot it names, if any."""
        volume_size = params.get("VolumeSize")
        if not isinstance(volume_size, int) or not 1 <= volume_size <= MAX_VOLUME_GIB:
            raise validation_error(
                f"VolumeSize must be between 1 and {MAX_VOLUME_GIB} GiB.", "INVALID_VOLUME_SIZE"
            )
        parent_id = params.get("ParentSnapshotId")
        if parent_id is not None and params.get("Encrypted") is not None:
            # StartSnapshot reference: "You can't specify ParentSnapshotId and Encrypted in the
            # same request ... the request fails with ValidationException."
            raise validation_error("ParentSnapshotId and Encrypted cannot be specified together.")
        parent = self.readable(str(parent_id)) if parent_id is not None else None
        if parent is not None and volume_size < parent.volume_size:
            raise validation_error(
                f"VolumeSize {volume_size} GiB is smaller than the parent snapshot's "
                f"{parent.volume_size} GiB.",
                "INVALID_VOLUME_SIZE",
            )
        return parent

    def start_snapshot(self, snapshot_id: str, params: Mapping[str, object]) -> EbsSnapshot:
        with self.lock:
            parent = self.check_start(params)
            volume_size = int(params["VolumeSize"])  # type: ignore[call-overload]
            snapshot = EbsSnapshot(
                snapshot_id=snapshot_id,
                owner_id=self.owner_id,
                volume_size=volume_size,
                # A lineage is the tree of snapshots grown from one first snapshot through
                # ParentSnapshotId; ListChangedBlocks only compares within one.
                lineage=parent.lineage if parent else snapshot_id,
                start_time=self.now(),
                parent_id=parent.snapshot_id if parent else None,
                description=_opt_str(params.get("Description")),
                tags=_tags(params.get("Tags")),
                encrypted=bool(params.get("Encrypted"))
                or (parent is not None and parent.encrypted),
                kms_key_arn=_opt_str(params.get("KmsKeyArn"))
                or (parent.kms_key_arn if parent else None),
                # Copy-on-write: the child sees every parent block until it overwrites it.
                blocks=dict(parent.blocks) if parent else {},
            )
            if snapshot.encrypted and snapshot.kms_key_arn is None:
                snapshot.kms_key_arn = f"arn:aws:kms:::alias/aws/ebs-{self.owner_id}"
            self.snapshots[snapshot_id] = snapshot
            return snapshot

    def idempotent_start(
        self, client_token: str | None, params: Mapping[str, object]
    ) -> str | None:
        """The snapshot a repeated ClientToken maps to; ConflictException if the request differs."""
        if not client_token:
            return None
        request_key = json.dumps(
            {k: v for k, v in params.items() if k != "ClientToken"}, sort_keys=True
        )
        with self.lock:
            known = self.client_tokens.get(client_token)
        if known is None:
            return None
        if known[0] != request_key:
            raise EbsError(
                "ConflictException",
                409,
                "The request uses the same client token as a previous, but non-identical request.",
            )
        return known[1]

    def remember_client_token(
        self, client_token: str | None, params: Mapping[str, object], snapshot_id: str
    ) -> None:
        if client_token:
            request_key = json.dumps(
                {k: v for k, v in params.items() if k != "ClientToken"}, sort_keys=True
            )
            with self.lock:
                self.client_tokens[client_token] = (request_key, snapshot_id)

    def put_block(
        self,
        snapshot_id: str,
        index: int,
        data: bytes,
        data_length: str | None,
        checksum: str | None,
        algorithm: str | None,
        principal_arn: str,
    ) -> str:
        with self.lock:
            snapshot = self.get(snapshot_id)
            if snapshot.status != "pending":
                raise validation_error(
                    f"The snapshot '{snapshot_id}' is {snapshot.status}; blocks can only be "
                    "written to a pending snapshot.",
                    "INVALID_SNAPSHOT_ID",
                )
            self._check_index(snapshot, index)
            if snapshot.kms_decrypt_denied:
                raise kms_access_denied(snapshot, principal_arn)
        if data_length != str(BLOCK_SIZE):
            raise validation_error(
                f"DataLength must be {BLOCK_SIZE}, got {data_length!r}.", "INVALID_PARAMETER_VALUE"
            )
        if len(data) != BLOCK_SIZE:
            raise validation_error(
                f"Failed to read block data: got {len(data)} bytes, DataLength is {BLOCK_SIZE}.",
                "INVALID_PARAMETER_VALUE",
            )
        if algorithm != CHECKSUM_ALGORITHM:
            raise validation_error(
                f"ChecksumAlgorithm must be {CHECKSUM_ALGORITHM}, got {algorithm!r}.",
                "INVALID_PARAMETER_VALUE",
            )
        digest = hashlib.sha256(data).digest()
        if checksum != base64.b64encode(digest).decode("ascii"):
            raise validation_error(
                "The checksum of the block data does not match the x-amz-Checksum header.",
                "INVALID_PARAMETER_VALUE",
            )
        with self.lock:
            self.contents.setdefault(digest, data)
            snapshot.blocks[index] = Block(write_id=uuid.uuid4().hex, digest=digest)
            snapshot.written.add(index)
        return base64.b64encode(digest).decode("ascii")

    def complete(
        self,
        snapshot_id: str,
        changed_blocks_count: str | None,
        checksum: str | None,
        algorithm: str | None,
        aggregation: str | None,
    ) -> str:
        with self.lock:
            snapshot = self.get(snapshot_id)
            if snapshot.status != "pending":
                raise validation_error(
                    f"The snapshot '{snapshot_id}' is already {snapshot.status}.",
                    "INVALID_SNAPSHOT_ID",
                )
            if changed_blocks_count is None or not changed_blocks_count.isdigit():
                raise validation_error("ChangedBlocksCount must be a non-negative integer.")
            if int(changed_blocks_count) != len(snapshot.written) or (
                checksum is not None
                and not self._aggregate_matches(snapshot, checksum, algorithm, aggregation)
            ):
                # A count or aggregate checksum that disagrees with what was written leaves the
                # snapshot unusable rather than silently completing it.
                snapshot.status = "error"
            else:
                snapshot.status = "completed"
            return snapshot.status

    def _aggregate_matches(
        self, snapshot: EbsSnapshot, checksum: str, algorithm: str | None, aggregation: str | None
    ) -> bool:
        if algorithm != CHECKSUM_ALGORITHM or aggregation != "LINEAR":
            raise validation_error("Only SHA256 checksums with LINEAR aggregation are supported.")
        ordered = [snapshot.blocks[i] for i in sorted(snapshot.written)]
        # The reference says "concatenate the checksums"; accept the base64 text or the raw
        # digests, since clients differ in which they feed to SHA-256.
        as_text = sha256_b64("".join(b.checksum for b in ordered).encode("ascii"))
        as_bytes = sha256_b64(b"".join(b.digest for b in ordered))
        return checksum in (as_text, as_bytes)

    # -- reading ----------------------------------------------------------------------------

    def get(self, snapshot_id: str) -> EbsSnapshot:
        snapshot = self.snapshots.get(snapshot_id)
        if snapshot is None:
            raise snapshot_not_found(snapshot_id)
        return snapshot

    def readable(self, snapshot_id: str, principal_arn: str = "") -> EbsSnapshot:
        """A snapshot the read APIs may serve: completed, and decryptable by the caller."""
        snapshot = self.get(snapshot_id)
        if snapshot.status == "pending":
            # FAQ: a pending snapshot cannot be accessed; AWS answers as if it did not exist yet.
            raise snapshot_not_found(snapshot_id)
        if snapshot.status != "completed":
            raise validation_error(
                f"The snapshot '{snapshot_id}' is in the {snapshot.status} state and cannot be "
                "read.",
                "INVALID_SNAPSHOT_ID",
            )
        if snapshot.kms_decrypt_denied:
            raise kms_access_denied(snapshot, principal_arn)
        return snapshot

    def get_block(
        self, snapshot_id: str, index: int, block_token: str | None, principal_arn: str
    ) -> tuple[bytes, str]:
        with self.lock:
            snapshot = self.readable(snapshot_id, principal_arn)
            self._check_index(snapshot, index)
            if index not in snapshot.blocks or block_token != snapshot.block_token(index):
                raise validation_error(
                    f"The block token is not valid for block {index} of snapshot '{snapshot_id}'.",
                    "INVALID_BLOCK_TOKEN",
                )
            block = snapshot.blocks[index]
            return self.contents[block.digest], block.checksum

    def list_blocks(
        self,
        snapshot_id: str,
        next_token: str | None,
        max_results: int | None,
        starting_index: int | None,
        principal_arn: str,
        token_ttl: float,
    ) -> Listing:
        limit = effective_max_results(max_results)
        with self.lock:
            snapshot = self.readable(snapshot_id, principal_arn)
            scope = f"blocks:{snapshot_id}"
            start = self._start(scope, next_token, starting_index, token_ttl)
            indexes, next_index = page(snapshot.blocks, start, limit)
            entries: list[dict[str, object]] = [
                {"BlockIndex": i, "BlockToken": snapshot.block_token(i)} for i in indexes
            ]
            return self._listing(snapshot, entries, scope, next_index)

    def list_changed_blocks(
        self,
        first_id: str | None,
        second_id: str,
        next_token: str | None,
        max_results: int | None,
        starting_index: int | None,
        principal_arn: str,
        token_ttl: float,
    ) -> Listing:
        limit = effective_max_results(max_results)
        with self.lock:
            second = self.readable(second_id, principal_arn)
            first = self.readable(first_id, principal_arn) if first_id else None
            if first is not None and first.lineage != second.lineage:
                raise validation_error(
                    f"The snapshots '{first.snapshot_id}' and '{second_id}' are not related: "
                    "ListChangedBlocks compares snapshots of the same volume or snapshot lineage.",
                    "UNRELATED_SNAPSHOTS",
                )
            old = first.blocks if first else {}
            # The union of both sides: a block written only in the second snapshot is a change
            # too. Unchanged means the same write inherited through the lineage.
            changed = {
                i
                for i in old.keys() | second.blocks.keys()
                if (old.get(i) and old[i].write_id)
                != (second.blocks.get(i) and second.blocks[i].write_id)
            }
            scope = f"changed:{first_id or ''}:{second_id}"
            start = self._start(scope, next_token, starting_index, token_ttl)
            indexes, next_index = page(changed, start, limit)
            entries: list[dict[str, object]] = []
            for i in indexes:
                entry: dict[str, object] = {"BlockIndex": i}
                if first is not None and i in first.blocks:
                    entry["FirstBlockToken"] = first.block_token(i)
                if i in second.blocks:
                    entry["SecondBlockToken"] = second.block_token(i)
                entries.append(entry)
            return self._listing(second, entries, scope, next_index)

    def _start(
        self, scope: str, next_token: str | None, starting_index: int | None, ttl: float
    ) -> int:
        # Reference: "If you specify NextToken, then StartingBlockIndex is ignored."
        if next_token:
            return decode_page_token(next_token, scope, self.now(), ttl)
        if starting_index is not None and starting_index < 0:
            raise validation_error("StartingBlockIndex must be 0 or greater.")
        return starting_index or 0

    def _listing(
        self,
        snapshot: EbsSnapshot,
        entries: list[dict[str, object]],
        scope: str,
        next_index: int | None,
    ) -> Listing:
        now = self.now()
        token = encode_page_token(scope, next_index, now) if next_index is not None else None
        return Listing(entries, snapshot.volume_size, now + BLOCK_TOKEN_TTL_SECONDS, token)

    @staticmethod
    def _check_index(snapshot: EbsSnapshot, index: int) -> None:
        if not 0 <= index < snapshot.volume_size * BLOCKS_PER_GIB:
            raise validation_error(
                f"Block index {index} is outside the volume of {snapshot.volume_size} GiB "
                f"(valid: 0 to {snapshot.volume_size * BLOCKS_PER_GIB - 1}).",
                "INVALID_BLOCK",
            )


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _tags(value: object) -> list[dict[str, str]]:
    if not isinstance(value, list):
        return []
    return [{"Key": str(t.get("Key")), "Value": str(t.get("Value", ""))} for t in value]
