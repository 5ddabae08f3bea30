"""What the export job keeps on local disk: status file, verified record, run lock, atomic writes.

Everything lives under ``<state dir>/plans/<plan name>/`` (``imagekit.state``) unless the plan's
``outputs`` moves the status or metrics file:

    status.json     the last run: steps, failures, per role and store the newest image
    metrics.prom    Prometheus textfile metrics (node_exporter's textfile collector)
    verified.json   per repository id, per image id: when and how its data was last verified
    run.lock        held (flock) while run-export runs; holds the holder's pid, host, start time

The verified record is keyed by the repository's id (from its config), not its URL, so moving a
store keeps the record and two stores never share entries; images pruned from a store leave it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from imagekit.errors import InputError, PlanError
from imagekit.fsutil import publish
from imagekit.plans.model import Plan

PLANS_FOLDER = "plans"


@dataclass(frozen=True)
class PlanPaths:
    folder: Path
    status: Path
    metrics: Path
    verified: Path
    lock: Path

    @staticmethod
    def of(plan: Plan, state_dir: Path) -> PlanPaths:
        folder = state_dir / PLANS_FOLDER / plan.name
        return PlanPaths(
            folder=folder,
            status=plan.outputs.status_file or folder / "status.json",
            metrics=plan.outputs.metrics_file or folder / "metrics.prom",
            verified=folder / "verified.json",
            lock=folder / "run.lock",
        )


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a hidden temporary file beside ``path``, then rename it into place.

    Readers (a monitoring agent, ``imagekit status``) see the old file or the new one, never a
    half-written one; the temporary name does not end in ``.prom`` so a textfile collector
    never reads it. Mode 0644 on purpose: status, metrics, journals and reports hold no secret
    (store names, image ids, times, endpoints) and the monitoring agent reading them usually
    runs as another user. Secrets and trust records go through ``imagekit.state.write_private``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, 0o644)
        publish(Path(tmp), path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, doc: Any) -> None:
    write_atomic(path, json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> Any:
    """The document at ``path``; None when there is none yet."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise InputError(
            f"{path}: unreadable ({exc})", hint="delete it; the next run rewrites it"
        ) from exc


# -- verified record -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    at: str  # ISO 8601 UTC
    level: str  # "sample" (chunks read back) or "all" (every chunk of the store)
    chunks: int  # chunks read and authenticated

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at, "level": self.level, "chunks": self.chunks}


class VerifiedRecord:
    """Repository id → image id → the image's last successful data verification."""

    def __init__(self, doc: Mapping[str, Any] | None = None):
        self._repos: dict[str, dict[str, Verification]] = {}
        for repo_id, entry in (doc or {}).items():
            images = entry.get("images", {}) if isinstance(entry, Mapping) else {}
            self._repos[repo_id] = {
                image: Verification(str(v["at"]), str(v["level"]), int(v["chunks"]))
                for image, v in images.items()
            }
        self._urls = {k: str(v.get("url", "")) for k, v in (doc or {}).items()}

    @staticmethod
    def load(path: Path) -> VerifiedRecord:
        return VerifiedRecord(read_json(path))

    def get(self, repo_id: str, image_id: str) -> Verification | None:
        return self._repos.get(repo_id, {}).get(image_id)

    def mark(self, repo_id: str, url: str, image_id: str, verification: Verification) -> None:
        self._repos.setdefault(repo_id, {})[image_id] = verification
        self._urls[repo_id] = url

    def keep_only(self, repo_id: str, image_ids: Iterable[str]) -> None:
        """Forget images no longer in the store (pruned)."""
        keep = set(image_ids)
        images = self._repos.get(repo_id, {})
        self._repos[repo_id] = {k: v for k, v in images.items() if k in keep}

    def as_dict(self) -> dict[str, Any]:
        return {
            repo_id: {
                "url": self._urls.get(repo_id, ""),
                "images": {k: v.as_dict() for k, v in sorted(images.items())},
            }
            for repo_id, images in sorted(self._repos.items())
        }

    def save(self, path: Path) -> None:
        write_json(path, self.as_dict())


# -- run lock ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LockHolder:
    pid: int
    host: str
    started: float

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started))
        return f"pid {self.pid} on {self.host}, since {when}"


def _read_holder(fd: int) -> LockHolder | None:
    os.lseek(fd, 0, os.SEEK_SET)
    data = os.read(fd, 4096)
    try:
        doc = json.loads(data)
        return LockHolder(int(doc["pid"]), str(doc["host"]), float(doc["started"]))
    except (ValueError, KeyError, TypeError):
        return None


class RunLock:
    """One run at a time: an exclusive ``flock`` on a lock file that names its holder.

    The kernel drops a ``flock`` when its holder dies, however it dies, so a lock file left
    behind by a crash is *stale* by construction: the next run takes it and reports the dead
    holder (``stale``). The file is never deleted (deleting a locked file lets a third process
    lock a new file while the second still holds the old one); it is emptied on release.
    """

    def __init__(self, path: Path, what: str):
        self.path = path
        self.what = what
        self.stale: LockHolder | None = None
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            who = holder.describe() if holder else "another process"
            raise PlanError(
                f"{self.what} is already running ({who})",
                hint=f"wait for it to finish; lock file {self.path}",
            ) from None
        self.stale = _read_holder(fd)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing releases the flock
        self._fd = None


__all__ = [
    "LockHolder",
    "PlanPaths",
    "RunLock",
    "Verification",
    "VerifiedRecord",
    "read_json",
    "write_atomic",
    "write_json",
]
