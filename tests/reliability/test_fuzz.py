"""Fuzzing: every parser, fed mutated and arbitrary bytes, only ever raises its documented error.

The pure decoders promise ``ValueError`` (``InvalidTag`` where authentication is theirs); the
edges that read an object promise an ``ImagekitError`` naming it. Anything else (a bare
``KeyError``, ``struct.error``, ``RecursionError``, ``OverflowError``) escapes the CLI's error
mapping as a traceback, or, in a listing that skips bad objects with a warning, stops every
client at a single planted object. Round trips check the encoders against the decoders.

Each property is one case per example in ``docs/reliability.md`` (``tally.tried()``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagekit.errors import IntegrityError, WrongKey
from imagekit.plans.load import Loaded
from imagekit.store.backends.registry import StoreURL
from imagekit.store.crypto import decode_recipient, encode_recipient
from imagekit.store.format import KIND_INDEX, KIND_LOCK, KIND_MANIFEST, KIND_PACK_HEADER
from imagekit.store.identity import Identity, decode_identity, encode_identity
from imagekit.store.index import Index, PackRecord, decode_index, encode_index
from imagekit.store.keys import KeySlot, MasterKey, passphrase_slot, recipient_slot
from imagekit.store.locks import read_locks
from imagekit.store.manifest import ImageManifest, VolumeManifest, decode_manifest, encode_manifest
from imagekit.store.pack import BlobEntry, PackHeader, decode_pack_header, encode_pack_header
from imagekit.store.repository import Config, Repository
from tests.reliability.conftest import Tally
from tests.reliability.mutate import hostile_json, json_field_swapped, mutated
from tests.reliability.parsers import ROOT, check
from tests.reliability.sizes import FUZZ_EXAMPLES
from tests.store.helpers import MemoryBackend

FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    # A hang is a failure too: no example of these small inputs may take seconds.
    deadline=5000,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
KEY = MasterKey.generate(os.urandom(16))
SEALED = bytes(80)

ids = st.binary(min_size=32, max_size=32)
entries = st.lists(
    st.builds(BlobEntry, ids, st.integers(0, 2**31), st.integers(1, 1000), st.integers(1, 1000)),
    max_size=6,
)
records = st.lists(
    st.builds(PackRecord, ids.map(bytes.hex), st.just(SEALED), entries.map(tuple)), max_size=4
)


def _volumes(draw: st.DrawFn) -> tuple[VolumeManifest, ...]:
    out = []
    for n in range(draw(st.integers(0, 3))):
        chunks = draw(st.integers(1, 64))
        indexes = sorted(draw(st.sets(st.integers(0, chunks - 1), max_size=6)))
        out.append(
            VolumeManifest(
                name=f"vol{n}",
                virtual_size=chunks * 524_288,
                chunks=tuple((i, draw(ids)) for i in indexes),
                stored_size=draw(st.integers(0, 2**40)),
            )
        )
    return tuple(out)


@st.composite
def manifests(draw: st.DrawFn) -> ImageManifest:
    return ImageManifest(
        name=draw(st.text(max_size=12)),
        created=datetime(2024, 5, 1, 2, 0, draw(st.integers(0, 59)), tzinfo=UTC),
        source=draw(st.text(max_size=12)),
        volumes=_volumes(draw),
        parent=draw(st.none() | ids.map(bytes.hex)),
        metadata=draw(st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3)),
        bytes_read=draw(st.integers(0, 2**40)),
        bytes_uploaded=draw(st.integers(0, 2**40)),
    )


SAMPLE_MANIFEST = encode_manifest(
    ImageManifest(
        "web",
        datetime(2024, 5, 1, tzinfo=UTC),
        "disk.raw",
        (VolumeManifest("disk", 4 << 20, ((0, bytes(32)), (3, b"\1" * 32)), 10),),
        parent="ab" * 32,
        metadata={"ami": "ami-1"},
    )
)
SAMPLE_INDEX = encode_index(
    [PackRecord("cd" * 32, SEALED, (BlobEntry(b"\2" * 32, 0, 100, 200),) * 2)]
)
SAMPLE_HEADER = encode_pack_header(PackHeader(SEALED, (BlobEntry(b"\3" * 32, 0, 50, 60),)))
IDENTITY = Identity.generate()
SAMPLE_IDENTITY = encode_identity(IDENTITY, "pw", n=2, r=1, p=1)
SAMPLE_SLOTS = [
    passphrase_slot(KEY, "pw", "read", n=2, r=1, p=1).encode(),
    recipient_slot(KEY, IDENTITY.recipient, "write").encode(),
]
SAMPLE_CONFIG = Config(KEY.repository_id, 1, KEY.fingerprint).encode()
SAMPLE_PLAN = (ROOT / "templates" / "plans" / "local.yaml").read_text()


# -- pure decoders: ValueError only ----------------------------------------------------------


@FUZZ
@given(data=st.binary(max_size=400) | mutated(SAMPLE_HEADER))
def test_pack_header(tally: Tally, data: bytes) -> None:
    tally.tried()
    check("pack header", data)


@FUZZ
@given(data=st.binary(max_size=200) | mutated(SAMPLE_HEADER + bytes(4)))
def test_pack_tail(tally: Tally, data: bytes) -> None:
    """The pack's last bytes as a reader meets them: length field, then the sealed header."""
    tally.tried()
    check("pack tail", data)


@FUZZ
@given(header=st.builds(PackHeader, st.just(SEALED), entries.map(tuple)))
def test_pack_header_round_trip(tally: Tally, header: PackHeader) -> None:
    tally.tried()
    assert decode_pack_header(encode_pack_header(header)) == header


@FUZZ
@given(data=st.binary(max_size=400) | mutated(SAMPLE_INDEX))
def test_index(tally: Tally, data: bytes) -> None:
    tally.tried()
    check("index", data)
    check("index table", data)


@FUZZ
@given(recs=records)
def test_index_round_trip(tally: Tally, recs: list[PackRecord]) -> None:
    tally.tried()
    payload = encode_index(recs)
    assert decode_index(payload) == recs
    table = Index()
    table.add_payload(payload)
    first: dict[bytes, BlobEntry] = {}
    for r in recs:
        for e in r.entries:
            first.setdefault(e.chunk_id, e)
    assert len(table) == len(first)
    for cid, e in first.items():
        loc = table.get(cid)
        assert loc is not None and (loc.offset, loc.length) == (e.offset, e.length)


def _manifest_payload(doc: bytes) -> bytes:
    return len(doc).to_bytes(4, "little") + doc + bytes(4)


@FUZZ
@given(
    data=st.binary(max_size=300)
    | mutated(SAMPLE_MANIFEST)
    | hostile_json.map(_manifest_payload)
    | json_field_swapped(json.loads(SAMPLE_MANIFEST[4:-76])).map(
        lambda doc: _manifest_payload(doc)[:-4] + SAMPLE_MANIFEST[-76:]
    )
)
def test_manifest(tally: Tally, data: bytes) -> None:
    tally.tried()
    check("manifest", data)


@FUZZ
@given(m=manifests())
def test_manifest_round_trip(tally: Tally, m: ImageManifest) -> None:
    tally.tried()
    assert decode_manifest(encode_manifest(m)) == m


@FUZZ
@given(
    data=st.binary(max_size=300)
    | hostile_json
    | st.sampled_from(SAMPLE_SLOTS).flatmap(mutated)
    | st.sampled_from(SAMPLE_SLOTS).flatmap(lambda s: json_field_swapped(json.loads(s)))
)
def test_key_slot(tally: Tally, data: bytes) -> None:
    tally.tried()
    check("key slot", data)


@FUZZ
@given(data=st.sampled_from(SAMPLE_SLOTS))
def test_key_slot_round_trip(tally: Tally, data: bytes) -> None:
    tally.tried()
    assert KeySlot.decode(data).encode() == data


def _identity_doc(data: bytes) -> dict[str, object]:
    doc: dict[str, object] = json.loads(data.decode().splitlines()[-1])
    return doc


@FUZZ
@given(
    data=st.binary(max_size=300)
    | hostile_json
    | mutated(SAMPLE_IDENTITY)
    | json_field_swapped(_identity_doc(SAMPLE_IDENTITY))
)
def test_identity_file(tally: Tally, data: bytes) -> None:
    """Not an identity → ``InputError``; a wrong passphrase → ``WrongKey``. Nothing else."""
    tally.tried()
    check("identity file", data)


@settings(FUZZ, max_examples=max(10, FUZZ_EXAMPLES // 20))
@given(passphrase=st.text(min_size=1, max_size=20))
def test_identity_round_trip(tally: Tally, passphrase: str) -> None:
    tally.tried()
    identity = Identity.generate()
    data = encode_identity(identity, passphrase, n=2, r=1, p=1)
    assert decode_identity(data, passphrase).recipient == identity.recipient
    with pytest.raises(WrongKey):
        decode_identity(data, passphrase + "x")


@FUZZ
@given(
    text=st.text(max_size=80)
    | st.binary(max_size=40).map(lambda b: "ikr1" + b.hex())
    | st.just(IDENTITY.recipient).flatmap(
        lambda r: mutated(r.encode()).map(lambda b: b.decode("latin-1"))
    )
)
def test_recipient(tally: Tally, text: str) -> None:
    tally.tried()
    public = check("recipient", text.encode())
    if isinstance(public, bytes):
        assert encode_recipient(public) == text.strip().lower()


@FUZZ
@given(public=st.binary(min_size=32, max_size=32))
def test_recipient_round_trip(tally: Tally, public: bytes) -> None:
    tally.tried()
    assert decode_recipient(encode_recipient(public)) == public


URL_PIECES = st.sampled_from(
    ["s3://", "azure://", "gs://", "swift://", "file://", "ftp://", "://", "b", "/", "?", "&",
     "=", "@", ":", "[", "]", "#", "%", "%zz", "retries=", "connections=0", "endpoint=",
     "timeout=nan", "multipart_threshold=x", "localhost", "bucket", "prefix", "\x00", "..", "1"]
)  # fmt: skip


@FUZZ
@given(url=st.text(max_size=60) | st.lists(URL_PIECES, max_size=10).map("".join))
def test_store_url(tally: Tally, url: str) -> None:
    tally.tried()
    parsed = check("store URL", url.encode())
    if isinstance(parsed, StoreURL):
        assert parsed.scheme in ("file", "s3", "azure", "gs", "swift")
        # Credentials never ride in a URL that parsed.
        assert parsed.scheme == "file" or "@" not in parsed.url.split("://", 1)[1].split("/")[0]


@FUZZ
@given(data=st.binary(max_size=200) | hostile_json | mutated(SAMPLE_CONFIG))
def test_config(tally: Tally, data: bytes) -> None:
    tally.tried()
    check("config", data)


PLAN_LINES = SAMPLE_PLAN.splitlines()


@st.composite
def plans(draw: st.DrawFn) -> str:
    """The example plan with lines dropped, swapped, re-indented or replaced by YAML oddities."""
    lines = list(PLAN_LINES)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["drop", "indent", "dup", "odd", "swap", "value"]))
        if kind == "drop":
            del lines[at]
        elif kind == "indent":
            lines[at] = " " * draw(st.integers(1, 5)) + lines[at]
        elif kind == "dup":
            lines.insert(at, lines[at])
        elif kind == "swap":
            other = draw(st.integers(0, len(lines) - 1))
            lines[at], lines[other] = lines[other], lines[at]
        elif kind == "value" and ":" in lines[at]:
            key = lines[at].split(":", 1)[0]
            lines[at] = f"{key}: {json.dumps(draw(st.from_type(int) | st.text(max_size=8)))}"
        else:
            lines.insert(at, draw(st.sampled_from(YAML_ODDITIES)))
        if not lines:
            break
    return "\n".join(lines)


YAML_ODDITIES = [
    "&a [*a]", "x: &x {y: *x}", "- - -", "? [a, b]\n: c", "!!python/object:os.system ls",
    "<<: [1, 2]", "<<: {version: 2}", "{", "'", "key: !!binary AAAA", "x: 1e400",
    "version: .inf", "\t", "%YAML 9.9\n---", "--- a\n--- b", "password: hunter2",
    "x: " + "[" * 200 + "]" * 200,
]  # fmt: skip


@FUZZ
@given(text=plans() | st.text(max_size=200))
def test_plan_loader(tally: Tally, text: str) -> None:
    """A plan either loads, or its problems are listed, or it is ``PlanInvalid``: no other
    exception, however the YAML is broken."""
    tally.tried()
    loaded = check("plan", text.encode())
    if isinstance(loaded, Loaded):
        assert (loaded.plan is None) == bool(loaded.problems)


# -- the edges: a forged object (written with the repository's own keys) ----------------------


def _repository() -> tuple[Repository, MemoryBackend]:
    backend = MemoryBackend()
    return Repository.init(backend, passphrase="pw"), backend


REPO, REPO_BACKEND = _repository()


@FUZZ
@given(
    kind=st.sampled_from([KIND_INDEX, KIND_MANIFEST, KIND_PACK_HEADER, KIND_LOCK]),
    payload=st.binary(max_size=300)
    | mutated(SAMPLE_INDEX)
    | mutated(SAMPLE_MANIFEST)
    | mutated(SAMPLE_HEADER)
    | hostile_json,
)
def test_forged_objects(tally: Tally, kind: bytes, payload: bytes) -> None:
    """A writer key holder can encrypt any payload as any kind of object: a read names the
    object in an ``IntegrityError``; a listing skips it (a warning) and goes on."""
    tally.tried()
    repo, backend = REPO, REPO_BACKEND
    for prefix in ("images/", "index/", "data/", "locks/"):
        for name in backend.names(prefix):
            del backend.objects[name]
    sealed = repo.meta.encrypt(kind, payload)
    oid = "ef" * 32
    if kind == KIND_MANIFEST:
        backend.write(f"images/{oid}", sealed)
        _named_or_fine(lambda: repo.load_image(oid), f"images/{oid}")
        repo.list_images()
    elif kind == KIND_INDEX:
        backend.write(f"index/{oid}", sealed)
        _named_or_fine(lambda: repo.read_index(f"index/{oid}"), f"index/{oid}")
        repo.load_index()
    elif kind == KIND_PACK_HEADER:
        backend.write(f"data/ef/{oid}", os.urandom(8) + sealed + len(sealed).to_bytes(4, "little"))
        _named_or_fine(lambda: repo.read_pack_record(oid), f"data/ef/{oid}")
    else:
        backend.write("locks/" + "ab" * 16, sealed)
        (lock,) = read_locks(backend, repo.meta)
        assert lock.exclusive or lock.readable


def _named_or_fine(read: Callable[[], object], name: str) -> None:
    """The object reads (the mutation kept it well-formed) or fails naming it."""
    try:
        read()
    except IntegrityError as exc:
        assert name in str(exc)
