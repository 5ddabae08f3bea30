"""moto's EBS direct API handlers, replaced by ones answering from ``ebs_model``.

Each handler below fixes deviations of moto 5.2.1 listed in REFERENCE.md: the 512-byte block size,
no pagination, unsorted blocks, ListChangedBlocks missing second-only blocks, ParentSnapshotId
ignored, no validation, and HTTP 500 HTML pages instead of AWS JSON errors. The EC2 side of each
snapshot (DescribeSnapshots) is kept in step: pending until CompleteSnapshot, encrypted flag, tags.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from moto.core.common_types import TYPE_RESPONSE
from moto.ebs.models import EBSBackend, ebs_backends
from moto.ebs.responses import EBSResponse

from . import control
from .ebs_model import (
    BLOCK_SIZE,
    CHECKSUM_ALGORITHM,
    EbsError,
    EbsSnapshot,
    EbsState,
    validation_error,
)

_BLOCK_PATH = re.compile(r"/snapshots/(?P<snapshot>[^/]+)/blocks/(?P<index>[^/]+)$")
_LIST_PATH = re.compile(r"/snapshots/(?P<snapshot>[^/]+)/(?:blocks|changedblocks)$")
_COMPLETE_PATH = re.compile(r"/snapshots/completion/(?P<snapshot>[^/]+)$")
_JSON: dict[str, Any] = {"status": 200, "Content-Type": "application/json"}
_JSON_201: dict[str, Any] = {**_JSON, "status": 201}


def state_of(backend: EBSBackend) -> EbsState:
    """The faithful EBS state of one moto backend (one account and region), made on first use."""
    state: EbsState | None = getattr(backend, "testbed_state", None)
    if state is None:
        state = EbsState(owner_id=backend.account_id)
        setattr(backend, "testbed_state", state)  # noqa: B010 (a moto object: no such field)
    return state


def json_error(error: EbsError) -> TYPE_RESPONSE:
    """The REST-JSON error shape botocore parses: x-amzn-ErrorType header, Message and Reason."""
    body: dict[str, str] = {"Message": error.message}
    if error.reason:
        body["Reason"] = error.reason
    headers = {
        "status": error.status,
        "x-amzn-ErrorType": error.code,
        "Content-Type": "application/json",
    }
    return error.status, headers, json.dumps(body)


def _aws_errors(
    handler: Callable[[EBSResponse], TYPE_RESPONSE],
) -> Callable[[EBSResponse], TYPE_RESPONSE]:
    """Turn model errors into AWS JSON errors instead of moto's HTTP 500 HTML page."""

    def wrapped(self: EBSResponse) -> TYPE_RESPONSE:
        try:
            return handler(self)
        except EbsError as error:
            return json_error(error)

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


def _match(pattern: re.Pattern[str], response: EBSResponse) -> re.Match[str]:
    found = pattern.search(response.parsed_url.path)
    if found is None:
        raise validation_error(f"Unexpected path {response.parsed_url.path}")
    return found


def _query_int(response: EBSResponse, name: str) -> int | None:
    raw = response.querystring.get(name)
    if not raw:
        return None
    value = raw[0] if isinstance(raw, list) else raw
    try:
        return int(value)
    except ValueError as exc:
        raise validation_error(f"{name} must be an integer, got {value!r}.") from exc


def _query_str(response: EBSResponse, name: str) -> str | None:
    raw = response.querystring.get(name)
    if not raw:
        return None
    return str(raw[0] if isinstance(raw, list) else raw)


def _index(raw: str) -> int:
    if not raw.isdigit():
        raise validation_error(f"BlockIndex must be a non-negative integer, got {raw!r}.")
    return int(raw)


def _header(response: EBSResponse, name: str) -> str | None:
    wanted = name.lower()
    for key, value in response.headers.items():
        if key.lower() == wanted:
            return str(value)
    return None


def _principal(response: EBSResponse) -> str:
    return f"arn:aws:iam::{response.current_account}:user/testing"


def _state(response: EBSResponse) -> EbsState:
    return state_of(ebs_backends[response.current_account][response.region])


def _ensure_known(response: EBSResponse, snapshot_id: str | None) -> None:
    """Snapshots made by EC2 (not StartSnapshot) read as empty completed snapshots, like an
    untouched volume's snapshot on AWS, instead of moto's KeyError → HTTP 500."""
    if not snapshot_id:
        return
    state = _state(response)
    if snapshot_id in state.snapshots:
        return
    ec2 = ebs_backends[response.current_account][response.region].ec2_backend
    snap = ec2.snapshots.get(snapshot_id)
    if snap is None:
        return
    with state.lock:
        state.snapshots.setdefault(
            snapshot_id,
            EbsSnapshot(
                snapshot_id=snapshot_id,
                owner_id=state.owner_id,
                volume_size=int(snap.volume_size),
                lineage=snapshot_id,
                start_time=state.now(),
                status=snap.status,
                encrypted=bool(snap.encrypted),
                kms_key_arn=snap.kms_key_id,
            ),
        )


@_aws_errors
def start_snapshot_honours_parent_and_block_size(self: EBSResponse) -> TYPE_RESPONSE:
    """StartSnapshot: 512 KiB blocks, ParentSnapshotId copy-on-write, ClientToken idempotency."""
    try:
        params = json.loads(self.body or b"{}")
    except ValueError as exc:
        raise validation_error("The request body is not valid JSON.") from exc
    state = _state(self)
    client_token = params.get("ClientToken")
    known = state.idempotent_start(client_token, params)
    if known is not None:
        return 201, _JSON_201, json.dumps(state.get(known).to_json())
    _ensure_known(self, params.get("ParentSnapshotId"))
    ec2 = ebs_backends[self.current_account][self.region].ec2_backend
    # Validate before creating the EC2 side, so a refused request leaves nothing behind.
    state.check_start(params)
    volume = ec2.create_volume(size=params["VolumeSize"], zone_name=f"{self.region}a")
    ec2_snapshot = ec2.create_snapshot(volume_id=volume.id, description=params.get("Description"))
    snapshot = state.start_snapshot(ec2_snapshot.id, params)
    state.remember_client_token(client_token, params, snapshot.snapshot_id)
    ec2_snapshot.status = "pending"  # EC2 shows it pending until CompleteSnapshot
    ec2_snapshot.encrypted = snapshot.encrypted
    ec2_snapshot.kms_key_id = snapshot.kms_key_arn
    if snapshot.tags:
        ec2_snapshot.add_tags({t["Key"]: t["Value"] for t in snapshot.tags})
    return 201, _JSON_201, json.dumps(snapshot.to_json())


@_aws_errors
def put_snapshot_block_validates(self: EBSResponse) -> TYPE_RESPONSE:
    """PutSnapshotBlock: 524288-byte data, SHA-256 checksum, index in the volume, pending only."""
    found = _match(_BLOCK_PATH, self)
    data = self.body if isinstance(self.body, bytes) else (self.body or "").encode("latin-1")
    checksum = _state(self).put_block(
        found["snapshot"],
        _index(found["index"]),
        data,
        data_length=_header(self, "x-amz-Data-Length"),
        checksum=_header(self, "x-amz-Checksum"),
        algorithm=_header(self, "x-amz-Checksum-Algorithm"),
        principal_arn=_principal(self),
    )
    headers = {
        **_JSON_201,
        "x-amz-Checksum": checksum,
        "x-amz-Checksum-Algorithm": CHECKSUM_ALGORITHM,
    }
    return 201, headers, "{}"


@_aws_errors
def complete_snapshot_checks_count(self: EBSResponse) -> TYPE_RESPONSE:
    """CompleteSnapshot: ChangedBlocksCount (and an optional aggregate checksum) must agree."""
    snapshot_id = _match(_COMPLETE_PATH, self)["snapshot"]
    state = _state(self)
    status = state.complete(
        snapshot_id,
        changed_blocks_count=_header(self, "x-amz-ChangedBlocksCount"),
        checksum=_header(self, "x-amz-Checksum"),
        algorithm=_header(self, "x-amz-Checksum-Algorithm"),
        aggregation=_header(self, "x-amz-Checksum-Aggregation-Method"),
    )
    ec2_snapshot = ebs_backends[self.current_account][self.region].ec2_backend.snapshots.get(
        snapshot_id
    )
    if ec2_snapshot is not None:
        ec2_snapshot.status = status
    return 202, {**_JSON, "status": 202}, json.dumps({"Status": status})


@_aws_errors
def get_snapshot_block_with_checksum(self: EBSResponse) -> TYPE_RESPONSE:
    """GetSnapshotBlock: token checked; x-amz-Checksum, -Checksum-Algorithm, -Data-Length sent."""
    found = _match(_BLOCK_PATH, self)
    _ensure_known(self, found["snapshot"])
    data, checksum = _state(self).get_block(
        found["snapshot"],
        _index(found["index"]),
        _query_str(self, "blockToken"),
        _principal(self),
    )
    headers = {
        "status": 200,
        "Content-Type": "application/octet-stream",
        "x-amz-Checksum": checksum,
        "x-amz-Checksum-Algorithm": CHECKSUM_ALGORITHM,
        "x-amz-Data-Length": str(BLOCK_SIZE),
    }
    return 200, headers, data


def _page_size(self: EBSResponse) -> int | None:
    """The client's MaxResults (validated by the model), lowered to the test's page cap if set."""
    requested = _query_int(self, "maxResults")
    cap = control.SETTINGS.page_cap
    if cap is None:
        return requested
    if requested is None:
        return cap
    if 100 <= requested <= 10_000:  # out-of-range values go on to the model, which refuses them
        return min(requested, cap)
    return requested


@_aws_errors
def list_snapshot_blocks_paginated_sorted(self: EBSResponse) -> TYPE_RESPONSE:
    """ListSnapshotBlocks: sorted by index, MaxResults / NextToken / StartingBlockIndex honoured."""
    snapshot_id = _match(_LIST_PATH, self)["snapshot"]
    _ensure_known(self, snapshot_id)
    listing = _state(self).list_blocks(
        snapshot_id,
        next_token=_query_str(self, "pageToken"),
        max_results=_page_size(self),
        starting_index=_query_int(self, "startingBlockIndex"),
        principal_arn=_principal(self),
        token_ttl=control.SETTINGS.page_token_ttl,
    )
    return 200, _JSON, json.dumps(listing.to_json("Blocks"))


@_aws_errors
def list_changed_blocks_union_and_lineage(self: EBSResponse) -> TYPE_RESPONSE:
    """ListChangedBlocks: both sides compared, lineage enforced, sorted and paginated."""
    second_id = _match(_LIST_PATH, self)["snapshot"]
    first_id = _query_str(self, "firstSnapshotId")
    _ensure_known(self, second_id)
    _ensure_known(self, first_id)
    listing = _state(self).list_changed_blocks(
        first_id,
        second_id,
        next_token=_query_str(self, "pageToken"),
        max_results=_page_size(self),
        starting_index=_query_int(self, "startingBlockIndex"),
        principal_arn=_principal(self),
        token_ttl=control.SETTINGS.page_token_ttl,
    )
    return 200, _JSON, json.dumps(listing.to_json("ChangedBlocks"))


HANDLERS: dict[str, Any] = {
    "start_snapshot": start_snapshot_honours_parent_and_block_size,
    "put_snapshot_block": put_snapshot_block_validates,
    "complete_snapshot": complete_snapshot_checks_count,
    "get_snapshot_block": get_snapshot_block_with_checksum,
    "list_snapshot_blocks": list_snapshot_blocks_paginated_sorted,
    "list_changed_blocks": list_changed_blocks_union_and_lineage,
}


def apply() -> None:
    for action, handler in HANDLERS.items():
        setattr(EBSResponse, action, handler)
