"""GetSnapshotBlock on a lean path: botocore signs and parses errors, http.client carries the bytes.

Why not the boto3 client for this one call: an export makes one GetSnapshotBlock per 512 KiB, and
botocore's generic request path (parameter validation, a dozen event hooks, header dictionaries,
the response parser) costs ~1.2 ms of CPU per request where a signed GET costs ~0.5 ms — measured
here at 2.4–3.2 against 1.4–1.6 CPU-seconds per GiB. At AWS's ~500 MiB/s per snapshot that is a
core. Everything that must match AWS's contract stays botocore's own: the credential chain
(refreshed on expiry), the endpoint the client resolved (``AWS_ENDPOINT_URL_EBS`` …), the SigV4
signer, the CA bundle and proxy settings, and the rest-json error parser — a failed request
raises the same ``ClientError`` the client would, so ``aws.translate`` names it the same way.
The control-plane calls (listings, describes) stay on the boto3 clients.

Why the standard library's ``http.client`` and not urllib3 (which botocore uses): one request
through a urllib3 pool costs ~150 µs more CPU (its pool, timeout and response objects) — measured
here at 1.8–2.2 against 1.4–1.6 CPU-seconds per GiB at 8 and 32 requests in flight. What urllib3
would add is not needed on this path: it makes one kind of request to one host, keeps a few
keep-alive connections (``_Connections``), and retries by itself. One thing it cannot do is TLS to
an ``https://`` proxy (TLS inside TLS); with such a proxy there is no lean path
(``LeanPathUnavailable``) and the export reads through the boto3 client.

Retries replace botocore's adaptive mode for this call: throttling, 5xx answers and broken
connections are retried up to ``MAX_ATTEMPTS`` times with full-jitter exponential backoff, and a
throttled answer halves the requests this reader lets into flight (``AdaptiveLimit``), which then
grow back one at a time — the "back off and lower concurrency" the EBS quotas ask for.
"""

from __future__ import annotations

import http.client
import random
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast
from urllib.parse import quote, urlsplit

import botocore.awsrequest
import botocore.exceptions
import botocore.httpsession
import botocore.parsers
import botocore.utils
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from imagekit import __version__
from imagekit.export.aws import MAX_ATTEMPTS, THROTTLING_CODES

#: HTTP statuses worth another attempt (AWS: throttled or a server-side failure).
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Full-jitter exponential backoff: attempt n sleeps uniform(0, min(CAP, BASE * 2**n)) seconds.
BACKOFF_BASE = 0.1
BACKOFF_CAP = 20.0
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0

_OPERATION = "GetSnapshotBlock"


def backoff_delay(attempt: int, rng: Callable[[float, float], float] = random.uniform) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based)."""
    return rng(0.0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt))


class AdaptiveLimit:
    """Requests in flight, at most ``limit``: halved on throttling, +1 after a limit's successes.

    Additive increase, multiplicative decrease, as TCP does: one throttled answer quickly brings
    the load under the quota, and the limit creeps back up while the server keeps answering.
    """

    def __init__(self, ceiling: int):
        self.ceiling = max(1, ceiling)
        self.limit = self.ceiling
        self.lowest = self.ceiling
        self._active = 0
        self._streak = 0
        self._cond = threading.Condition()

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._cond:
            while self._active >= self.limit:
                self._cond.wait()
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify()

    def throttled(self) -> None:
        with self._cond:
            self.limit = max(1, self.limit // 2)
            self.lowest = min(self.lowest, self.limit)
            self._streak = 0

    def succeeded(self) -> None:
        if self.limit == self.ceiling:  # the common case: no lock, nothing to grow
            return
        with self._cond:
            self._streak += 1
            if self._streak >= self.limit:
                self._streak = 0
                self.limit = min(self.ceiling, self.limit + 1)
                self._cond.notify()


class _Body:
    """The ``BlockData`` a boto3 answer carries: a ``read()`` of bytes already received."""

    __slots__ = ("_data",)

    def __init__(self, data: bytes):
        self._data = data

    def read(self) -> bytes:
        data, self._data = self._data, b""
        return data


class LeanPathUnavailable(Exception):
    """The endpoint's settings need a transport this path does not have (an HTTPS proxy)."""


class _Connections:
    """Idle keep-alive connections to the endpoint (or the proxy in front of it), reused LIFO.

    The reader takes one inside its ``AdaptiveLimit`` slot and puts it back after a whole answer,
    so no more connections are open than requests were ever in flight. A connection that failed
    is closed, never put back. ``deque`` appends and pops are atomic: no lock.
    """

    def __init__(self, factory: Callable[[], http.client.HTTPConnection]):
        self._factory = factory
        self._idle: deque[http.client.HTTPConnection] = deque()

    def take(self) -> http.client.HTTPConnection:
        try:
            return self._idle.pop()
        except IndexError:
            return self._factory()

    def give_back(self, conn: http.client.HTTPConnection) -> None:
        self._idle.append(conn)

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()


class BlockReader:
    """``get_snapshot_block`` with the boto3 client's signature and answer, on the lean path.

    Thread-safe; keeps at most as many connections as requests were in flight at once.
    """

    def __init__(
        self,
        *,
        endpoint_url: str,
        region: str,
        credentials: Any,
        service_model: Any,
        concurrency: int,
        ca_bundle: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.endpoint_url = endpoint_url.rstrip("/")
        self._region = region
        self._credentials = credentials
        self._signing_name = service_model.signing_name
        self._output_shape = service_model.operation_model(_OPERATION).output_shape
        self._parser = botocore.parsers.create_parser(service_model.protocol)
        self._sleep = sleep
        self.limit = AdaptiveLimit(concurrency)
        self.retries = 0
        self._agent = f"imagekit/{__version__} botocore/{botocore.__version__}"
        parts = urlsplit(self.endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an HTTP endpoint: {self.endpoint_url}")
        self._prefix = parts.path
        self._tls: ssl.SSLContext | None = None
        if parts.scheme == "https":
            # Verified against the bundle the AWS settings name, hostname checked: what botocore
            # does for its own clients.
            self._tls = ssl.create_default_context(cafile=ca_bundle)
        settings = botocore.httpsession.ProxyConfiguration(
            proxies=botocore.utils.get_environ_proxies(self.endpoint_url)
        )
        proxy = settings.proxy_url_for(self.endpoint_url)
        host, port = parts.hostname, parts.port
        self._proxy_headers: dict[str, str] = {}
        self._tunnel: tuple[str, int | None, dict[str, str]] | None = None
        self._proxied = False
        if proxy:
            via = urlsplit(proxy)
            if via.scheme == "https" or not via.hostname:
                raise LeanPathUnavailable(f"proxy {via.scheme}://{via.hostname}:{via.port}")
            auth = settings.proxy_headers_for(proxy)
            if self._tls is None:
                # Plain HTTP through a proxy: absolute URLs, the proxy's credentials on each.
                self._proxied = True
                self._proxy_headers = auth
            else:
                # HTTPS through a proxy: a CONNECT tunnel, then TLS with the endpoint itself.
                self._tunnel = (host, port, auth)
            host, port = via.hostname, via.port or 80
        self._host, self._port = host, port
        self._connections = _Connections(self._connect)

    @classmethod
    def from_client(cls, sess: Any, ebs: Any, concurrency: int, **kwargs: Any) -> BlockReader:
        """A reader for the same endpoint, region and credentials as the boto3 ``ebs`` client."""
        credentials = sess.get_credentials()
        if credentials is None:
            raise botocore.exceptions.NoCredentialsError()
        ca_bundle = sess._session.get_config_variable("ca_bundle")
        return cls(
            endpoint_url=ebs.meta.endpoint_url,
            region=ebs.meta.region_name,
            credentials=credentials,
            service_model=ebs.meta.service_model,
            concurrency=concurrency,
            ca_bundle=ca_bundle or botocore.httpsession.get_cert_path(True),
            **kwargs,
        )

    @staticmethod
    def path(snapshot_id: str, index: int, token: str) -> str:
        """The request path, encoded as botocore's rest-json serializer encodes it."""
        return (
            f"/snapshots/{quote(snapshot_id, safe='')}/blocks/{index}"
            f"?blockToken={quote(token, safe='')}"
        )

    def _signed_headers(self, url: str) -> dict[str, str]:
        request = AWSRequest("GET", url)
        # Frozen per request: a refreshable credential may rotate between two signatures.
        signer = SigV4Auth(
            self._credentials.get_frozen_credentials(), self._signing_name, self._region
        )
        signer.add_auth(request)
        headers = dict(request.headers.items())
        headers["User-Agent"] = self._agent
        return headers

    def get_snapshot_block(
        self, *, SnapshotId: str, BlockIndex: int, BlockToken: str
    ) -> dict[str, Any]:
        path = self.path(SnapshotId, BlockIndex, BlockToken)
        url = self.endpoint_url + path
        target = url if self._proxied else self._prefix + path
        attempt = 0
        while True:
            attempt += 1
            try:
                status, headers, body = self._send(url, target)
            except ssl.SSLCertVerificationError as exc:
                # Not the network: the certificate is not trusted. Retrying cannot help.
                raise botocore.exceptions.SSLError(
                    endpoint_url=self.endpoint_url, error=exc
                ) from exc
            except (OSError, http.client.HTTPException) as exc:
                # Refused, reset, timed out, cut short or garbled (other TLS errors included):
                # another attempt on a new connection may well succeed.
                if attempt >= MAX_ATTEMPTS:
                    raise botocore.exceptions.EndpointConnectionError(
                        endpoint_url=self.endpoint_url, error=exc
                    ) from exc
                self._retry(attempt, throttled=False)
                continue
            if status == 200:
                self.limit.succeeded()
                return {
                    "BlockData": _Body(body),
                    "Checksum": headers.get("x-amz-Checksum"),
                    "ChecksumAlgorithm": headers.get("x-amz-Checksum-Algorithm"),
                    "DataLength": int(headers.get("x-amz-Data-Length", len(body))),
                }
            parsed = self._parser.parse(
                {
                    "status_code": status,
                    "headers": botocore.awsrequest.HeadersDict(headers.items()),
                    "body": body,
                },
                self._output_shape,
            )
            code = str(parsed.get("Error", {}).get("Code", ""))
            throttled = code in THROTTLING_CODES or status == 429
            if (throttled or status in RETRY_STATUSES) and attempt < MAX_ATTEMPTS:
                self._retry(attempt, throttled=throttled)
                continue
            raise botocore.exceptions.ClientError(parsed, _OPERATION)

    def _connect(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection
        if self._tls is None:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=CONNECT_TIMEOUT)
        else:
            conn = http.client.HTTPSConnection(
                self._host, self._port, timeout=CONNECT_TIMEOUT, context=self._tls
            )
        if self._tunnel is not None:
            host, port, auth = self._tunnel
            conn.set_tunnel(host, port, headers=auth)
        return conn

    def _send(self, url: str, target: str) -> tuple[int, Any, bytes]:
        # Signed before taking a slot: with few requests in flight, the next request leaves as
        # soon as one finishes, instead of after its signature (~50 µs of CPU) and a thread hop.
        headers = self._signed_headers(url)
        headers.update(self._proxy_headers)
        with self.limit.slot():
            conn = self._connections.take()
            kept = conn.sock is not None
            try:
                status, answer, body = self._exchange(conn, target, headers)
            except (ConnectionResetError, BrokenPipeError):
                if not kept:
                    raise
                # A kept-alive connection the server closed while it sat idle (servers drop
                # idle ones after a while): the request never reached it. Once more on a new
                # connection, not counted as a retry.
                conn = self._connect()
                status, answer, body = self._exchange(conn, target, headers)
            # An answer that ended the connection (``Connection: close``) left it closed; the
            # next request on it reconnects.
            self._connections.give_back(conn)
        return status, answer, body

    @staticmethod
    def _exchange(
        conn: http.client.HTTPConnection, target: str, headers: dict[str, str]
    ) -> tuple[int, Any, bytes]:
        """One request and its whole answer on ``conn``, which is closed if anything fails."""
        try:
            if conn.sock is None:
                # Connect (tunnel and TLS handshake included) within CONNECT_TIMEOUT, then
                # wait up to READ_TIMEOUT for each read of the answer.
                conn.connect()
                cast(socket.socket, conn.sock).settimeout(READ_TIMEOUT)
            conn.request("GET", target, headers=headers)
            response = conn.getresponse()
            return response.status, response.headers, response.read()
        except BaseException:
            conn.close()
            raise

    def close(self) -> None:
        """Close the idle connections (those in use close when their request fails)."""
        self._connections.close()

    def _retry(self, attempt: int, *, throttled: bool) -> None:
        if throttled:
            self.limit.throttled()
        self.retries += 1
        self._sleep(backoff_delay(attempt))


__all__ = ["AdaptiveLimit", "BlockReader", "LeanPathUnavailable", "backoff_delay"]
