"""The bench's control plane inside the server: fault injection, request counters, settings.

HTTP endpoints under ``/_testbed/`` (JSON in, JSON out), served by ``ControlMiddleware`` in front
of moto's WSGI app:

- ``GET /_testbed/health`` → ``{"moto": "5.2.1"}``
- ``POST /_testbed/faults`` ``{"action": "GetSnapshotBlock", "count": 3, "kind": "throttle",
  "status": 429, "snapshot_id": "snap-…", "delay": 0.5, "message": "…", "code": "…"}`` — the next
  ``count`` matching requests fail (or, for ``kind="delay"``, are slowed down); ``DELETE`` clears.
  Kinds: ``throttle``, ``request_throttled``, ``slowdown``, ``unavailable``, ``internal``,
  ``access_denied``, ``delay``.
- ``GET /_testbed/counters`` → ``{"requests": {"GetSnapshotBlock": 12, …}, "faulted": {…}}``
  (every request that reached moto, faulted or not); ``DELETE`` resets them.
- ``POST /_testbed/config`` ``{"page_token_ttl": 0.5}`` — NextToken lifetime in seconds;
  ``{"page_cap": 100}`` — at most this many entries per List*Blocks page
  (default from ``TESTBED_PAGE_TOKEN_TTL``, else AWS's 3600).
- ``POST /_testbed/snapshots/<id>`` ``{"state": "error", "encrypted": true, "kms_key_id": "arn…",
  "kms_decrypt": false}`` — put a snapshot into a state a test needs.
- ``POST /_testbed/config`` ``{"snapshot_polls": 2}`` — DescribeSnapshots answers a new volume
  snapshot (CreateSnapshot[s]) stays pending for.
- ``POST /_testbed/volumes/<vol-id>/blocks`` ``{"writes": [{"index": 3, "data": "<base64>"},
  {"index": 4, "zero": true}]}`` — the instance writes to its volume (test-only hook);
  ``GET /_testbed/volumes/<vol-id>`` → ``{"blocks": {"3": "<base64 sha256>"}}``, what it holds.
- ``POST /_testbed/reset`` — moto's state, faults, counters and settings back to a fresh start.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from moto.core.common_types import TYPE_RESPONSE
from moto.core.responses import BaseResponse

from .ebs_model import DEFAULT_SNAPSHOT_POLLS, PAGE_TOKEN_TTL_SECONDS

PAGE_TOKEN_TTL_ENV = "TESTBED_PAGE_TOKEN_TTL"

# (EBS REST-JSON code, EC2 query code, HTTP status) per fault kind. EBS names its throttling
# error RequestThrottledException (service model) while SDKs also see ThrottlingException; EC2
# throttles with RequestLimitExceeded (503). All are in botocore's list of retryable codes.
FAULT_KINDS: dict[str, tuple[str, str, int]] = {
    "throttle": ("ThrottlingException", "RequestLimitExceeded", 400),
    "request_throttled": ("RequestThrottledException", "RequestLimitExceeded", 400),
    "slowdown": ("SlowDown", "SlowDown", 503),
    "unavailable": ("ServiceUnavailable", "Unavailable", 503),
    "internal": ("InternalServerException", "InternalError", 500),
    "access_denied": ("AccessDeniedException", "UnauthorizedOperation", 403),
}

#: Kinds that let the request through: slowed down, or answered with a damaged body.
PASS_THROUGH_KINDS = ("delay", "corrupt")

# The IAM service prefix each moto service name answers to, for AccessDenied messages.
IAM_PREFIX = {"ebs": "ebs", "ec2": "ec2", "kms": "kms", "s3": "s3"}


@dataclass
class Settings:
    page_token_ttl: float = field(
        default_factory=lambda: float(os.environ.get(PAGE_TOKEN_TTL_ENV, PAGE_TOKEN_TTL_SECONDS))
    )
    #: Largest page the server returns whatever MaxResults asks: AWS documents MaxResults as an
    #: upper bound only, so a client must follow NextToken; tests lower this to see many pages.
    page_cap: int | None = None
    #: DescribeSnapshots answers a new volume snapshot stays pending for (0: completed at once).
    snapshot_polls: int = DEFAULT_SNAPSHOT_POLLS


@dataclass
class Fault:
    action: str
    remaining: int
    kind: str
    status: int | None = None
    code: str | None = None
    message: str | None = None
    snapshot_id: str | None = None
    delay: float = 0.0
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def matches(self, action: str, path: str) -> bool:
        return (
            self.remaining > 0
            and self.action in (action, "*")
            and (self.snapshot_id is None or self.snapshot_id in path)
        )


SETTINGS = Settings()
_lock = threading.Lock()
_faults: list[Fault] = []
_requests: Counter[str] = Counter()
_faulted: Counter[str] = Counter()


def add_fault(spec: dict[str, Any]) -> Fault:
    kind = str(spec.get("kind", "throttle"))
    if kind not in FAULT_KINDS and kind not in PASS_THROUGH_KINDS:
        raise ValueError(
            f"unknown fault kind {kind!r}; known: {sorted(FAULT_KINDS)} and {PASS_THROUGH_KINDS}"
        )
    if not spec.get("action"):
        raise ValueError("a fault needs the API action it applies to, e.g. 'GetSnapshotBlock'")
    fault = Fault(
        action=str(spec["action"]),
        remaining=int(spec.get("count", 1)),
        kind=kind,
        status=int(spec["status"]) if spec.get("status") else None,
        code=spec.get("code"),
        message=spec.get("message"),
        snapshot_id=spec.get("snapshot_id"),
        delay=float(spec.get("delay", 0.0)),
    )
    with _lock:
        _faults.append(fault)
    return fault


def take_fault(action: str, path: str) -> Fault | None:
    """Count the request; the fault it triggers, if one is armed for it (used up by one)."""
    with _lock:
        _requests[action] += 1
        for fault in _faults:
            if fault.matches(action, path):
                fault.remaining -= 1
                if fault.kind != "delay":
                    _faulted[action] += 1
                return fault
    return None


def clear_faults() -> None:
    with _lock:
        _faults.clear()


def reset_counters() -> None:
    with _lock:
        _requests.clear()
        _faulted.clear()


def counters() -> dict[str, dict[str, int]]:
    with _lock:
        return {"requests": dict(_requests), "faulted": dict(_faulted)}


def render_fault(response: BaseResponse, fault: Fault, action: str) -> TYPE_RESPONSE:
    """The error a real endpoint would send, in the protocol of the service that was called."""
    ebs_code, ec2_code, default_status = FAULT_KINDS[fault.kind]
    status = fault.status or default_status
    service = response.service_name or "unknown"
    rest_json = service == "ebs"
    code = fault.code or (ebs_code if rest_json else ec2_code)
    message = fault.message or _fault_message(fault.kind, service, action, response)
    if rest_json:
        body: dict[str, str] = {"Message": message}
        if fault.kind == "access_denied":
            body["Reason"] = "UNAUTHORIZED_ACCOUNT"
        headers = {"status": status, "x-amzn-ErrorType": code, "Content-Type": "application/json"}
        return status, headers, json.dumps(body)
    request_id = uuid.uuid4()
    xml = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}</Code>'
        f"<Message>{_xml_escape(message)}</Message></Error></Errors>"
        f"<RequestID>{request_id}</RequestID></Response>"
    )
    return status, {"status": status, "Content-Type": "text/xml"}, xml


def _fault_message(kind: str, service: str, action: str, response: BaseResponse) -> str:
    if kind == "access_denied":
        iam_action = f"{IAM_PREFIX.get(service, service)}:{action}"
        principal = f"arn:aws:iam::{response.current_account}:user/testing"
        return (
            f"User: {principal} is not authorized to perform: {iam_action} because no "
            f"identity-based policy allows the {iam_action} action"
        )
    return {
        "throttle": "Rate exceeded",
        "request_throttled": "Rate exceeded",
        "slowdown": "Please reduce your request rate.",
        "unavailable": "The service is unavailable. Please try again shortly.",
        "internal": "An internal error has occurred.",
    }[kind]


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_original_call_action = BaseResponse.call_action


def call_action_with_faults_and_counters(self: BaseResponse) -> TYPE_RESPONSE:
    """Every AWS request passes here: count it by action, then fail or delay it if asked to."""
    action = self._get_action()
    fault = take_fault(action, self.path)
    if fault is None:
        return _original_call_action(self)
    if fault.kind == "delay":
        time.sleep(fault.delay)
        return _original_call_action(self)
    if fault.kind == "corrupt":
        return _corrupt_body(_original_call_action(self))
    return render_fault(self, fault, action)


def _corrupt_body(answer: TYPE_RESPONSE) -> TYPE_RESPONSE:
    """The real answer with one byte of its body flipped and its headers (checksum) kept.

    The body of GetSnapshotBlock is not covered by the signature (AWS EBS direct API docs): a
    corrupted transfer looks exactly like this to a client, and only x-amz-Checksum can tell.
    """
    status, headers, body = answer
    data = bytearray(body.encode("latin-1") if isinstance(body, str) else bytes(body))
    if data:
        data[len(data) // 2] ^= 0xFF
    return status, headers, bytes(data)


def apply() -> None:
    BaseResponse.call_action = call_action_with_faults_and_counters  # type: ignore[method-assign]


# -- the /_testbed/ HTTP endpoints ---------------------------------------------------------------

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class ControlMiddleware:
    """Serves ``/_testbed/…`` itself and hands everything else to moto."""

    PREFIX = "/_testbed/"

    def __init__(self, app: WsgiApp, moto_version: str):
        self.app = app
        self.moto_version = moto_version

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        if not path.startswith(self.PREFIX):
            return self.app(environ, start_response)
        method = environ.get("REQUEST_METHOD", "GET")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        try:
            spec = json.loads(raw) if raw else {}
            status, payload = self.handle(method, path[len(self.PREFIX) :], spec)
        except (ValueError, KeyError) as exc:
            status, payload = 400, {"error": str(exc)}
        body = json.dumps(payload).encode()
        start_response(
            f"{status} {'OK' if status < 400 else 'Error'}",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]

    def handle(self, method: str, route: str, spec: dict[str, Any]) -> tuple[int, Any]:
        if route == "health":
            return 200, {"moto": self.moto_version}
        if route == "faults":
            if method == "POST":
                return 200, {"id": add_fault(spec).id}
            if method == "DELETE":
                clear_faults()
                return 200, {}
            with _lock:
                return 200, [vars(f) for f in _faults if f.remaining > 0]
        if route == "counters":
            if method == "DELETE":
                reset_counters()
                return 200, {}
            return 200, counters()
        if route == "config":
            if method == "POST" and "page_token_ttl" in spec:
                SETTINGS.page_token_ttl = float(spec["page_token_ttl"])
            if method == "POST" and "page_cap" in spec:
                cap = spec["page_cap"]
                SETTINGS.page_cap = None if cap is None else int(cap)
            if method == "POST" and "snapshot_polls" in spec:
                SETTINGS.snapshot_polls = max(0, int(spec["snapshot_polls"]))
            return 200, {
                "page_token_ttl": SETTINGS.page_token_ttl,
                "page_cap": SETTINGS.page_cap,
                "snapshot_polls": SETTINGS.snapshot_polls,
            }
        if route.startswith("snapshots/") and method == "POST":
            from .snapshot_states import set_snapshot_state

            return 200, set_snapshot_state(route.split("/", 1)[1], spec)
        if route.startswith("volumes/"):
            from .ec2_volumes import volume_digests, write_volume

            parts = route.split("/")
            if method == "POST" and len(parts) == 3 and parts[2] == "blocks":
                return 200, write_volume(spec, parts[1])
            if method == "GET" and len(parts) == 2:
                return 200, volume_digests(spec, parts[1])
        if route == "reset" and method == "POST":
            from moto.moto_api._internal.models import moto_api_backend

            moto_api_backend.reset()
            clear_faults()
            reset_counters()
            SETTINGS.page_token_ttl = Settings().page_token_ttl
            SETTINGS.page_cap = None
            SETTINGS.snapshot_polls = DEFAULT_SNAPSHOT_POLLS
            return 200, {}
        return 404, {"error": f"no control endpoint {method} {self.PREFIX}{route}"}
