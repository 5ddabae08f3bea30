"""Rehearsal: a failover into a target, measured, then always torn down.

A rehearsal boots the stack exactly as ``failover`` would (same store fallback, same waves and
health gates), records how long each stage took (fetch, decrypt, convert, upload, import, boot,
healthy) and the RPO of the images it used, and tears everything down whatever happens: success,
a failed health check, an error, Ctrl-C or SIGTERM. A rehearsal killed outright (SIGKILL, power)
leaves its journal; the next rehearsal of the plan tears its runs down before it starts.

Reports go to ``--report-dir`` (default ``<state dir>/plans/<plan>/rehearsals``):

    rehearsal-<UTC time>.json   one per rehearsal, kept: the trend is drawn from them
    report.json, report.html    the latest rehearsal (the HTML page is self-contained)
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imagekit.errors import ImagekitError, UsageError
from imagekit.plans import report_html
from imagekit.plans.failover import (
    FAILOVER_FOLDER,
    Journal,
    ProviderFactory,
    Say,
    StackOutcome,
    _role_row,
    _stack_lock,
    run_stack,
    target_provider,
)
from imagekit.plans.model import Plan
from imagekit.plans.records import PlanPaths, write_atomic
from imagekit.plans.twin import with_twin
from imagekit.progress import Progress
from imagekit.providers.boot import teardown
from imagekit.providers.registry import create_provider
from imagekit.providers.runs import RunStore

REPORT_VERSION = 1
_ARCHIVE = re.compile(r"^rehearsal-\d{8}T\d{6}Z(?:-\d+)?\.json$")


def rehearsals_dir(plan: Plan, state_dir: Path) -> Path:
    return PlanPaths.of(plan, state_dir).folder / "rehearsals"


def _journals(plan: Plan, state_dir: Path) -> Path:
    return PlanPaths.of(plan, state_dir).folder / FAILOVER_FOLDER / "rehearsals"


def _tear_down_all(journal: Journal, runs: RunStore, say: Say) -> list[str]:
    """Tear down every run the journal names; return what could not be removed."""
    left = []
    for run_id in journal.run_ids():
        try:
            teardown(runs, run_id)
            say(f"tore down {run_id}")
        except UsageError:
            continue  # no such run: it never got far, or its boot already undid it
        except ImagekitError as exc:
            left.append(f"{run_id}: {exc.message.splitlines()[0]}")
    return left


def clean_leftovers(plan: Plan, state_dir: Path, say: Say = lambda _: None) -> list[str]:
    """Tear down what killed rehearsals left (their journals remain); the runs removed."""
    folder = _journals(plan, state_dir)
    removed: list[str] = []
    if not folder.is_dir():
        return removed
    runs = RunStore(state_dir)
    for path in sorted(folder.glob("*.json")):
        journal = Journal.load(path)
        if journal is None:
            continue
        say(f"a rehearsal started {journal.doc['started']} did not finish: tearing it down")
        ids = journal.run_ids()
        left = _tear_down_all(journal, runs, say)
        if left:
            raise ImagekitError(
                f"leftovers of an earlier rehearsal could not be removed: {'; '.join(left)}",
                hint="`imagekit teardown RUN_ID` once the cause is fixed",
            )
        path.unlink()
        removed += ids
    return removed


def build_report(
    plan: Plan, outcome: StackOutcome, torn_down: bool, left: list[str]
) -> dict[str, Any]:
    """The report document (``report.json``): the outcome plus objectives and teardown."""
    doc = outcome.as_dict()
    rto, rpo = doc["rto_seconds"], doc["rpo_seconds"]
    # A stack that never became healthy did not recover: however short the time until it
    # failed, the objective was not achieved (never "met").
    objective = plan.objectives.rto
    rto_met = None if objective is None else bool(doc["healthy"]) and rto <= objective
    doc.update(
        {
            "version": REPORT_VERSION,
            "objectives": {
                "rto_seconds": plan.objectives.rto,
                "rpo_seconds": plan.objectives.rpo,
                "rto_met": rto_met,
                "rpo_met": None if rpo is None else rpo <= plan.objectives.rpo,
            },
            "torn_down": torn_down and not left,
            "teardown_left": left,
        }
    )
    return doc


def load_history(report_dir: Path) -> list[dict[str, Any]]:
    """Earlier rehearsals' reports in ``report_dir``, oldest first.

    Unreadable and interrupted ones are left out."""
    history: list[dict[str, Any]] = []
    if not report_dir.is_dir():
        return history
    for path in sorted(p for p in report_dir.iterdir() if _ARCHIVE.match(p.name)):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        # An interrupted rehearsal measured nothing: it would only bend the trend.
        if isinstance(doc, dict) and "rto_seconds" in doc and doc.get("error") != "interrupted":
            history.append(doc)
    return history


def write_reports(report: dict[str, Any], report_dir: Path) -> dict[str, Path]:
    """Archive the report, then write ``report.json`` and ``report.html`` (atomically)."""
    report_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    archive = report_dir / f"rehearsal-{stamp}.json"
    n = 1
    while archive.exists():
        archive = report_dir / f"rehearsal-{stamp}-{n}.json"
        n += 1
    history = load_history(report_dir)  # the earlier ones: render adds this one last
    text = json.dumps(report, indent=2, sort_keys=True) + "\n"
    write_atomic(archive, text)
    write_atomic(report_dir / "report.json", text)
    page = report_html.render(report, history)
    write_atomic(report_dir / "report.html", page)
    return {
        "archive": archive,
        "report_json": report_dir / "report.json",
        "report_html": report_dir / "report.html",
    }


def rehearse(
    plan: Plan,
    target: str,
    *,
    state_dir: Path,
    report_dir: Path | None = None,
    plan_dir: Path | None = None,
    progress: Progress | None = None,
    say: Say = lambda _: None,
    factory: ProviderFactory = create_provider,
    twin: bool = False,
) -> dict[str, Any]:
    """Rehearse a failover to ``target``; the report (with the paths it was written to).

    Always tears down what it booted, then writes the report, also when the rehearsal failed;
    Ctrl-C (``KeyboardInterrupt``) is re-raised after both. ``twin``: run the target's stack on
    the twin of its cloud (``plans/twin.py``), reported as target ``<target>-twin``.
    """
    if twin:
        plan, target = with_twin(plan, target)
    report_dir = report_dir or rehearsals_dir(plan, state_dir)
    # A configuration mistake (no such target, a credential unset) is the user's to fix (exit 2),
    # not a failed rehearsal: check it before anything is booted or reported.
    if target not in plan.targets:
        raise UsageError(
            f"plan {plan.name} has no target {target!r}",
            hint=f"targets: {', '.join(plan.targets) or 'none'}",
        )
    target_provider(plan, target, state_dir, factory)
    with _stack_lock(plan, state_dir, target, "rehearsal"):
        clean_leftovers(plan, state_dir, say)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = _journals(plan, state_dir) / f"{stamp}.json"
        journal = Journal.new(path, plan, target, "rehearsal")
        runs = RunStore(state_dir)
        outcome: StackOutcome | None = None
        interrupted: BaseException | None = None
        failure: str | None
        try:
            outcome = run_stack(
                plan, target, journal, state_dir=state_dir, plan_dir=plan_dir,
                progress=progress, say=say, factory=factory,
            )  # fmt: skip
        except ImagekitError as exc:
            failure = str(exc).splitlines()[0]
        except BaseException as exc:  # Ctrl-C, SIGTERM: tear down, report, then re-raise
            interrupted = exc
            failure = "interrupted"
        else:
            failure = outcome.error
        finally:
            left = _tear_down_all(journal, runs, say)
        if not left:
            journal.path.unlink(missing_ok=True)
        if outcome is None:
            started = datetime.fromisoformat(journal.doc["started"].replace("Z", "+00:00"))
            outcome = StackOutcome(
                plan.name, target, "rehearsal", str(journal.doc.get("store") or ""), (),
                started.timestamp(), datetime.now(UTC).timestamp(),
                [_role_row(r, started.timestamp()) for r in journal.doc["roles"].values()],
            )  # fmt: skip
        outcome.error = failure
        report = build_report(plan, outcome, torn_down=True, left=left)
        paths = write_reports(report, report_dir)
        report.update({k: str(v) for k, v in paths.items()})
    if interrupted is not None:
        raise interrupted
    return report


__all__ = [
    "build_report",
    "clean_leftovers",
    "load_history",
    "rehearsals_dir",
    "rehearse",
    "write_reports",
]
