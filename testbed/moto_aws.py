"""The AWS emulator of the bench: moto's server with the AWS-contract patches applied in-process.

Server side (inside the child process)::

    python -m testbed.moto_aws serve --port 5123

Test side::

    with MotoAWS() as aws:
        ebs = aws.client("ebs")
        aws.add_fault("GetSnapshotBlock", count=2, kind="throttle")
        ...
        assert aws.counters()["GetSnapshotBlock"] == 7

moto keeps every block in RAM and ``reset`` does not give memory back, so start one server per
test session (``testbed.pytest_plugin`` does) rather than one per test, and keep disks small.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from testbed.process import ServerProcess, free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
"""moto's default account: what OwnerId, ARNs and the control endpoints use."""

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
PAGE_TOKEN_TTL_ENV = (
    "TESTBED_PAGE_TOKEN_TTL"  # same name as moto_patches.control (not imported: no moto here)
)


@dataclass(frozen=True)
class Counters:
    """Requests received per API action (faulted ones included), and how many faulted."""

    requests: Mapping[str, int]
    faulted: Mapping[str, int]

    def __getitem__(self, action: str) -> int:
        return self.requests.get(action, 0)


class MotoAWS:
    """A patched moto server on a free 127.0.0.1 port, for one test session (or demo, or bench)."""

    def __init__(
        self,
        log_path: Path | None = None,
        port: int | None = None,
        page_token_ttl: float | None = None,
        region: str = REGION,
    ):
        self.port = port or free_port()
        self.region = region
        self.log_path = log_path or Path(tempfile.gettempdir()) / f"imagekit-moto-{self.port}.log"
        env = {
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])
            ),
            "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
        }
        if page_token_ttl is not None:
            env[PAGE_TOKEN_TTL_ENV] = str(page_token_ttl)
        self.server = ServerProcess(
            [sys.executable, "-m", "testbed.moto_aws", "serve", "--port", str(self.port)],
            port=self.port,
            log_path=self.log_path,
            env=env,
        )

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> MotoAWS:
        self.server.start()
        self._control("GET", "health")  # the patches loaded, not just a port that answers
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> MotoAWS:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what clients need ------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    @property
    def env(self) -> dict[str, str]:
        """Environment for a process (the imagekit CLI) that should talk to this emulator."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            **CREDENTIALS,
        }

    def client(self, service: str, max_attempts: int = 1, **config: Any) -> Any:
        """A plain boto3 client bound to the emulator.

        ``max_attempts`` counts every attempt (botocore's ``total_max_attempts``): the default 1
        lets errors surface at once. Note botocore's own ``retries={"max_attempts": 1}`` means
        one *retry*, i.e. two attempts.
        """
        import boto3
        from botocore.config import Config

        session = boto3.session.Session(
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=self.region,
        )
        cfg = Config(retries={"total_max_attempts": max_attempts, "mode": "standard"}, **config)
        make_client: Any = session.client  # boto3-stubs overloads need a literal name
        return make_client(service, endpoint_url=self.endpoint, config=cfg)

    # -- the control plane (see testbed/moto_patches/control.py) ---------------------------

    def add_fault(
        self,
        action: str,
        count: int = 1,
        kind: str = "throttle",
        *,
        status: int | None = None,
        code: str | None = None,
        message: str | None = None,
        snapshot_id: str | None = None,
        delay: float = 0.0,
    ) -> str:
        """Make the next ``count`` requests of ``action`` ('*' for any) fail with ``kind``."""
        spec: dict[str, Any] = {"action": action, "count": count, "kind": kind, "delay": delay}
        for key, value in (
            ("status", status),
            ("code", code),
            ("message", message),
            ("snapshot_id", snapshot_id),
        ):
            if value is not None:
                spec[key] = value
        return str(self._control("POST", "faults", spec)["id"])

    faults = add_fault

    def pending_faults(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._control("GET", "faults")
        return result

    def clear_faults(self) -> None:
        self._control("DELETE", "faults")

    def counters(self) -> Counters:
        raw = self._control("GET", "counters")
        return Counters(requests=raw["requests"], faulted=raw["faulted"])

    def reset_counters(self) -> None:
        self._control("DELETE", "counters")

    def set_page_token_ttl(self, seconds: float) -> None:
        """How long a NextToken stays valid (AWS: 3600 s); tests shorten it to force expiry."""
        self._control("POST", "config", {"page_token_ttl": seconds})

    def set_page_cap(self, entries: int | None) -> None:
        """At most ``entries`` blocks per List*Blocks page (None: only MaxResults limits)."""
        self._control("POST", "config", {"page_cap": entries})

    def set_snapshot_polls(self, polls: int) -> None:
        """DescribeSnapshots answers a new volume snapshot stays pending for (0: at once)."""
        self._control("POST", "config", {"snapshot_polls": polls})

    def write_volume(self, volume_id: str, writes: Mapping[int, bytes | None]) -> int:
        """The instance writes blocks to its volume (index → data, zero-padded; None: zeroed)."""
        entries = [
            {"index": i, "zero": True}
            if data is None
            else {"index": i, "data": base64.b64encode(data).decode()}
            for i, data in sorted(writes.items())
        ]
        spec = {"region": self.region, "writes": entries}
        return int(self._control("POST", f"volumes/{volume_id}/blocks", spec)["written"])

    def volume_blocks(self, volume_id: str) -> dict[int, str]:
        """What the volume holds now: block index → base64 SHA-256 (unwritten blocks absent)."""
        raw = self._control("GET", f"volumes/{volume_id}")["blocks"]
        return {int(i): str(c) for i, c in raw.items()}

    def set_snapshot_state(
        self,
        snapshot_id: str,
        *,
        state: str | None = None,
        encrypted: bool | None = None,
        kms_key_id: str | None = None,
        kms_decrypt: bool | None = None,
    ) -> dict[str, Any]:
        """Put a snapshot into ``error`` state, or make it KMS-encrypted and undecryptable."""
        spec: dict[str, Any] = {"region": self.region}
        spec.update(
            {
                k: v
                for k, v in (
                    ("state", state),
                    ("encrypted", encrypted),
                    ("kms_key_id", kms_key_id),
                    ("kms_decrypt", kms_decrypt),
                )
                if v is not None
            }
        )
        result: dict[str, Any] = self._control("POST", f"snapshots/{snapshot_id}", spec)
        return result

    def reset(self) -> None:
        """Forget every resource, fault, counter and setting (moto keeps the memory)."""
        self._control("POST", "reset")

    def _control(self, method: str, route: str, payload: Any = None) -> Any:
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(
            f"{self.endpoint}/_testbed/{route}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise RuntimeError(
                f"{method} /_testbed/{route}: {exc.code} {exc.read().decode()}"
            ) from exc


# -- server side ------------------------------------------------------------------------------


def serve(port: int, host: str = "127.0.0.1") -> None:
    """Run the patched moto server in this process until it is signalled."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("the AWS emulator listens on loopback only")
    # Before moto is imported: no public AMI catalogue, so DescribeImages shows only seeded AMIs.
    os.environ["MOTO_EC2_LOAD_DEFAULT_AMIS"] = "false"
    from testbed.moto_patches import MotoVersionError, apply_all

    try:
        version = apply_all()
    except MotoVersionError as exc:
        raise SystemExit(f"error: {exc}") from exc

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    from testbed.moto_patches.control import ControlMiddleware

    # One log line per 512 KiB block would swamp the log; keep warnings and errors only.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = ControlMiddleware(DomainDispatcherApplication(create_backend_app), version)
    # werkzeug's threaded HTTP/1.0 server, as moto_server uses (HTTP/1.1 keep-alive measured no
    # faster here: the server is bound by Python, not by TCP handshakes).
    server = make_server(host, port, app, threaded=True)
    print(f"patched moto {version} on http://{host}:{port}", flush=True)
    server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m testbed.moto_aws")
    sub = parser.add_subparsers(dest="command", required=True)
    serve_cmd = sub.add_parser("serve", help="run the patched moto server")
    serve_cmd.add_argument("--port", type=int, required=True)
    serve_cmd.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.port, args.host)


if __name__ == "__main__":
    main()
