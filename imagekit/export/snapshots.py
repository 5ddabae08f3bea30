"""The EC2 side of an instance export: take a snapshot set, wait for it, find and delete ours.

Edge module (boto3 calls only; the decisions are ``lifecycle``'s). CreateSnapshots and
DescribeSnapshots are throttled per account (``RequestLimitExceeded``), and CreateSnapshots also
meets the quota of pending snapshots per account and region (``ResourceLimitExceeded``,
``SnapshotCreationPerVolumeRateExceeded``): both are waited out here with full-jitter backoff,
and a run that still meets them says which one stopped it.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

import botocore.exceptions

from imagekit.errors import ExportError, InputError
from imagekit.export.aws import THROTTLING_CODES, error_code, translate
from imagekit.export.lifecycle import ManagedSnapshot, is_ours, parse_snapshot, tag_filters
from imagekit.progress import NullProgress, Progress

log = logging.getLogger(__name__)

#: CreateSnapshots answers when too many snapshots are in progress (a quota, not a rate).
QUOTA_CODES = frozenset({"ResourceLimitExceeded", "SnapshotCreationPerVolumeRateExceeded"})
#: Attempts per call before the run gives up, and the backoff: uniform(0, min(CAP, BASE * 2^n)).
ATTEMPTS = 8
BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0
#: DescribeSnapshots polls while a set is pending: 0.5 s, doubling up to 15 s (AWS takes minutes
#: for a first snapshot, seconds for a small increment; DescribeSnapshots is throttled per account).
FIRST_POLL = 0.5
POLL_INTERVAL = 15.0
WAIT_TIMEOUT = 4 * 3600.0

T = TypeVar("T")
Sleep = Callable[[float], None]


def with_backoff(
    call: Callable[[], T],
    operation: str,
    subject: str,
    *,
    sleep: Sleep = time.sleep,
    attempts: int = ATTEMPTS,
    rng: Callable[[float, float], float] = random.uniform,
) -> T:
    """``call()``, retried while AWS throttles or the pending-snapshot quota is full."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except botocore.exceptions.ClientError as exc:
            code = error_code(exc)
            if code not in THROTTLING_CODES and code not in QUOTA_CODES:
                raise translate(exc, operation, subject) from exc
            if attempt == attempts:
                what = (
                    "the quota of pending snapshots is full"
                    if code in QUOTA_CODES
                    else "AWS throttled the requests"
                )
                raise ExportError(
                    f"{operation} on {subject}: {what} ({code}), {attempts} attempts",
                    hint="fewer instances per run, a longer schedule interval, or a quota "
                    "increase (Service Quotas: EBS)"
                    if code in QUOTA_CODES
                    else "retry later, or run fewer exports at once",
                    transient=True,
                ) from exc
            delay = rng(0.0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt))
            log.warning("%s on %s: %s; retrying in %.1f s", operation, subject, code, delay)
            sleep(delay)
        except botocore.exceptions.BotoCoreError as exc:
            raise translate(exc, operation, subject) from exc
    raise AssertionError("unreachable")


def create_set(
    ec2: Any,
    instance_id: str,
    tags: Mapping[str, str],
    *,
    exclude_boot_volume: bool = False,
    sleep: Sleep = time.sleep,
) -> list[dict[str, Any]]:
    """One crash-consistent snapshot of every volume of the instance (CreateSnapshots)."""
    spec: dict[str, Any] = {"InstanceId": instance_id, "ExcludeBootVolume": exclude_boot_volume}
    tag_list = [{"Key": k, "Value": v} for k, v in tags.items()]
    answer = with_backoff(
        lambda: ec2.create_snapshots(
            InstanceSpecification=spec,
            Description=f"imagekit {tags.get('imagekit:plan', '')} {instance_id}".strip(),
            TagSpecifications=[{"ResourceType": "snapshot", "Tags": tag_list}],
        ),
        "CreateSnapshots",
        instance_id,
        sleep=sleep,
    )
    return list(answer.get("Snapshots", []))


def describe(ec2: Any, snapshot_ids: Sequence[str], *, sleep: Sleep = time.sleep) -> list[Any]:
    answer = with_backoff(
        lambda: ec2.describe_snapshots(SnapshotIds=list(snapshot_ids)),
        "DescribeSnapshots",
        ", ".join(snapshot_ids),
        sleep=sleep,
    )
    return list(answer.get("Snapshots", []))


def list_managed(
    ec2: Any, plan: str, role: str, instance_id: str, *, sleep: Sleep = time.sleep
) -> list[dict[str, Any]]:
    """This plan, role and instance's snapshots, by tag, checked again against their tags."""
    found: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        args: dict[str, Any] = {
            "OwnerIds": ["self"],
            "Filters": tag_filters(plan, role, instance_id),
        }
        if token:
            args["NextToken"] = token
        page = with_backoff(
            partial(ec2.describe_snapshots, **args),
            "DescribeSnapshots",
            instance_id,
            sleep=sleep,
        )
        found += [s for s in page.get("Snapshots", []) if is_ours(s, plan, role, instance_id)]
        token = page.get("NextToken")
        if not token:
            return found


def wait_completed(
    ec2: Any,
    snapshot_ids: Sequence[str],
    *,
    progress: Progress | None = None,
    sleep: Sleep = time.sleep,
    poll_interval: float = POLL_INTERVAL,
    timeout: float = WAIT_TIMEOUT,
    clock: Callable[[], float] = time.monotonic,
) -> list[ManagedSnapshot]:
    """Poll until every snapshot is completed; the bar shows the least advanced one's Progress."""
    bar = progress or NullProgress()
    bar.start(f"snapshots {', '.join(snapshot_ids)}", 100.0)
    deadline = clock() + timeout
    polls = 0
    try:
        while True:
            snaps = [parse_snapshot(s) for s in describe(ec2, snapshot_ids, sleep=sleep)]
            failed = [s for s in snaps if s.state in ("error", "recoverable")]
            if failed:
                raise ExportError(
                    f"snapshot {failed[0].snapshot_id} of {failed[0].volume_id} is in the "
                    f"{failed[0].state} state",
                    hint="AWS could not complete it; the next run removes it and takes a new one",
                )
            if len(snaps) < len(snapshot_ids):
                gone = sorted(set(snapshot_ids) - {s.snapshot_id for s in snaps})
                raise ExportError(f"snapshot {gone[0]} disappeared while it was being taken")
            bar.update(min(_percent(s.progress, s.state) for s in snaps))
            if all(s.state == "completed" for s in snaps):
                return snaps
            if clock() > deadline:
                raise ExportError(
                    f"snapshots {', '.join(snapshot_ids)} not completed after {timeout:g} s",
                    hint="the next run reuses or removes them",
                    transient=True,
                )
            sleep(min(poll_interval, FIRST_POLL * 2**polls))
            polls += 1
    finally:
        bar.finish()


def _percent(progress: str, state: str) -> float:
    try:
        return float(progress.rstrip("%"))
    except ValueError:
        return 100.0 if state == "completed" else 0.0


def delete_checked(
    ec2: Any,
    doomed: Sequence[ManagedSnapshot],
    plan: str,
    role: str,
    instance_id: str,
    *,
    sleep: Sleep = time.sleep,
) -> list[str]:
    """Delete each snapshot after describing it once more and finding imagekit's tags on it."""
    deleted = []
    for snap in doomed:
        current = describe_one(ec2, snap.snapshot_id, sleep=sleep)
        if current is None:
            continue  # already gone
        if not is_ours(current, plan, role, instance_id):
            log.error("not deleting %s: its tags are not imagekit's for %s", snap.snapshot_id, role)
            continue
        try:
            ec2.delete_snapshot(SnapshotId=snap.snapshot_id)
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) == "InvalidSnapshot.NotFound":
                continue
            raise translate(exc, "DeleteSnapshot", snap.snapshot_id) from exc
        deleted.append(snap.snapshot_id)
    return deleted


def describe_one(ec2: Any, snapshot_id: str, *, sleep: Sleep = time.sleep) -> Any:
    try:
        found = describe(ec2, [snapshot_id], sleep=sleep)
    except InputError as exc:  # translate's InvalidSnapshot.NotFound: gone meanwhile
        if "not found" in exc.message.lower():
            return None
        raise
    return found[0] if found else None


__all__ = [
    "create_set",
    "delete_checked",
    "describe",
    "list_managed",
    "wait_completed",
    "with_backoff",
]
