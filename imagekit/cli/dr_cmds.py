"""The emergency and its rehearsal: ``failover`` and ``rehearse``.

Both read only the plan's off-AWS stores (never AWS) and record their state under the state
directory (``IMAGEKIT_STATE_DIR``), so ``failover`` resumes where an interrupted one stopped and
``rehearse`` can clean up after a killed one.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from imagekit.cli.app import cli
from imagekit.cli.common import adapt_option
from imagekit.cli.output import emit, json_option, note, progress_bar
from imagekit.errors import PlanError, UsageError
from imagekit.state import state_dir

if TYPE_CHECKING:
    from imagekit.plans.model import Plan

_plan_option = click.option(
    "--plan",
    "plan_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The plan file (YAML).",
)
_target_option = click.option("--target", required=True, help="A target of the plan.")


def parse_at(text: str | None) -> datetime | None:
    """``--at``: an ISO 8601 time (``2026-11-25T02:30Z``, ``2026-11-25``); UTC unless given."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"--at {text!r}: not a time", hint="use ISO 8601, e.g. 2026-11-25T02:30Z"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (systemd stop, a CI timeout) unwinds like Ctrl-C, so teardown code runs."""

    def raise_interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _endpoint_lines(roles: list[dict[str, Any]]) -> list[str]:
    lines = []
    for role in roles:
        state = role.get("status", "pending")
        where = ", ".join(
            f"{e['node']} {e['guest_port']} → {e['host']}:{e['port']}"
            for e in role.get("endpoints") or ()
        )
        lines.append(f"  {role['role']}: {state}{' — ' + where if where else ''}")
    return lines


def _stack_text(doc: dict[str, Any]) -> str:
    lines = [f"{doc['kind']} of plan {doc['plan']} to {doc['target']} from store {doc['store']}"]
    lines += [f"  passed over {f}" for f in doc.get("fallbacks") or ()]
    lines += _endpoint_lines(doc["roles"])
    stages = ", ".join(f"{s['name']} {s['seconds']:.1f} s" for s in doc["stages"] if s["seconds"])
    lines.append(f"  stages: {stages}")
    rpo = doc.get("rpo_seconds")
    lines.append(
        f"  RTO {doc['rto_seconds']:.1f} s, RPO {'-' if rpo is None else f'{rpo:.0f} s'}"
        f" — {'healthy' if doc['healthy'] else 'NOT healthy'}"
    )
    if doc.get("error"):
        lines.append(f"  error: {doc['error']}")
    for key in ("report_html", "report_json"):
        if doc.get(key):
            lines.append(f"  {key.replace('_', '.')}: {doc[key]}")
    return "\n".join(lines)


@cli.command()
@_plan_option
@_target_option
@click.option("--at", "at_text", help="Boot the newest images frozen at or before this time.")
@click.option("--dry-run", is_flag=True, help="Print every action; boot and write nothing.")
@click.option("--teardown", "end", is_flag=True, help="End the failover: delete all it booted.")
@adapt_option
@json_option
def failover(
    plan_path: Path,
    target: str,
    at_text: str | None,
    dry_run: bool,
    end: bool,
    adapt: bool | None,
    as_json: bool,
) -> None:
    """Boot the plan's stack on TARGET from the off-AWS stores (no AWS calls), role by role.

    Roles boot in depends_on order, each gated on its health checks. Re-running continues an
    interrupted failover: healthy roles are kept, nothing is booted twice. Falls back to a
    replica store when the primary cannot serve.
    """
    from imagekit.plans.failover import failover as run_failover
    from imagekit.plans.failover import planned_failover, teardown_stack
    from imagekit.plans.load import load_plan

    plan = _with_adapt(load_plan(plan_path), target, adapt)
    plan_dir = plan_path.resolve().parent
    at = parse_at(at_text)
    if end:
        removed = teardown_stack(plan, target, state_dir=state_dir(), say=note)
        emit({"torn_down": removed}, as_json, lambda r: f"tore down {len(r['torn_down'])} runs")
        return
    if dry_run:
        actions = planned_failover(plan, target, state_dir=state_dir(), plan_dir=plan_dir, at=at)
        emit({"dry_run": True, "actions": actions}, as_json, lambda r: "\n".join(r["actions"]))
        return
    with _sigterm_interrupts(), progress_bar() as bar:
        outcome = run_failover(
            plan, target, state_dir=state_dir(), plan_dir=plan_dir, at=at, progress=bar, say=note
        )
    doc = outcome.as_dict()
    emit(doc, as_json, _stack_text)
    if not outcome.healthy:
        raise PlanError(
            f"failover of plan {plan.name} to {target} is not complete: {outcome.error}",
            hint="fix the cause and run the same command again: healthy roles are kept",
        )


@cli.command()
@_plan_option
@_target_option
@click.option(
    "--report-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where report.json/report.html go (default: the plan's folder in the state dir).",
)
@click.option(
    "--twin",
    is_flag=True,
    help="Run TARGET's stack here on the twin of its cloud (gcp-twin, azure-twin, "
    "openstack-twin; needs root), reported as target TARGET-twin.",
)
@adapt_option
@json_option
def rehearse(
    plan_path: Path,
    target: str,
    report_dir: Path | None,
    twin: bool,
    adapt: bool | None,
    as_json: bool,
) -> None:
    """Fail over into TARGET as a rehearsal, measure RTO by stage and RPO, always tear down.

    Writes report.json and a self-contained report.html (stage timeline, trend across earlier
    rehearsals in the same folder). Exit 1 when the stack did not become healthy.
    """
    from imagekit.plans.load import load_plan
    from imagekit.plans.rehearse import rehearse as run_rehearsal

    plan = _with_adapt(load_plan(plan_path), target, adapt)
    with _sigterm_interrupts(), progress_bar() as bar:
        report = run_rehearsal(
            plan,
            target,
            state_dir=state_dir(),
            report_dir=report_dir,
            plan_dir=plan_path.resolve().parent,
            progress=bar,
            say=note,
            twin=twin,
        )
    emit(report, as_json, _stack_text)
    if not report["healthy"]:
        raise PlanError(
            f"rehearsal of plan {plan.name} on {target} failed: {report['error']}",
            hint=f"see {report['report_html']}",
        )


def _with_adapt(plan: Plan, target: str, adapt: bool | None) -> Plan:
    """``plan`` with ``--adapt``/``--no-adapt`` applied to ``target`` (its twin inherits it)."""
    if adapt is None or target not in plan.targets:
        return plan  # an unknown target is reported by the job itself, with the plan's names
    spec = plan.targets[target].model_copy(update={"adapt": adapt})
    return plan.model_copy(update={"targets": {**plan.targets, target: spec}})


__all__ = ["failover", "parse_at", "rehearse"]
