"""Prune: apply retention, then delete the data no kept image references.

Under an exclusive lock (no ingest runs meanwhile), in the order of ``docs/format.md``: dropped
manifests, then a new index of the packs still referenced, then the old index objects, then the
unreferenced packs. A pack is kept whole when any of its chunks is referenced (no repacking: a
pack holds one writer session's chunks, which tend to live and die together).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from imagekit.errors import IntegrityError
from imagekit.progress import NullProgress, Progress
from imagekit.store.format import INDEX_PREFIX, KIND_INDEX, LOCK_STALE_AFTER
from imagekit.store.manifest import StoredImage
from imagekit.store.pack import pack_name
from imagekit.store.repository import Repository
from imagekit.store.retention import RetentionPlan, RetentionPolicy, plan_retention

#: A partial write older than this is a crashed writer's, not a live one's (writes take seconds).
LEFTOVER_AGE = 3600.0
#: An unindexed pack younger than this is never deleted: its writer may still be between the pack
#: and its index with a lock this prune did not see. The stale-lock threshold, plus a margin for
#: clock differences between the storage and the hosts.
PACK_GRACE = LOCK_STALE_AFTER + 15 * 60.0


@dataclass(frozen=True)
class PruneReport:
    plan: RetentionPlan
    packs_deleted: int
    bytes_freed: int
    packs_kept: int
    dry_run: bool
    leftovers_removed: int = 0  # partial writes of crashed processes (directory stores)
    packs_young: int = 0  # unindexed packs kept: younger than PACK_GRACE, or of unknown age

    def as_dict(self) -> dict[str, Any]:
        def brief(i: StoredImage) -> dict[str, Any]:
            s = i.summary()
            return {"id": s["id"], "name": s["name"], "created": s["created"]}

        return {
            "dry_run": self.dry_run,
            "kept": [dict(brief(i), reasons=list(self.plan.reasons[i.id])) for i in self.plan.keep],
            "dropped": [brief(i) for i in self.plan.drop],
            "packs_deleted": self.packs_deleted,
            "packs_kept": self.packs_kept,
            "bytes_freed": self.bytes_freed,
            "leftovers_removed": self.leftovers_removed,
            "packs_young": self.packs_young,
        }


def prune(
    repo: Repository,
    policy: RetentionPolicy,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> PruneReport:
    bar = progress or NullProgress()
    with repo.lock(exclusive=True) as held:
        images = repo.list_images()
        plan = plan_retention(images, policy)
        index_names = repo.index_names()
        index = repo.load_index(index_names)
        referenced: set[bytes] = set()
        for image in plan.keep:
            for volume in image.manifest.volumes:
                referenced.update(cid for _, cid in volume.chunks)
        unknown = [cid for cid in referenced if cid not in index]
        if unknown:
            raise IntegrityError(
                f"{repo.url}: {len(unknown)} chunks of kept images are in no index; not pruning",
                hint="run `imagekit store verify`",
            )
        objects = repo.pack_objects()
        listed = {p: info.size for p, info in objects.items()}
        now = held.storage_now if held.storage_now is not None else time.time()
        keep_ids = index.packs_holding(referenced)
        indexed = index.pack_ids
        # Unindexed packs are a crash's leftovers, or a live writer's between its pack and its
        # index uploads whose lock this prune did not see (stale by a wrong clock, missed by an
        # eventually consistent listing): only those older than PACK_GRACE by the storage's
        # clock go; without a timestamp they stay until the next writer indexes them.
        young = {
            p
            for p, info in objects.items()
            if p not in indexed and (info.modified is None or now - info.modified < PACK_GRACE)
        }
        drop = sorted(p for p in listed if p not in keep_ids and p not in young)
        freed = sum(listed[p] for p in drop)
        if not dry_run:
            held.check()  # deleting under a lock others may count stale could race a writer
            bar.start("prune", float(len(plan.drop) + len(drop)))
            for image in plan.drop:
                repo.delete_image(image.id)
                bar.advance(1)
            new_index = (
                repo.write_meta(KIND_INDEX, INDEX_PREFIX, index.encode(keep_ids))[0]
                if keep_ids
                else None
            )
            for name in index_names:
                if name.rsplit("/", 1)[-1] != new_index:
                    repo.backend.delete(name)
            for pack_id in drop:
                repo.backend.delete(pack_name(pack_id))
                bar.advance(1)
            bar.finish()
        leftovers = 0 if dry_run else repo.backend.remove_leftovers(LEFTOVER_AGE)
    return PruneReport(plan, len(drop), freed, len(keep_ids), dry_run, leftovers, len(young))


__all__ = ["PruneReport", "RetentionPolicy", "prune"]
