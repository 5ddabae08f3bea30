"""Hostile data: decompression bombs, forged chunk maps and index entries, stray objects. A
writer key holder can write any well-encrypted object; a bucket writer any object at all."""

from __future__ import annotations

import contextlib
import os
import stat
import struct
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from imagekit.errors import IntegrityError, UsageError
from imagekit.store.crypto import DecompressionLimit, MetaCipher, _unzstd, chunk_id
from imagekit.store.format import (
    BLOB_ZSTD,
    CHUNK_SIZE,
    IMAGES_PREFIX,
    KIND_LOCK,
    KIND_MANIFEST,
    MAX_LOCK_PLAIN,
)
from imagekit.store.identity import Identity
from imagekit.store.index import PackRecord
from imagekit.store.ingest import ingest
from imagekit.store.manifest import (
    ImageManifest,
    VolumeManifest,
    decode_manifest,
    encode_manifest,
)
from imagekit.store.pack import BlobEntry, PackBuilder, decode_entries, encode_entries
from imagekit.store.repository import Repository
from imagekit.store.restore import restore
from imagekit.store.sources import RawFileSource
from tests.store.attackers import BucketAttacker
from tests.store.helpers import MemoryBackend, make_disk

BOMB_SIZE = 64 << 20


@contextlib.contextmanager
def _peak() -> Iterator[list[int]]:
    """The peak of Python-visible allocations (bytes objects included) inside the block."""
    out: list[int] = []
    tracemalloc.start()
    try:
        yield out
    finally:
        out.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


def test_a_frame_declaring_more_than_the_limit_is_refused_before_allocating() -> None:
    bomb = zstandard.ZstdCompressor(level=1).compress(bytes(BOMB_SIZE))
    assert len(bomb) < 8 << 10
    assert zstandard.get_frame_parameters(bomb).content_size == BOMB_SIZE
    with _peak() as peak, pytest.raises(DecompressionLimit, match="declares"):
        _unzstd(bomb, CHUNK_SIZE)
    assert peak[0] < 1 << 20  # nowhere near the 64 MiB it declares


def test_a_frame_without_a_declared_size_is_cut_off_at_the_limit() -> None:
    stream = zstandard.ZstdCompressor(level=1).compressobj()
    bomb = stream.compress(bytes(BOMB_SIZE)) + stream.flush()
    assert zstandard.get_frame_parameters(bomb).content_size == zstandard.CONTENTSIZE_UNKNOWN
    with pytest.raises(DecompressionLimit, match="more than the limit"):
        _unzstd(bomb, CHUNK_SIZE)
    stream = zstandard.ZstdCompressor(level=1).compressobj()
    ok = stream.compress(b"x" * 1000) + stream.flush()
    assert _unzstd(ok, CHUNK_SIZE) == b"x" * 1000


def test_metadata_limits_are_per_kind() -> None:
    meta = MetaCipher(bytes(32))
    big = meta.encrypt(KIND_LOCK, b"{" + b" " * MAX_LOCK_PLAIN + b"}")
    with pytest.raises(DecompressionLimit):
        meta.decrypt(KIND_LOCK, big)
    # The same bytes as a manifest (1 GiB limit) would be fine: the limit follows the kind.
    assert len(meta.decrypt(KIND_MANIFEST, meta.encrypt(KIND_MANIFEST, b"x" * 100_000))) == 100_000


def test_a_writers_blob_bomb_fails_the_restore_naming_the_pack(
    backend: MemoryBackend, repo: Repository, writer: Identity, tmp_path: Path
) -> None:
    """A compromised export host can make blobs the readers will open: a frame claiming 64 MiB
    for one chunk must not allocate 64 MiB in every restore."""
    host = Repository.open(backend, identity=writer, fingerprint=repo.fingerprint)
    data_key, sealed = host.new_sealed_data_key()
    plain = b"chunk" * 1000
    cid = chunk_id(host.chunk_id_key, plain)
    frame = zstandard.ZstdCompressor(level=1).compress(bytes(BOMB_SIZE))
    nonce = os.urandom(12)
    blob = nonce + AESGCM(data_key).encrypt(nonce, bytes([BLOB_ZSTD]) + frame, cid)
    builder = PackBuilder(host.meta, sealed)
    builder.add(cid, blob, len(plain))
    parts, header = builder.seal()
    pid, _ = host.write_pack(parts)
    host.write_index([PackRecord(pid, sealed, header.entries)])
    volume = VolumeManifest("disk0", CHUNK_SIZE, ((0, cid),), len(blob))
    from datetime import UTC, datetime

    image, _ = host.write_image(ImageManifest("bomb", datetime.now(UTC), "x", (volume,)))
    with _peak() as peak, pytest.raises(IntegrityError, match=pid):
        restore(repo, image, tmp_path / "out.raw", workers=1)
    assert not (tmp_path / "out.raw").exists()
    assert peak[0] < 16 << 20  # python-zstandard alone would have allocated the 64 MiB


def _manifest(chunks: tuple[tuple[int, bytes], ...], size: int = 4 * CHUNK_SIZE) -> bytes:
    from datetime import UTC, datetime

    good = encode_manifest(
        ImageManifest("m", datetime.now(UTC), "s", (VolumeManifest("disk0", size, ()),))
    )
    # Re-encode the chunk map by hand: the encoder refuses what an attacker would write.
    body = good[:-4] + struct.pack("<I", len(chunks))
    for index, cid in chunks:
        body += struct.pack("<I32s", index, cid)
    return body


@pytest.mark.parametrize(
    ("chunks", "what"),
    [
        (((1, b"a" * 32), (0, b"b" * 32)), "not sorted"),
        (((1, b"a" * 32), (1, b"b" * 32)), "repeats"),
        (((4, b"a" * 32),), "outside the volume"),
        (((0xFFFFFFFF, b"a" * 32),), "outside the volume"),
    ],
)
def test_forged_chunk_maps_are_refused(chunks: tuple[tuple[int, bytes], ...], what: str) -> None:
    with pytest.raises(ValueError, match=what):
        decode_manifest(_manifest(chunks))


def test_a_forged_chunk_map_is_an_integrity_error_naming_the_manifest(
    backend: MemoryBackend, repo: Repository, writer: Identity
) -> None:
    host = Repository.open(backend, identity=writer, fingerprint=repo.fingerprint)
    oid, _ = host.write_meta(KIND_MANIFEST, IMAGES_PREFIX, _manifest(((9, b"a" * 32),)))
    with pytest.raises(IntegrityError, match=f"{IMAGES_PREFIX}{oid}.*outside the volume"):
        repo.load_image(oid)


def test_restore_never_writes_past_the_volume(
    backend: MemoryBackend, repo: Repository, tmp_path: Path
) -> None:
    """A whole chunk mapped at the last index of a volume that ends mid-chunk."""
    disk = make_disk(tmp_path / "d.raw", 2 * CHUNK_SIZE, data_chunks=2)
    stored = ingest(repo, [RawFileSource(disk)], name="web", source="s").image
    (volume,) = stored.manifest.volumes
    last = max(i for i, _ in volume.chunks)
    cid = dict(volume.chunks)[last]
    short = VolumeManifest("disk0", last * CHUNK_SIZE + 100, ((last, cid),))
    image, _ = repo.write_image(ImageManifest("short", stored.manifest.created, "s", (short,)))
    with pytest.raises(IntegrityError, match="past volume"):
        restore(repo, image, tmp_path / "out.raw")


def test_index_entries_claiming_more_than_a_chunk_are_refused() -> None:
    for entry in (
        BlobEntry(b"a" * 32, 0, 1 << 30, 100),
        BlobEntry(b"a" * 32, 0, 100, CHUNK_SIZE + 1),
    ):
        with pytest.raises(ValueError, match="beyond a chunk"):
            decode_entries(encode_entries([entry]), 0)


def test_restored_disks_are_readable_by_their_owner_only(repo: Repository, tmp_path: Path) -> None:
    disk = make_disk(tmp_path / "d.raw", 2 << 20)
    image = ingest(repo, [RawFileSource(disk)], name="web", source="s").image
    out = tmp_path / "out.raw"
    os.umask(0o022)
    restore(repo, image, out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_stray_objects_are_ignored_everywhere(
    backend: MemoryBackend, repo: Repository, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    disk = make_disk(tmp_path / "d.raw", 2 << 20)
    ingest(repo, [RawFileSource(disk)], name="web", source="s")
    attacker = BucketAttacker(backend)
    for name in ("data/zz/notes.txt", "index/README", "images/.hidden", "images/ABC"):
        attacker.plant_object(name, b"stray")
    attacker.plant_content_addressed("images/", b"M\x01" + os.urandom(64))
    attacker.plant_content_addressed("index/", b"I\x01" + os.urandom(64))
    images = repo.list_images()
    assert [i.manifest.name for i in images] == ["web"]
    assert len(repo.load_index()) > 0
    restore(repo, images[0], tmp_path / "out.raw")
    again = ingest(repo, [RawFileSource(disk)], name="web", source="s")
    assert again.chunks_new == 0
    for name in ("data/zz/notes.txt", "index/README", "images/ABC"):
        assert name in caplog.text


def test_a_lineage_base_with_chunks_in_no_index_is_not_built_on(
    repo: Repository, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Packs of the previous image were lost (deleted, withheld): the next export reads the
    volume in full instead of failing every night on a bare KeyError."""
    from types import SimpleNamespace

    from imagekit.export.ami import VolumeSpec
    from imagekit.export.job import AMI_METADATA, plan_volume
    from imagekit.store.index import Index

    disk = make_disk(tmp_path / "d.raw", 1 << 30, data_chunks=2)  # sparse: 1 GiB, as the EBS size
    vol = VolumeSpec("/dev/xvda", "snap-1", 1)
    stored = ingest(
        repo,
        [RawFileSource(disk, name="xvda")],
        name="web",
        source="s",
        metadata={
            AMI_METADATA: {"volumes": [{"device_name": "/dev/xvda", "snapshot_id": "snap-1"}]}
        },
    ).image
    whole = repo.load_index()
    ebs = SimpleNamespace(list_snapshot_blocks=None, list_changed_blocks=None)  # never called
    assert plan_volume(ebs, [stored], "web", vol, whole).stats.mode == "unchanged"
    with caplog.at_level("WARNING"):
        plan = plan_volume(ebs, [stored], "web", vol, Index())
    assert plan.stats.mode == "full" and plan.base is None
    assert "in no index" in caplog.text and stored.id[:12] in caplog.text


def test_ingest_refuses_a_base_naming_chunks_in_no_index(
    backend: MemoryBackend, repo: Repository, tmp_path: Path
) -> None:
    disk = make_disk(tmp_path / "d.raw", 2 << 20, data_chunks=2)
    base = VolumeManifest("disk0", 2 << 20, ((0, b"z" * 32),))
    source = RawFileSource(disk, base=base)
    with pytest.raises(IntegrityError, match="in no index"):
        ingest(repo, [source], name="web", source="s")
    assert not backend.names(IMAGES_PREFIX)


def test_a_disk_too_large_for_the_target_format_is_refused_before_restoring(
    repo: Repository, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    huge = VolumeManifest("disk0", 2041 << 30, ())
    image, _ = repo.write_image(ImageManifest("huge", datetime.now(UTC), "s", (huge,)))
    out = tmp_path / "out.vhd"
    with pytest.raises(UsageError, match="2040 GiB"):
        restore(repo, image, out, fmt="vhd-azure")
    assert list(tmp_path.iterdir()) == []  # nothing started


def test_a_planted_pack_neither_stops_an_export_nor_gets_indexed(
    backend: MemoryBackend, repo: Repository, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An object named like a pack (by its own hash, as the format names packs) with no valid
    header: every writer indexes unindexed packs first, and must not fail on it."""
    planted = BucketAttacker(backend)
    junk = os.urandom(4096)
    from imagekit.store.pack import object_id, pack_name

    name = pack_name(object_id(junk))
    planted.plant_object(name, junk)
    disk = make_disk(tmp_path / "d.raw", 2 << 20)
    with caplog.at_level("WARNING"):
        stored = ingest(repo, [RawFileSource(disk)], name="web", source="s").image
    assert name in caplog.text and "not indexed" in caplog.text
    assert object_id(junk) not in repo.load_index().pack_ids
    restore(repo, stored, tmp_path / "out.raw")
