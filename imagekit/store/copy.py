"""Copy: replicate images from one repository into another, uploading only missing chunks.

Repositories have their own keys, so a chunk's id differs between them: every chunk of a copied
image is fetched and decrypted from the source, re-identified and re-encrypted for the
destination, and uploaded only when the destination lacks it (its dedup is ingest's). Images
already copied (recognised by ``imagekit.origin`` in their metadata) are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from imagekit.progress import Progress
from imagekit.store.index import Index
from imagekit.store.ingest import IngestResult, ingest
from imagekit.store.manifest import StoredImage, VolumeManifest
from imagekit.store.repository import Repository
from imagekit.store.restore import iter_volume

ORIGIN_KEY = "imagekit.origin"


@dataclass(frozen=True)
class _StoredVolume:
    """A volume of a source repository as a ``VolumeSource``."""

    repo: Repository
    index: Index
    volume: VolumeManifest

    @property
    def name(self) -> str:
        return self.volume.name

    @property
    def virtual_size(self) -> int:
        return self.volume.virtual_size

    @property
    def base(self) -> VolumeManifest | None:
        return None

    def iter_chunks(self) -> Iterator[tuple[int, bytes]]:
        return iter_volume(self.repo, self.index, self.volume)


@dataclass(frozen=True)
class CopyReport:
    copied: tuple[IngestResult, ...]
    skipped: tuple[StoredImage, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "copied": [
                {"source_id": r.image.manifest.metadata[ORIGIN_KEY].split("/")[-1], **r.as_dict()}
                for r in self.copied
            ],
            "skipped": [i.id for i in self.skipped],
            "bytes_uploaded": sum(r.bytes_uploaded for r in self.copied),
        }


def copy_images(
    src: Repository,
    dst: Repository,
    refs: Sequence[str] = (),
    *,
    progress: Progress | None = None,
) -> CopyReport:
    """Copy the images ``refs`` name (all when empty), oldest first."""
    copied: list[IngestResult] = []
    skipped: list[StoredImage] = []
    with src.lock(exclusive=False):
        images = src.list_images()
        chosen = [src.resolve(r, images) for r in refs] if refs else images
        chosen = sorted({i.id: i for i in chosen}.values(), key=lambda i: i.manifest.created)
        origin_of = {str(i.manifest.metadata.get(ORIGIN_KEY)): i for i in dst.list_images()}
        src_index = src.load_index()
        for image in chosen:
            origin = f"{src.config.id.hex()}/{image.id}"
            if origin in origin_of:
                skipped.append(image)
                continue
            m = image.manifest
            parent = None
            if m.parent is not None:
                mapped = origin_of.get(f"{src.config.id.hex()}/{m.parent}")
                parent = mapped.id if mapped is not None else None
            result = ingest(
                dst,
                [_StoredVolume(src, src_index, v) for v in m.volumes],
                name=m.name,
                source=m.source,
                metadata={**m.metadata, ORIGIN_KEY: origin},
                parent=parent,
                created=m.created,
                progress=progress,
            )
            origin_of[origin] = result.image
            copied.append(result)
    return CopyReport(tuple(copied), tuple(skipped))


__all__ = ["ORIGIN_KEY", "CopyReport", "copy_images"]
