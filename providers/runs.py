"""Run records: what one boot created, kept on disk so another process can tear it down.

Layout under the state directory (``$IMAGEKIT_STATE_DIR``, else ``$XDG_STATE_HOME/imagekit``,
else ``~/.local/state/imagekit``)::

    runs/<run-id>/run.json      the record (written to a temporary name, then renamed)
    runs/<run-id>/ssh/          the run's SSH key pair and the host key offered to nodes (0600)
    runs/<run-id>/...           the provider's working files (prepared image, seeds)

A resource is recorded as soon as the provider knows its id, before the next call, so a crash
leaves a record that still names everything to delete. ``teardown`` removes resources newest
first and the run directory last; a run whose teardown failed keeps the resources still there.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imagekit.errors import InputError, UsageError
from imagekit.providers.base import NodeInfo, Resource
from imagekit.state import STATE_ENV, state_dir, write_private

RECORD = "run.json"
RECORD_VERSION = 1
# Lower-case letters, digits and dashes: safe as a directory name and in cloud resource names.
_RUN_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
STATUSES = ("booting", "healthy", "failed", "tearing-down")


def new_run_id(provider: str, now: datetime | None = None) -> str:
    """``<provider>-<UTC yyyymmdd-hhmmss>-<4 hex>``: sortable, readable, unique enough."""
    when = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return f"{provider}-{when}-{secrets.token_hex(2)}"


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    provider: str
    created: str  # ISO 8601 UTC
    status: str = "booting"
    image: Mapping[str, Any] = field(default_factory=dict)  # id, name, source of the image
    settings: Mapping[str, str] = field(default_factory=dict)  # non-secret provider settings
    resources: tuple[Resource, ...] = ()  # in creation order
    nodes: tuple[NodeInfo, ...] = ()
    stages: Mapping[str, float] = field(default_factory=dict)  # stage → seconds
    health: tuple[Mapping[str, Any], ...] = ()
    notes: tuple[str, ...] = ()  # what the user should know: size chosen, host key not pinned
    error: str | None = None
    #: The guest stage's findings and changes (imagekit.guest.adapt.GuestReport.record).
    guest: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": RECORD_VERSION,
            "run_id": self.run_id,
            "provider": self.provider,
            "created": self.created,
            "status": self.status,
            "image": dict(self.image),
            "settings": dict(self.settings),
            "resources": [r.as_dict() for r in self.resources],
            "nodes": [n.as_dict() for n in self.nodes],
            "stages": dict(self.stages),
            "health": [dict(h) for h in self.health],
            "notes": list(self.notes),
            "error": self.error,
            "guest": dict(self.guest),
        }

    @staticmethod
    def from_dict(doc: Mapping[str, Any]) -> RunRecord:
        if doc.get("version") != RECORD_VERSION:
            raise ValueError(f"unknown run record version {doc.get('version')!r}")
        return RunRecord(
            run_id=str(doc["run_id"]),
            provider=str(doc["provider"]),
            created=str(doc["created"]),
            status=str(doc["status"]),
            image=dict(doc.get("image") or {}),
            settings={str(k): str(v) for k, v in (doc.get("settings") or {}).items()},
            resources=tuple(Resource.from_dict(r) for r in doc.get("resources") or ()),
            nodes=tuple(NodeInfo.from_dict(n) for n in doc.get("nodes") or ()),
            stages={str(k): float(v) for k, v in (doc.get("stages") or {}).items()},
            health=tuple(dict(h) for h in doc.get("health") or ()),
            notes=tuple(str(n) for n in doc.get("notes") or ()),
            error=doc.get("error"),
            guest=dict(doc.get("guest") or {}),
        )


class Run:
    """The journal of one run: every change is on disk before the method returns."""

    def __init__(self, directory: Path, record: RunRecord):
        self.dir = directory
        self.record = record

    @property
    def run_id(self) -> str:
        return self.record.run_id

    @property
    def ssh_dir(self) -> Path:
        return self.dir / "ssh"

    def save(self) -> None:
        text = json.dumps(self.record.as_dict(), indent=2, sort_keys=True) + "\n"
        write_private(self.dir / RECORD, text.encode())

    def update(self, **changes: Any) -> RunRecord:
        if "status" in changes and changes["status"] not in STATUSES:
            raise ValueError(f"unknown run status {changes['status']!r}")
        self.record = replace(self.record, **changes)
        self.save()
        return self.record

    def add_resource(self, resource: Resource) -> None:
        """Record something the provider created (or is about to create, by name)."""
        kept = tuple(r for r in self.record.resources if r.key != resource.key)
        self.update(resources=(*kept, resource))

    def forget_resource(self, resource: Resource) -> None:
        """Drop a resource once it is deleted (or found already gone)."""
        self.update(resources=tuple(r for r in self.record.resources if r.key != resource.key))

    def add_node(self, node: NodeInfo) -> None:
        self.update(nodes=(*self.record.nodes, node))

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage; its seconds are recorded even when it fails, and add up when a stage
        is entered twice (a conversion after the guest stage is still preparing)."""
        started = time.monotonic()
        try:
            yield
        finally:
            seconds = time.monotonic() - started + self.record.stages.get(name, 0.0)
            # Rounded as written, so records compare equal.
            self.update(stages={**self.record.stages, name: round(seconds, 3)})


class RunStore:
    """The runs under one state directory."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else state_dir()
        self.runs_dir = self.root / "runs"

    def _dir(self, run_id: str) -> Path:
        if not _RUN_ID.match(run_id):
            raise UsageError(f"invalid run id {run_id!r}: letters, digits and dashes only")
        return self.runs_dir / run_id

    def create(
        self,
        provider: str,
        *,
        image: Mapping[str, Any] | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> Run:
        self.runs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for _ in range(8):
            run_id = new_run_id(provider)
            directory = self._dir(run_id)
            try:
                directory.mkdir(mode=0o700)  # atomic: two processes never share a run
            except FileExistsError:
                continue
            record = RunRecord(
                run_id=run_id,
                provider=provider,
                created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                image=dict(image or {}),
                settings=dict(settings or {}),
            )
            run = Run(directory, record)
            run.save()
            return run
        raise UsageError(f"{self.runs_dir}: could not pick a free run id")

    def open(self, run_id: str) -> Run:
        """The run ``run_id``; ``UsageError`` (exit 2) when there is no such run."""
        directory = self._dir(run_id)
        path = directory / RECORD
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise UsageError(
                f"no run {run_id!r} in {self.runs_dir} (never created, or already torn down)",
                hint="`imagekit runs` lists the runs",
            ) from None
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: unreadable run record ({exc})") from exc
        try:
            return Run(directory, RunRecord.from_dict(doc))
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{path}: malformed run record ({exc})") from exc

    def list(self) -> list[RunRecord]:
        """Every recorded run, oldest first; unreadable records are skipped."""
        if not self.runs_dir.is_dir():
            return []
        records = []
        for path in sorted(self.runs_dir.glob(f"*/{RECORD}")):
            try:
                records.append(self.open(path.parent.name).record)
            except UsageError:
                continue  # removed between the listing and the read, or damaged
        return sorted(records, key=lambda r: (r.created, r.run_id))

    def remove(self, run: Run) -> None:
        """Delete the run's directory: its record, keys and working files."""
        shutil.rmtree(run.dir, ignore_errors=True)


__all__ = ["STATE_ENV", "Run", "RunRecord", "RunStore", "new_run_id", "state_dir"]
