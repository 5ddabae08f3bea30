"""The lean GetSnapshotBlock path: same request as botocore's, signed right, retried, throttled.

Against the AWS emulator over real HTTP (moto, corrected), and against a small capturing HTTP
server on 127.0.0.1 where the wire request itself has to be inspected (headers, signature, proxy)
— moto does not check signatures.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import http.server
import ipaddress
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import boto3
import botocore.awsrequest
import botocore.credentials
import botocore.exceptions
import pytest
from botocore.auth import SigV4Auth
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from imagekit.errors import ExportError
from imagekit.export.aws import MAX_ATTEMPTS, client, session, translate
from imagekit.export.blocks import EBS_BLOCK_SIZE, BlockRef, fetch_block, list_snapshot_blocks
from imagekit.export.dataplane import (
    BACKOFF_BASE,
    BACKOFF_CAP,
    AdaptiveLimit,
    BlockReader,
    LeanPathUnavailable,
    backoff_delay,
)
from imagekit.export.job import block_reader
from imagekit.export.source import EbsVolumeSource, VolumeStats
from imagekit.store.identity import Identity
from imagekit.store.ingest import ingest
from imagekit.store.repository import Repository
from testbed.moto_aws import MotoAWS
from testbed.seed_ami import VolumeSpec, seed_ami
from tests.store.helpers import MemoryBackend

REGION = "us-east-1"
TOKEN = "AAUB+some/token==with+odd/chars"


# -- pure parts -------------------------------------------------------------------------------


def test_backoff_is_full_jitter_exponential_and_capped() -> None:
    def top(lo: float, hi: float) -> float:
        assert lo == 0.0
        return hi

    assert backoff_delay(1, top) == pytest.approx(BACKOFF_BASE * 2)
    assert backoff_delay(3, top) == pytest.approx(BACKOFF_BASE * 8)
    assert backoff_delay(30, top) == BACKOFF_CAP
    assert all(0.0 <= backoff_delay(4) <= BACKOFF_BASE * 16 for _ in range(50))


def test_adaptive_limit_halves_on_throttling_and_grows_back_one_at_a_time() -> None:
    limit = AdaptiveLimit(16)
    limit.throttled()
    limit.throttled()
    assert (limit.limit, limit.lowest) == (4, 4)
    for _ in range(3):
        limit.succeeded()
    assert limit.limit == 4  # a full round of successes at the current limit first
    limit.succeeded()
    assert limit.limit == 5
    for _ in range(200):
        limit.succeeded()
    assert limit.limit == 16  # never above the ceiling
    for _ in range(10):
        limit.throttled()
    assert limit.limit == 1  # never below one


def test_adaptive_limit_holds_requests_beyond_the_limit() -> None:
    limit = AdaptiveLimit(4)
    limit.throttled()  # 2 in flight at most
    inside, peak, lock = 0, 0, threading.Lock()
    release = threading.Event()

    def work() -> None:
        nonlocal inside, peak
        with limit.slot():
            with lock:
                inside += 1
                peak = max(peak, inside)
            release.wait(0.2)
            with lock:
                inside -= 1

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 2


def test_path_is_encoded_exactly_as_botocore_serializes_it() -> None:
    """Same URL as the client's → the same canonical request → the same SigV4 signature."""
    sess = _sess()
    ebs = sess.client("ebs", endpoint_url="http://127.0.0.1:9/prefix")
    sent: list[str] = []

    class Sent(Exception):
        pass

    def capture(request: Any, **_: Any) -> None:
        sent.append(request.url)
        raise Sent  # nothing goes out

    ebs.meta.events.register("before-send.ebs.GetSnapshotBlock", capture)
    with pytest.raises(Sent):
        ebs.get_snapshot_block(SnapshotId="snap-0123abcd", BlockIndex=77, BlockToken=TOKEN)
    reader = BlockReader.from_client(sess, ebs, 2)
    assert reader.endpoint_url + reader.path("snap-0123abcd", 77, TOKEN) == sent[0]


def _sess() -> boto3.session.Session:
    return boto3.session.Session(
        aws_access_key_id="a", aws_secret_access_key="b", region_name=REGION
    )


# -- against the emulator ---------------------------------------------------------------------


@pytest.fixture
def aws_env(aws: MotoAWS, monkeypatch: pytest.MonkeyPatch) -> MotoAWS:
    for key, value in aws.env.items():
        monkeypatch.setenv(key, value)
    return aws


@pytest.fixture
def snapshot(aws_env: MotoAWS) -> tuple[str, list[BlockRef], bytes]:
    disk = os.urandom(3 * EBS_BLOCK_SIZE)
    ami = seed_ami(
        aws_env.client("ebs"), aws_env.client("ec2"), "lean-path", [VolumeSpec("/dev/xvda", disk)]
    )
    snap = ami.snapshot_ids[0]
    return snap, list(list_snapshot_blocks(aws_env.client("ebs"), snap)), disk


def _reader(sleeps: list[float] | None = None, concurrency: int = 8) -> BlockReader:
    sess = session(REGION)
    record = sleeps.append if sleeps is not None else (lambda _s: None)
    return BlockReader.from_client(sess, client(sess, "ebs"), concurrency, sleep=record)


def test_blocks_read_equal_what_the_boto3_client_reads(
    aws_env: MotoAWS, snapshot: tuple[str, list[BlockRef], bytes]
) -> None:
    snap, refs, disk = snapshot
    reader = _reader()
    for ref in refs:
        lean = reader.get_snapshot_block(
            SnapshotId=snap, BlockIndex=ref.index, BlockToken=ref.token
        )
        boto = aws_env.client("ebs").get_snapshot_block(
            SnapshotId=snap, BlockIndex=ref.index, BlockToken=ref.token
        )
        data = lean["BlockData"].read()
        assert data == boto["BlockData"].read()
        assert data == disk[ref.index * EBS_BLOCK_SIZE : (ref.index + 1) * EBS_BLOCK_SIZE]
        assert (lean["Checksum"], lean["ChecksumAlgorithm"]) == (
            boto["Checksum"],
            boto["ChecksumAlgorithm"],
        )
        assert lean["DataLength"] == EBS_BLOCK_SIZE


def test_throttling_backs_off_and_lowers_the_requests_in_flight(
    aws_env: MotoAWS, snapshot: tuple[str, list[BlockRef], bytes]
) -> None:
    snap, refs, disk = snapshot
    sleeps: list[float] = []
    reader = _reader(sleeps, concurrency=8)
    aws_env.reset_counters()
    aws_env.add_fault("GetSnapshotBlock", count=2, kind="throttle")
    aws_env.add_fault("GetSnapshotBlock", count=1, kind="slowdown")
    aws_env.add_fault("GetSnapshotBlock", count=1, kind="internal")
    data = fetch_block(reader, snap, refs[0])
    assert data == disk[:EBS_BLOCK_SIZE]
    assert aws_env.counters()["GetSnapshotBlock"] == 5
    assert reader.retries == 4 and len(sleeps) == 4
    assert all(0 <= s <= BACKOFF_BASE * 2**n for n, s in enumerate(sleeps, start=1))
    assert reader.limit.lowest == 1  # three throttled answers: 8 → 4 → 2 → 1
    assert reader.limit.limit == 2  # the 500 is not throttling; one success at 1 grows it by one


def test_a_server_error_that_persists_fails_after_the_last_attempt(
    aws_env: MotoAWS, snapshot: tuple[str, list[BlockRef], bytes]
) -> None:
    snap, refs, _ = snapshot
    sleeps: list[float] = []
    reader = _reader(sleeps)
    aws_env.reset_counters()
    aws_env.add_fault("GetSnapshotBlock", count=MAX_ATTEMPTS + 5, kind="internal")
    with pytest.raises(ExportError, match="GetSnapshotBlock") as caught:
        fetch_block(reader, snap, refs[0])
    assert caught.value.transient
    assert aws_env.counters()["GetSnapshotBlock"] == MAX_ATTEMPTS
    assert len(sleeps) == MAX_ATTEMPTS - 1
    aws_env.clear_faults()


def test_access_denied_names_the_iam_action(
    aws_env: MotoAWS, snapshot: tuple[str, list[BlockRef], bytes]
) -> None:
    snap, refs, _ = snapshot
    reader = _reader()
    aws_env.add_fault("GetSnapshotBlock", count=1, kind="access_denied")
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        reader.get_snapshot_block(
            SnapshotId=snap, BlockIndex=refs[0].index, BlockToken=refs[0].token
        )
    error = translate(caught.value, "GetSnapshotBlock", snap)
    assert "ebs:GetSnapshotBlock" in str(error)
    assert reader.retries == 0


def test_an_unreachable_endpoint_is_retried_then_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from testbed.process import free_port

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "a")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "b")
    monkeypatch.setenv("AWS_ENDPOINT_URL_EBS", f"http://127.0.0.1:{free_port()}")
    sleeps: list[float] = []
    reader = _reader(sleeps)
    with pytest.raises(ExportError, match="cannot reach AWS"):
        fetch_block(reader, "snap-1", BlockRef(0, "t"))
    assert len(sleeps) == MAX_ATTEMPTS - 1


# -- the wire request, seen by a capturing server ---------------------------------------------


class _Capture(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, dict[str, str]]]] = []
    block = os.urandom(EBS_BLOCK_SIZE)
    delay = 0.0  # seconds each answer waits, so that requests overlap
    inflight = 0
    peak = 0
    lock = threading.Lock()
    protocol_version = "HTTP/1.1"  # keep-alive, as AWS
    close_each = False  # answer with "Connection: close"
    drop_each = False  # end the connection after the answer without saying so
    peers: ClassVar[set[tuple[str, int]]] = set()

    @classmethod
    def reset(cls) -> None:
        cls.seen, cls.peers, cls.close_each, cls.drop_each = [], set(), False, False
        cls.delay, cls.inflight, cls.peak = 0.0, 0, 0

    def do_GET(self) -> None:
        cls = type(self)
        with cls.lock:
            cls.inflight += 1
            cls.peak = max(cls.peak, cls.inflight)
        try:
            time.sleep(cls.delay)
            self._answer()
        finally:
            with cls.lock:
                cls.inflight -= 1

    def _answer(self) -> None:
        self.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        self.peers.add(self.client_address)
        digest = base64.b64encode(hashlib.sha256(self.block).digest()).decode()
        self.send_response(200)
        self.send_header("x-amz-Checksum", digest)
        self.send_header("x-amz-Checksum-Algorithm", "SHA256")
        self.send_header("x-amz-Data-Length", str(len(self.block)))
        self.send_header("Content-Length", str(len(self.block)))
        if self.close_each:
            self.send_header("Connection", "close")
        if self.close_each or self.drop_each:
            self.close_connection = True
        self.end_headers()
        self.wfile.write(self.block)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def capture() -> Iterator[tuple[str, list[tuple[str, dict[str, str]]]]]:
    _Capture.reset()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _Capture.seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_an_export_keeps_the_requests_in_flight_at_the_concurrency(
    capture: tuple[str, list[tuple[str, dict[str, str]]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The lean reader is the only bound on requests in flight (the source adds no semaphore
    # for it), while ingest runs more workers than that to hash and encrypt.
    endpoint, seen = capture
    _Capture.delay = 0.03
    monkeypatch.setenv("AWS_ENDPOINT_URL_EBS", endpoint)
    sess = _sess()
    reader = BlockReader.from_client(sess, client(sess, "ebs"), 3)
    blocks = 12
    source = EbsVolumeSource(
        ebs=reader,
        name="xvda",
        virtual_size=blocks * EBS_BLOCK_SIZE,
        refs=[BlockRef(i, f"t{i}") for i in range(blocks)],
        stats=VolumeStats("snap-1", blocks * EBS_BLOCK_SIZE, "full"),
        concurrency=3,
    )
    assert source.read_workers > 3
    result = ingest(_memory_repo(), [source], name="img", source="test")
    assert len(seen) == blocks
    assert _Capture.peak == 3
    assert source.stats.blocks_read == blocks
    assert result.image.manifest.volumes[0].chunks[-1][0] == blocks - 1


def _memory_repo() -> Repository:
    reader, writer = Identity.generate(), Identity.generate()
    backend = MemoryBackend()
    Repository.init(backend, recipients=[reader.recipient], writers=[writer.recipient])
    return Repository.open(backend, identity=writer)


def _verify_signature(url: str, headers: dict[str, str], creds: Any) -> None:
    """Recompute the SigV4 signature of the request as received; it must equal the one sent."""
    request = botocore.awsrequest.AWSRequest("GET", url)
    for name in ("host", "x-amz-date", "x-amz-security-token"):
        if name in headers:
            request.headers[name] = headers[name]
    request.context["timestamp"] = headers["x-amz-date"]
    auth = SigV4Auth(creds, "ebs", REGION)
    canonical = auth.canonical_request(request)
    expected = auth.signature(auth.string_to_sign(request, canonical), request)
    assert headers["authorization"].endswith(f"Signature={expected}")


def test_the_wire_request_is_signed_with_the_session_token(
    capture: tuple[str, list[tuple[str, dict[str, str]]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, seen = capture
    monkeypatch.setenv("AWS_ENDPOINT_URL_EBS", endpoint)
    creds = botocore.credentials.Credentials("AKIDEXAMPLE", "secret", "session-token-1")
    sess = boto3.session.Session(
        aws_access_key_id=creds.access_key,
        aws_secret_access_key=creds.secret_key,
        aws_session_token=creds.token,
        region_name=REGION,
    )
    reader = BlockReader.from_client(sess, client(sess, "ebs"), 2)
    data = fetch_block(reader, "snap-0abc", BlockRef(5, TOKEN))
    assert data == _Capture.block
    path, headers = seen[0]
    assert path == BlockReader.path("snap-0abc", 5, TOKEN)
    assert headers["x-amz-security-token"] == "session-token-1"
    assert headers["user-agent"].startswith("imagekit/")
    _verify_signature(endpoint + path, headers, creds)


def test_a_proxy_from_the_environment_carries_the_request(
    capture: tuple[str, list[tuple[str, dict[str, str]]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy, seen = capture
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    # Never contacted: the proxy answers for it (a .invalid name cannot resolve anywhere).
    monkeypatch.setenv("AWS_ENDPOINT_URL_EBS", "http://ebs.example.invalid")
    sess = _sess()
    reader = BlockReader.from_client(sess, client(sess, "ebs"), 2)
    assert fetch_block(reader, "snap-0abc", BlockRef(1, TOKEN)) == _Capture.block
    path, headers = seen[0]
    assert path == "http://ebs.example.invalid" + BlockReader.path("snap-0abc", 1, TOKEN)
    assert headers["host"] == "ebs.example.invalid"


def test_connections_are_kept_alive_and_reopened_when_the_server_closes_them(
    capture: tuple[str, list[tuple[str, dict[str, str]]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, seen = capture
    monkeypatch.setenv("AWS_ENDPOINT_URL_EBS", endpoint)
    sess = _sess()
    reader = BlockReader.from_client(sess, client(sess, "ebs"), 2)
    for index in range(4):
        assert fetch_block(reader, "snap-0abc", BlockRef(index, TOKEN)) == _Capture.block
    assert len(_Capture.peers) == 1  # one connection carried all four

    # A server that ends every connection after its answer: each request opens a new one, and
    # none of that counts as a failure to retry.
    _Capture.close_each = True
    for index in range(3):
        assert fetch_block(reader, "snap-0abc", BlockRef(index, TOKEN)) == _Capture.block
    # The first went on the kept connection, which its answer ended; the other two each had one.
    assert len(_Capture.peers) == 3
    assert len(seen) == 7
    assert reader.retries == 0
    reader.close()


def test_a_kept_connection_the_server_dropped_is_replaced_without_a_retry(
    capture: tuple[str, list[tuple[str, dict[str, str]]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Servers close idle keep-alive connections without notice; the next request on one fails
    # before it reaches the server. That is not the server failing: no backoff, no retry count.
    endpoint, seen = capture
    _Capture.drop_each = True
    monkeypatch.setenv("AWS_ENDPOINT_URL_EBS", endpoint)
    sleeps: list[float] = []
    sess = _sess()
    reader = BlockReader.from_client(sess, client(sess, "ebs"), 1, sleep=sleeps.append)
    for index in range(3):
        assert fetch_block(reader, "snap-0abc", BlockRef(index, TOKEN)) == _Capture.block
    assert len(seen) == 3
    assert len(_Capture.peers) == 3
    assert reader.retries == 0
    assert sleeps == []


# -- TLS: the CA bundle the AWS settings name is the one trusted --------------------------------


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_capture(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    _Capture.reset()
    cert, key = _self_signed(tmp_path)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_tls_trusts_the_configured_ca_bundle_and_nothing_else(
    tls_capture: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, cert = tls_capture
    monkeypatch.setenv("AWS_ENDPOINT_URL_EBS", endpoint)
    monkeypatch.setenv("AWS_CA_BUNDLE", str(cert))
    sess = _sess()
    reader = BlockReader.from_client(sess, client(sess, "ebs"), 2)
    assert fetch_block(reader, "snap-0abc", BlockRef(3, TOKEN)) == _Capture.block

    # The system's bundle does not know this certificate: one clear error, no retry storm.
    monkeypatch.delenv("AWS_CA_BUNDLE")
    sleeps: list[float] = []
    sess = _sess()
    untrusting = BlockReader.from_client(sess, client(sess, "ebs"), 2, sleep=sleeps.append)
    with pytest.raises(ExportError, match="TLS to AWS failed") as caught:
        fetch_block(untrusting, "snap-0abc", BlockRef(3, TOKEN))
    assert "AWS_CA_BUNDLE" in (caught.value.hint or "")
    assert sleeps == []


# -- HTTPS through a proxy: a CONNECT tunnel ----------------------------------------------------


class _Tunnel(http.server.BaseHTTPRequestHandler):
    """A forward proxy that only tunnels (CONNECT), as corporate proxies in front of AWS do."""

    connects: ClassVar[list[tuple[str, str | None]]] = []
    refuse = False  # answer every CONNECT with 407

    def do_CONNECT(self) -> None:
        self.connects.append((self.path, self.headers.get("Proxy-Authorization")))
        if self.refuse:
            self.send_response(407, "Proxy Authentication Required")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        host, port = self.path.rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)), timeout=10)
        self.send_response(200, "Connection established")
        self.end_headers()
        self.close_connection = True

        def pump(src: socket.socket, dst: socket.socket) -> None:
            with contextlib.suppress(OSError):
                while data := src.recv(65536):
                    dst.sendall(data)
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

        back = threading.Thread(target=pump, args=(upstream, self.connection), daemon=True)
        back.start()
        pump(self.connection, upstream)
        back.join(10)
        upstream.close()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def tunnel() -> Iterator[str]:
    _Tunnel.connects, _Tunnel.refuse = [], False
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Tunnel)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_https_through_a_proxy_tunnels_with_the_proxy_credentials(
    tls_capture: tuple[str, Path], tunnel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, cert = tls_capture
    monkeypatch.setenv("AWS_ENDPOINT_URL_EBS", endpoint)
    monkeypatch.setenv("AWS_CA_BUNDLE", str(cert))
    monkeypatch.setenv("HTTPS_PROXY", f"http://user:pa%20ss@{tunnel}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    sess = _sess()
    reader = BlockReader.from_client(sess, client(sess, "ebs"), 2)
    for index in range(2):
        assert fetch_block(reader, "snap-0abc", BlockRef(index, TOKEN)) == _Capture.block
    # One tunnel to the endpoint, kept for both requests; TLS inside it checked the endpoint's
    # certificate (the proxy sees only ciphertext), and the proxy got its credentials.
    assert [path for path, _ in _Tunnel.connects] == [endpoint.removeprefix("https://")]
    auth = _Tunnel.connects[0][1]
    assert auth == "Basic " + base64.b64encode(b"user:pa ss").decode()
    assert "proxy-authorization" not in _Capture.seen[0][1]
    assert len(_Capture.seen) == 2


def test_a_proxy_that_refuses_the_tunnel_is_named_in_the_error(
    tunnel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _Tunnel.refuse = True
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "a")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "b")
    monkeypatch.setenv("AWS_ENDPOINT_URL_EBS", "https://ebs.example.invalid")
    monkeypatch.setenv("HTTPS_PROXY", f"http://{tunnel}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    sleeps: list[float] = []
    sess = _sess()
    reader = BlockReader.from_client(sess, client(sess, "ebs"), 2, sleep=sleeps.append)
    with pytest.raises(ExportError, match="cannot reach AWS") as caught:
        fetch_block(reader, "snap-0abc", BlockRef(0, TOKEN))
    # One line that says what turned the request away, not only the endpoint's URL.
    assert "407 Proxy Authentication Required" in caught.value.message
    assert "HTTPS_PROXY" in (caught.value.hint or "")
    assert len(_Tunnel.connects) == MAX_ATTEMPTS


def test_an_https_proxy_falls_back_to_the_boto3_client(monkeypatch: pytest.MonkeyPatch) -> None:
    # TLS to the proxy and TLS inside it is beyond http.client: the export reads through the
    # boto3 client (urllib3) instead of failing.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "a")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "b")
    monkeypatch.setenv("AWS_ENDPOINT_URL_EBS", "https://ebs.example.invalid")
    monkeypatch.setenv("HTTPS_PROXY", "https://proxy.example.invalid:3129")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    sess = _sess()
    ebs = client(sess, "ebs")
    with pytest.raises(LeanPathUnavailable):
        BlockReader.from_client(sess, ebs, 2)
    assert block_reader(sess, ebs, 2) is ebs
