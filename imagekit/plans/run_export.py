"""``run-export``: the periodic job of a plan, one run at a time.

    export (every source → the primary store, incremental; an instance: a new snapshot set)
      → retention on the primary → copy to every replica → retention on every replica
      → verify (structure, plus a sample of each newest image's data; ``verify_all``: all data)
      → guest preflight (each role's newest image inspected for every cloud target: preflight.py)
      → status file, verified record and Prometheus metrics, written atomically

A failing step does not stop the others (an unreachable replica must not cost the primary its
export); every failure is collected, named in the status file and the metrics, and returned, and
the CLI exits non-zero. A role whose newest AMI is already in the primary store is not exported
again. Steps touch only the plan's own lineages, except retention, which applies to the whole
store: give each plan its own stores (or prefixes).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions

from imagekit.errors import ImagekitError, StoreError, WrongKey
from imagekit.export.ami import AmiSpec
from imagekit.export.aws import client, translate
from imagekit.export.job import AMI_METADATA, Selection, block_reader, export_ami, resolve_amis
from imagekit.plans import metrics
from imagekit.plans.model import Plan
from imagekit.plans.preflight import Verdict, blocked, guest_targets, preflight
from imagekit.plans.records import (
    PlanPaths,
    RunLock,
    Verification,
    VerifiedRecord,
    read_json,
    write_atomic,
    write_json,
)
from imagekit.plans.run_instances import export_instance_role, instance_roles
from imagekit.plans.status import (
    StatusReport,
    StoreListing,
    check_rollbacks,
    newest,
    summarize,
)
from imagekit.plans.stores import open_store
from imagekit.progress import Progress
from imagekit.store.copy import copy_images
from imagekit.store.manifest import StoredImage, format_time
from imagekit.store.prune import prune
from imagekit.store.repository import Repository
from imagekit.store.trust import SeenImages
from imagekit.store.verify import verify

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Failure:
    step: str  # export, retention, copy, verify, preflight, open
    subject: str  # the role or store
    message: str

    def __str__(self) -> str:
        return f"{self.step} {self.subject}: {self.message}"

    def as_dict(self) -> dict[str, str]:
        return {"step": self.step, "subject": self.subject, "message": self.message}


@dataclass
class RunReport:
    plan: str
    started: float
    finished: float = 0.0
    exports: list[dict[str, Any]] = field(default_factory=list)
    copies: list[dict[str, Any]] = field(default_factory=list)
    retention: list[dict[str, Any]] = field(default_factory=list)
    verification: list[dict[str, Any]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    status: StatusReport | None = None
    last_success: float | None = None

    @property
    def ok(self) -> bool:
        return not self.failures

    def run_dict(self) -> dict[str, Any]:
        return {
            "started": _iso(self.started),
            "finished": _iso(self.finished),
            "seconds": round(self.finished - self.started, 3),
            "ok": self.ok,
            "failures": [f.as_dict() for f in self.failures],
            "warnings": list(self.warnings),
            "last_success": _iso(self.last_success) if self.last_success else None,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "plan": self.plan,
            "run": self.run_dict(),
            "exports": self.exports,
            "copies": self.copies,
            "retention": self.retention,
            "verification": self.verification,
            "status": self.status.as_dict() if self.status else None,
        }


def _iso(t: float) -> str:
    return format_time(datetime.fromtimestamp(t, UTC))


class _Step:
    """Runs one step and turns an ``ImagekitError`` into a recorded failure."""

    def __init__(self, report: RunReport):
        self.report = report

    def __call__(self, step: str, subject: str) -> _Guard:
        return _Guard(self.report, step, subject)


class _Guard:
    def __init__(self, report: RunReport, step: str, subject: str):
        self.report, self.step, self.subject = report, step, subject
        self.failed = False

    def __enter__(self) -> _Guard:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> bool:
        if isinstance(exc, ImagekitError):
            log.warning("%s %s failed: %s", self.step, self.subject, exc)
            self.report.failures.append(Failure(self.step, self.subject, str(exc)))
            self.failed = True
            return True
        if isinstance(exc, Exception):
            # A bug (or a library's untranslated error) in one role's step must not cost the
            # other roles their export: it becomes this step's failure, traceback in the log.
            log.error("%s %s failed unexpectedly", self.step, self.subject, exc_info=exc)
            message = f"unexpected {type(exc).__name__}: {exc} (a bug: the traceback is in the log)"
            self.report.failures.append(Failure(self.step, self.subject, message))
            self.failed = True
            return True
        return False  # KeyboardInterrupt, SystemExit: the run stops


def run_export(
    plan: Plan,
    *,
    state_dir: Path,
    verify_all: bool = False,
    progress: Progress | None = None,
    rng: random.Random | None = None,
) -> RunReport:
    """Run the job once under the plan's lock; write status, verified record and metrics."""
    paths = PlanPaths.of(plan, state_dir)
    with RunLock(paths.lock, f"run-export of plan {plan.name}") as lock:
        report = RunReport(plan.name, time.time())
        if lock.stale is not None:
            report.warnings.append(
                f"a previous run ({lock.stale.describe()}) ended without releasing its lock"
            )
        previous = read_json(paths.status)
        verified = VerifiedRecord.load(paths.verified)
        try:
            _run(plan, report, verified, state_dir, verify_all, progress, rng or random.Random())
        finally:
            report.finished = time.time()
            last = (previous or {}).get("run", {}).get("last_success") if previous else None
            report.last_success = report.finished if report.ok else _parse(last)
            verified.save(paths.verified)
            write_json(paths.status, report.as_dict())
            if report.status is not None:
                write_atomic(paths.metrics, metrics.render(_figures(report), report.status))
    return report


def _parse(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _figures(report: RunReport) -> metrics.RunFigures:
    uploaded: dict[str, int] = {}
    for row in [*report.exports, *report.copies]:
        uploaded[row["store"]] = uploaded.get(row["store"], 0) + int(row.get("bytes_uploaded", 0))
    read = {row["role"]: int(row.get("bytes_read", 0)) for row in report.exports}
    return metrics.RunFigures(
        plan=report.plan,
        started=report.started,
        finished=report.finished,
        ok=report.ok,
        failures=len(report.failures),
        last_success=report.last_success,
        bytes_read=read,
        bytes_uploaded=uploaded,
    )


def _run(
    plan: Plan,
    report: RunReport,
    verified: VerifiedRecord,
    state_dir: Path,
    verify_all: bool,
    progress: Progress | None,
    rng: random.Random,
) -> None:
    step = _Step(report)
    lineages = {plan.image_name(role) for role in plan.sources}
    with ExitStack() as stack:
        repos: dict[str, Repository] = {}
        for spec in plan.stores.all():
            with step("open", spec.name):
                repos[spec.name] = stack.enter_context(open_store(spec, state_dir))
        primary = repos.get(plan.stores.primary.name)
        if primary is not None:
            for role, ami, guard in _newest_amis(plan, step):
                if guard.failed or ami is None:
                    continue
                with step("export", role):
                    report.exports.append(
                        _export_role(plan, primary, role, ami, state_dir, progress)
                    )
            for role in instance_roles(plan):  # a fresh snapshot set each run
                with step("export", role):
                    row = export_instance_role(
                        plan, primary, role, state_dir, progress, report.warnings
                    )
                    report.exports.append(row)
            _retain(plan, report, step, plan.stores.primary.name, primary, state_dir)
            for spec in plan.stores.replicas:
                replica = repos.get(spec.name)
                if replica is None:
                    continue
                with step("copy", spec.name):
                    refs = [i.id for i in primary.list_images() if i.manifest.name in lineages]
                    copied = copy_images(primary, replica, refs, progress=progress)
                    report.copies.append(
                        {
                            "store": spec.name,
                            "copied": [r.image.id for r in copied.copied],
                            "skipped": len(copied.skipped),
                            "bytes_uploaded": sum(r.bytes_uploaded for r in copied.copied),
                        }
                    )
                _retain(plan, report, step, spec.name, replica, state_dir)
        listings = []
        for spec in plan.stores.all():
            repo = repos.get(spec.name)
            if repo is None:
                opened = [f.message for f in report.failures if f.subject == spec.name]
                listings.append(StoreListing(spec.name, error=opened[0] if opened else "not open"))
                continue
            images: list[StoredImage] | None = None
            with step("verify", spec.name):
                repo_id = repo.config.id.hex()
                images = repo.list_images()
                rollbacks = check_rollbacks(plan, state_dir, repo.url, images)
                listings.append(
                    StoreListing(spec.name, repo_id, tuple(images), rollbacks=rollbacks)
                )
                for finding in rollbacks.values():
                    report.failures.append(Failure("verify", spec.name, finding))
                verified.keep_only(repo_id, [i.id for i in images])  # pruned ones leave
                try:
                    _verify_store(plan, report, verified, spec.name, repo, images, verify_all, rng)
                except Exception:
                    # Proof over hope: a store that failed verification has no verified image,
                    # nor one whose verification crashed (the step guard records the bug).
                    verified.keep_only(repo_id, [])
                    raise
            if images is None:
                listings.append(StoreListing(spec.name, error=report.failures[-1].message))
        guests: list[Verdict] = []
        if primary is not None:
            with step("preflight", plan.stores.primary.name):
                guests = _preflight(plan, primary, state_dir, report)
        report.status = summarize(
            plan, listings, verified, datetime.now(UTC), report.run_dict(), guests=guests
        )


def _preflight(
    plan: Plan, primary: Repository, state_dir: Path, report: RunReport
) -> list[Verdict]:
    """The guest preflight of every role's newest image; each blocked target is a failure."""
    if not guest_targets(plan):
        return []
    from imagekit.providers.local.qemu import detect_accel

    images = primary.list_images()
    verdicts = preflight(plan, primary, images, state_dir, report.warnings, accel=detect_accel())
    for verdict in blocked(verdicts):
        why = "; ".join(verdict.blockers)
        report.failures.append(
            Failure("preflight", verdict.role, f"not bootable on {verdict.target}: {why}")
        )
    return verdicts


def _newest_amis(plan: Plan, step: _Step) -> Iterator[tuple[str, AmiSpec | None, _Guard]]:
    """Per role, the newest AMI its source selects (one DescribeImages per role)."""
    sessions: dict[str | None, Any] = {}
    for role, source in plan.sources.items():
        if source.instance is not None:
            continue  # run_instances exports it
        ami = None
        with step("export", role) as guard:
            region = plan.region(role)
            if region not in sessions:
                sess = boto3.session.Session(profile_name=plan.aws.profile, region_name=region)
                sessions[region] = client(sess, "ec2")
            if source.ami:
                selection = Selection(image_ids=(source.ami,))
            else:
                selection = Selection(
                    filters=source.describe_filters(),
                    name_patterns=(source.name,) if source.name else (),
                )
            amis = resolve_amis(sessions[region], str(region), selection)
            ami = max(amis, key=lambda a: (a.creation_date, a.image_id))
        yield role, ami, guard


def _export_role(
    plan: Plan,
    primary: Repository,
    role: str,
    ami: AmiSpec,
    state_dir: Path,
    progress: Progress | None,
) -> dict[str, Any]:
    name = plan.image_name(role)
    current = newest(primary.list_images(), name)
    row: dict[str, Any] = {"role": role, "store": plan.stores.primary.name, "ami": ami.image_id}
    held = current.manifest.metadata.get(AMI_METADATA) if current else None
    if current is not None and isinstance(held, Mapping) and held.get("image_id") == ami.image_id:
        return {**row, "image_id": current.id, "mode": "current", "bytes_read": 0}
    if ami.licence_warning:
        log.warning("%s", ami.licence_warning)
    try:
        sess = boto3.session.Session(profile_name=plan.aws.profile, region_name=ami.region)
        ebs = client(sess, "ebs")
    except botocore.exceptions.BotoCoreError as exc:
        raise translate(exc, "session", ami.image_id) from exc
    reader = block_reader(sess, ebs, plan.aws.concurrency)
    result = export_ami(
        primary,
        ebs,
        ami,
        image_name=name,
        concurrency=plan.aws.concurrency,
        state_dir=state_dir,
        progress=progress,
        blocks=reader,
    )
    modes = sorted({v.mode for v in result.volumes})
    return {
        **row,
        "image_id": result.image.id,
        "mode": "+".join(modes),
        "bytes_read": result.bytes_read,
        "bytes_uploaded": result.bytes_uploaded,
        "seconds": round(result.seconds, 3),
    }


def _retain(
    plan: Plan, report: RunReport, step: _Step, name: str, repo: Repository, state_dir: Path
) -> None:
    policy = plan.retention_for(plan.store(name)).policy()
    if policy.empty:
        return  # no policy keeps everything: nothing to prune
    with step("retention", name):
        pruned = prune(repo, policy)
        # What this host pruned is no rollback when it is gone next time.
        SeenImages(state_dir).forget(repo.url, [i.id for i in pruned.plan.drop], pruned.plan.keep)
        report.retention.append(
            {
                "store": name,
                "dropped": [i.id for i in pruned.plan.drop],
                "packs_deleted": pruned.packs_deleted,
                "bytes_freed": pruned.bytes_freed,
            }
        )


def _verify_store(
    plan: Plan,
    report: RunReport,
    verified: VerifiedRecord,
    name: str,
    repo: Repository,
    images: list[StoredImage],
    verify_all: bool,
    rng: random.Random,
) -> None:
    """Structure always; data: every chunk (``verify_all``) or a sample of each newest image."""
    now = format_time(datetime.now(UTC))
    repo_id = repo.config.id.hex()
    row: dict[str, Any] = {"store": name, "level": "all" if verify_all else "sample"}
    report.verification.append(row)
    try:
        checked = verify(repo, read_data=verify_all)
    except WrongKey as exc:
        row["skipped"] = str(exc)
        report.warnings.append(f"verify {name}: data not verified: {exc}")
        return
    row.update(checked.as_dict())
    if not checked.ok:
        first = "; ".join(checked.problems[:3])
        raise StoreError(f"{len(checked.problems)} problems: {first}", hint="see status.json")
    lineage = {plan.image_name(role) for role in plan.sources}
    if verify_all:
        for stored in images:
            if stored.manifest.name in lineage:
                count = sum(len(v.chunks) for v in stored.manifest.volumes)
                verified.mark(repo_id, repo.url, stored.id, Verification(now, "all", count))
        return
    index = repo.load_index()
    sampled: list[str] = []
    for role in plan.sources:
        latest = newest(images, plan.image_name(role))
        if latest is None:
            continue
        image = latest
        chunk_ids = [cid for v in image.manifest.volumes for _, cid in v.chunks]
        picks = rng.sample(chunk_ids, min(plan.verify.sample_chunks, len(chunk_ids)))
        try:
            for cid in picks:
                loc = index.get(cid)
                if loc is None:
                    raise StoreError(f"image {image.id[:12]}: chunk {cid.hex()[:16]} in no index")
                repo.read_chunk(loc, cid)
        except WrongKey as exc:
            row["skipped"] = str(exc)
            report.warnings.append(f"verify {name}: data not verified: {exc}")
            return
        verified.mark(repo_id, repo.url, image.id, Verification(now, "sample", len(picks)))
        sampled.append(image.id)
    row["sampled_images"] = sampled


__all__ = ["Failure", "RunReport", "run_export"]
