"""Verify: the repository's structure always; with ``read_data`` every blob too.

Problems are collected, not raised one by one, so one run reports everything that is wrong (with
a count); the CLI turns a non-empty list into an ``IntegrityError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from imagekit.errors import StoreError, WrongKey
from imagekit.progress import NullProgress, Progress
from imagekit.store.backends.base import Backend
from imagekit.store.crypto import InvalidTag
from imagekit.store.format import DATA_PREFIX, IMAGES_PREFIX, INDEX_PREFIX, KIND_INDEX
from imagekit.store.index import Index, Location
from imagekit.store.manifest import StoredImage
from imagekit.store.pack import object_id, pack_name, read_pack_header
from imagekit.store.repository import Repository, read_config, read_slots
from imagekit.store.trust import SeenImages


@dataclass
class VerifyReport:
    images: int = 0
    packs: int = 0
    chunks: int = 0
    chunks_read: int = 0
    unindexed_packs: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "images": self.images,
            "packs": self.packs,
            "chunks": self.chunks,
            "chunks_read": self.chunks_read,
            "unindexed_packs": self.unindexed_packs,
            "problems": list(self.problems),
        }


def verify_keyless(backend: Backend) -> VerifyReport:
    """What can be checked without any key: config, key slots, content-addressed names."""
    report = VerifyReport()
    try:
        read_config(backend)
        read_slots(backend)
    except StoreError as exc:
        report.problems.append(str(exc))
        return report
    for prefix in (INDEX_PREFIX, IMAGES_PREFIX):
        for info in backend.list(prefix):
            try:
                if object_id(backend.read(info.name)) != info.name.rsplit("/", 1)[-1]:
                    report.problems.append(f"{backend.url}/{info.name}: content does not match")
            except StoreError as exc:
                report.problems.append(str(exc))
    report.images = sum(1 for _ in backend.list(IMAGES_PREFIX))
    report.packs = sum(1 for _ in backend.list(DATA_PREFIX))
    return report


def verify(
    repo: Repository,
    *,
    read_data: bool = False,
    progress: Progress | None = None,
    seen: SeenImages | None = None,
) -> VerifyReport:
    """``seen``: this host's record of the newest images per lineage; a store serving older
    ones (rolled back, or withholding manifests) is a problem."""
    report = VerifyReport()
    bar = progress or NullProgress()
    with repo.lock(exclusive=False):
        # Planted slots cost nothing where keys are used (they are ignored), but someone wrote
        # them with bucket access: say so. Unverified ones (version 1) are not a fault.
        report.problems += [
            f"{repo.where(n)}: key slot not written with this repository's keys"
            for n in repo.review_slots().planted
        ]
        index = Index()
        for name in repo.index_names():
            try:
                index.add_payload(repo.read_meta(KIND_INDEX, name))
            except StoreError as exc:
                report.problems.append(str(exc))
            except ValueError as exc:
                report.problems.append(f"{repo.where(name)}: {exc}")
        listed = repo.list_packs()
        report.packs = len(listed)
        report.chunks = len(index)
        packs = index.pack_ids
        report.unindexed_packs = len(set(listed) - packs)
        for record in index.iter_records():  # one pack's entries in memory at a time
            pack_id = record.pack_id
            size = listed.get(pack_id)
            end = max((e.offset + e.length for e in record.entries), default=0)
            if size is None:
                report.problems.append(f"{repo.where(pack_name(pack_id))}: indexed but missing")
            elif size < end:
                report.problems.append(f"{repo.where(pack_name(pack_id))}: truncated")
        loaded: list[StoredImage] = []
        for image_id in repo.image_ids():
            try:
                image = repo.load_image(image_id)
            except StoreError as exc:
                report.problems.append(str(exc))
                continue
            loaded.append(image)
            report.images += 1
            for volume in image.manifest.volumes:
                missing = sum(1 for _, cid in volume.chunks if cid not in index)
                if missing:
                    report.problems.append(
                        f"image {image_id[:12]} ({image.manifest.name}) volume {volume.name}: "
                        f"{missing} chunks in no index"
                    )
        if seen is not None:
            report.problems += [str(r) for r in seen.check(repo.url, loaded)]
        if read_data:
            bar.start("verify data", float(sum(s for p, s in listed.items() if p in packs)))
            for record in index.iter_records():
                pack_id = record.pack_id
                if pack_id in listed:
                    _check_pack(repo, pack_id, record.entries, report)
                    bar.advance(listed[pack_id])
            bar.finish()
    return report


def _check_pack(repo: Repository, pack_id: str, entries: Any, report: VerifyReport) -> None:
    name = pack_name(pack_id)
    where = repo.where(name)
    try:
        data = repo.backend.read(name)
    except StoreError as exc:
        report.problems.append(str(exc))
        return
    if object_id(data) != pack_id:
        report.problems.append(f"{where}: content does not match its name")
        return
    try:
        header = read_pack_header(repo.meta, data)
    except (InvalidTag, ValueError):
        report.problems.append(f"{where}: pack header failed authentication")
        return
    # The index may resolve a chunk written twice (two writers) to another pack: what it says
    # of this pack must be in its header, not all of the header in it.
    if not set(entries) <= set(header.entries):
        report.problems.append(f"{where}: header disagrees with the index")
    for e in header.entries:
        loc = Location(pack_id, header.sealed_data_key, e.offset, e.length, e.raw_length)
        try:
            repo.decode_blob(loc, e.chunk_id, memoryview(data)[e.offset : e.offset + e.length])
            report.chunks_read += 1
        except WrongKey:
            raise  # a write-only key cannot read data: not a problem of the repository
        except StoreError as exc:
            report.problems.append(str(exc))


__all__ = ["VerifyReport", "verify", "verify_keyless"]
