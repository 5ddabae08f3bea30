"""Image sources for ``Provider.prepare``: a stored image (the real path) or a disk file.

Both end in the same place: the image's volumes as files of the provider's convert target in
the run's folder. The store restores and converts in one go (``imagekit.store.restore``); a
file goes through ``imagekit.convert.convert_image``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from imagekit.convert import TARGETS, convert_image, inspect_source
from imagekit.convert.targets import aligned_size
from imagekit.errors import UsageError
from imagekit.progress import Progress
from imagekit.providers.base import PreparedImage
from imagekit.store.manifest import StoredImage
from imagekit.store.repository import Repository
from imagekit.store.restore import FORMAT_SUFFIX, restore
from imagekit.timing import Stopwatch


class StoredImageSource:
    """An image in an opened repository."""

    def __init__(self, repo: Repository, image: StoredImage, clock: Stopwatch | None = None):
        self.repo = repo
        self.image = image
        self.clock = clock  # rehearsals read where the restore's time went

    def describe(self) -> dict[str, Any]:
        m = self.image.manifest
        return {"id": self.image.id, "name": m.name, "source": m.source, "store": self.repo.url}

    def preview(self, disk_format: str) -> PreparedImage:
        """The image as ``materialise`` will prepare it, from the manifest alone."""
        volumes = self.image.manifest.volumes
        if not volumes:
            raise UsageError(f"image {self.image.id[:12]} has no volumes to boot")
        return PreparedImage(
            path=Path(f"disk{FORMAT_SUFFIX[disk_format]}"),
            disk_format=disk_format,
            name=self.image.manifest.name,
            image_id=self.image.id,
            virtual_size=volumes[0].virtual_size,
            metadata=dict(self.image.manifest.metadata),
        )

    def materialise(
        self, folder: Path, disk_format: str, progress: Progress | None = None
    ) -> PreparedImage:
        volumes = self.image.manifest.volumes
        if not volumes:
            raise UsageError(f"image {self.image.id[:12]} has no volumes to boot")
        # One volume restores to the named file; several to files inside the named folder.
        out = folder / f"disk{FORMAT_SUFFIX[disk_format]}" if len(volumes) == 1 else folder
        files = restore(
            self.repo, self.image, out, fmt=disk_format, progress=progress, clock=self.clock
        )
        paths = [Path(f["path"]) for f in files]
        return PreparedImage(
            path=paths[0],
            disk_format=disk_format,
            name=self.image.manifest.name,
            image_id=self.image.id,
            virtual_size=volumes[0].virtual_size,
            extra_disks=tuple(paths[1:]),
            metadata=dict(self.image.manifest.metadata),
        )


def _file_id(path: Path) -> str:
    # Names the image in records; the path and size are enough to tell rehearsal disks apart.
    stat = path.stat()
    return hashlib.sha256(f"{path.resolve()}:{stat.st_size}".encode()).hexdigest()[:16]


class FileImageSource:
    """A disk image file in any format qemu-img reads (rehearsals, tests)."""

    def __init__(
        self,
        path: Path,
        *,
        name: str | None = None,
        source_format: str | None = None,
        metadata: dict[str, Any] | None = None,
    ):
        self.path = Path(path)
        self.name = name or self.path.stem
        self.source_format = source_format
        self.metadata = metadata or {}

    def describe(self) -> dict[str, Any]:
        return {"id": _file_id(self.path), "name": self.name, "source": str(self.path)}

    def preview(self, disk_format: str) -> PreparedImage:
        """The image as ``materialise`` will prepare it (``qemu-img info`` of the file)."""
        info = inspect_source(self.path, self.source_format)
        return PreparedImage(
            path=Path(f"disk{TARGETS[disk_format].suffix}"),
            disk_format=disk_format,
            name=self.name,
            image_id=_file_id(self.path),
            virtual_size=aligned_size(info.virtual_size, TARGETS[disk_format].size_align),
            metadata=dict(self.metadata),
        )

    def materialise(
        self, folder: Path, disk_format: str, progress: Progress | None = None
    ) -> PreparedImage:
        out = folder / f"disk{TARGETS[disk_format].suffix}"
        result = convert_image(
            self.path, out, disk_format, source_format=self.source_format, progress=progress
        )
        return PreparedImage(
            path=out,
            disk_format=disk_format,
            name=self.name,
            image_id=_file_id(self.path),
            virtual_size=result.virtual_size,
            metadata=dict(self.metadata),
        )


__all__ = ["FileImageSource", "StoredImageSource"]
