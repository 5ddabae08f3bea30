"""What this host remembers about the stores it uses, to catch a store lying to it.

Two records in the state directory (``imagekit.state``), keyed by the store's URL:

- ``known-stores.json``: the repository fingerprint first seen there (trust on first use, like
  SSH's ``known_hosts``), for stores whose plan or command line pins none. A store whose keys
  later differ is refused (``docs/format.md`` § Repository fingerprint).
- ``seen-images.json``: per lineage, the newest image this host has seen in the store. A store
  whose newest image of a lineage is older than that (or that lost the lineage) was rolled back,
  or is withholding manifests; ``rollbacks`` says so, naming the lineage, the ids and the times.
  An image this host pruned itself is forgotten (``forget``), so retention is not an alarm.

Both files are rewritten whole (temporary name, rename, mode 0600) under an ``flock``, so two
imagekit processes on one host never lose each other's updates. The comparisons are pure
functions; only the two record classes touch the disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from imagekit.errors import StoreError
from imagekit.state import write_private
from imagekit.store.manifest import StoredImage, format_time, parse_time

log = logging.getLogger(__name__)

KNOWN_STORES = "known-stores.json"
SEEN_IMAGES = "seen-images.json"
RECORD_VERSION = 1


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _load(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise StoreError(
            f"{path}: unreadable ({exc})", hint="repair or remove it (this host's trust record)"
        ) from exc
    if not isinstance(doc, dict) or doc.get("version") != RECORD_VERSION:
        raise StoreError(f"{path}: unknown record version", hint="upgrade imagekit")
    stores = doc.get("stores")
    return stores if isinstance(stores, dict) else {}


def _save(path: Path, stores: Mapping[str, Any]) -> None:
    doc = {"version": RECORD_VERSION, "stores": dict(stores)}
    write_private(path, json.dumps(doc, indent=1, sort_keys=True) + "\n")


# -- fingerprints --------------------------------------------------------------------------------


class KnownStores:
    """Fingerprints recorded on first use, per store URL."""

    def __init__(self, state: Path):
        self.path = state / KNOWN_STORES

    def get(self, url: str) -> str | None:
        value = _load(self.path).get(url)
        return value if isinstance(value, str) else None

    def record(self, url: str, fingerprint: str, *, quiet: bool = False) -> None:
        """Remember ``fingerprint`` for ``url``; said loudly unless this host made the keys."""
        with _locked(self.path):
            stores = _load(self.path)
            stores[url] = fingerprint
            _save(self.path, stores)
        if quiet:
            return
        log.warning(
            "%s: first use of this store; trusting its keys, fingerprint %s (recorded in %s). "
            "Compare it with the one `imagekit store init` printed, and pin it (plan store "
            "`fingerprint:` or --fingerprint)",
            url,
            fingerprint,
            self.path,
        )


# -- rollback ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """The newest image of one lineage that this host saw in one store."""

    image_id: str
    created: datetime

    def as_dict(self) -> dict[str, str]:
        return {"id": self.image_id, "created": format_time(self.created)}


@dataclass(frozen=True)
class Rollback:
    """A store whose newest image of ``lineage`` is older than one this host saw there."""

    store: str
    lineage: str
    seen: Seen
    newest: StoredImage | None  # None: the lineage is gone

    def __str__(self) -> str:
        was = f"image {self.seen.image_id[:12]} of {format_time(self.seen.created)}"
        if self.newest is None:
            now = "holds no image of it"
        else:
            when = format_time(self.newest.manifest.created)
            now = f"now serves image {self.newest.id[:12]} of {when} as its newest"
        return (
            f"{self.store}: lineage {self.lineage!r} rolled back or withheld: this host saw "
            f"{was} there, the store {now}"
        )


def newest_per_lineage(images: Iterable[StoredImage]) -> dict[str, StoredImage]:
    best: dict[str, StoredImage] = {}
    for image in images:
        name = image.manifest.name
        held = best.get(name)
        if held is None or (image.manifest.created, image.id) > (held.manifest.created, held.id):
            best[name] = image
    return best


def rollbacks(
    store: str,
    seen: Mapping[str, Seen],
    images: Sequence[StoredImage],
    lineages: Iterable[str] | None = None,
) -> list[Rollback]:
    """Lineages (all seen ones, or only ``lineages``) whose newest image is older than seen.

    Pure. An image that is merely *different* at the same or a later time is no rollback (a
    re-export; another host's prune of the older ones).
    """
    current = newest_per_lineage(images)
    wanted = set(seen) if lineages is None else set(lineages) & set(seen)
    found = []
    for lineage in sorted(wanted):
        was = seen[lineage]
        now = current.get(lineage)
        if now is None or now.manifest.created < was.created:
            found.append(Rollback(store, lineage, was, now))
    return found


def advance(seen: Mapping[str, Seen], images: Sequence[StoredImage]) -> dict[str, Seen]:
    """The record after seeing ``images``: only ever moves forward in time (pure)."""
    out = dict(seen)
    for lineage, image in newest_per_lineage(images).items():
        held = out.get(lineage)
        if held is None or image.manifest.created > held.created:
            out[lineage] = Seen(image.id, image.manifest.created)
    return out


class SeenImages:
    """Per store URL, the newest image per lineage this host has seen."""

    def __init__(self, state: Path):
        self.path = state / SEEN_IMAGES

    def get(self, url: str) -> dict[str, Seen]:
        raw = _load(self.path).get(url)
        out: dict[str, Seen] = {}
        for lineage, item in (raw or {}).items():
            try:
                out[str(lineage)] = Seen(str(item["id"]), parse_time(str(item["created"])))
            except (KeyError, TypeError, ValueError):
                log.warning("%s: unreadable entry for lineage %r ignored", self.path, lineage)
        return out

    def check(
        self, url: str, images: Sequence[StoredImage], lineages: Iterable[str] | None = None
    ) -> list[Rollback]:
        """Rollbacks of ``url`` against the record; then record what is newer than it.

        A rolled-back lineage keeps its record (the alarm repeats until someone looks), the
        others move forward.
        """
        with _locked(self.path):
            stores = _load(self.path)
            seen = self.get(url)
            found = rollbacks(url, seen, images, lineages)
            moved = advance(seen, images)
            for r in found:
                moved[r.lineage] = seen[r.lineage]
            if moved != seen:
                stores[url] = {k: v.as_dict() for k, v in sorted(moved.items())}
                _save(self.path, stores)
        for r in found:
            log.warning("%s", r)
        return found

    def forget(self, url: str, dropped: Iterable[str], kept: Sequence[StoredImage]) -> None:
        """After this host pruned ``dropped``: lower each record that named one to the newest
        kept image of its lineage (or remove the lineage when none is left)."""
        gone = set(dropped)
        with _locked(self.path):
            stores = _load(self.path)
            seen = self.get(url)
            remaining = newest_per_lineage(kept)
            changed = False
            for lineage, was in list(seen.items()):
                if was.image_id in gone:
                    changed = True
                    now = remaining.get(lineage)
                    if now is None:
                        del seen[lineage]
                    else:
                        seen[lineage] = Seen(now.id, now.manifest.created)
            if changed:
                stores[url] = {k: v.as_dict() for k, v in sorted(seen.items())}
                _save(self.path, stores)


__all__ = [
    "KnownStores",
    "Rollback",
    "Seen",
    "SeenImages",
    "advance",
    "newest_per_lineage",
    "rollbacks",
]
