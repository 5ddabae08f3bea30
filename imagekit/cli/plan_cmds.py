"""Plan commands: ``plan validate``, ``run-export``, ``status``, ``schedule``."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from imagekit.cli.app import cli
from imagekit.cli.output import emit, json_option, note, progress_bar
from imagekit.errors import PlanError, PlanInvalid, UsageError
from imagekit.state import state_dir

if TYPE_CHECKING:
    from imagekit.plans.run_export import RunReport

# The plan modules (pydantic, boto3 through run_export) are imported inside each command, so
# `imagekit --help` and the other commands do not pay for them.

plan_option = click.option(
    "--plan",
    "plan_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The plan file (YAML).",
)


@cli.group("plan")
def plan_group() -> None:
    """Plan files: one production stack, its stores, objectives and targets."""


@plan_group.command("validate")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@json_option
def plan_validate(path: Path, as_json: bool) -> None:
    """Check PATH; report every problem as FILE:LINE: message (exit 2 if any)."""
    from imagekit.plans.load import read_plan
    from imagekit.plans.model import describe

    loaded = read_plan(path)
    if as_json:
        doc: dict[str, Any] = {
            "ok": loaded.plan is not None,
            "problems": [
                {"file": p.file, "line": p.line, "message": p.message} for p in loaded.problems
            ],
        }
        if loaded.plan is not None:
            doc["plan"] = describe(loaded.plan)
        emit(doc, True, str)
    else:
        for problem in loaded.problems:
            click.echo(str(problem))
    if loaded.plan is None:
        count = len(loaded.problems)
        raise PlanInvalid(f"{path}: {count} problem{'s' if count != 1 else ''}")
    if not as_json:
        summary = describe(loaded.plan)
        click.echo(
            f"{path}: ok — plan {summary['name']}: roles {', '.join(summary['roles'])}; "
            f"stores {', '.join(summary['stores'])}; targets {', '.join(summary['targets']) or '-'}"
        )


@cli.command("run-export")
@plan_option
@click.option("--verify-all", is_flag=True, help="Read back every chunk of every store.")
@json_option
def run_export_command(plan_path: Path, verify_all: bool, as_json: bool) -> None:
    """The periodic job: export every source, copy to replicas, retention, verify, report.

    Writes the status file and Prometheus metrics; exits 1 naming every failure.
    """
    from imagekit.plans.load import load_plan
    from imagekit.plans.run_export import run_export

    plan = load_plan(plan_path)
    with progress_bar() as bar:
        report = run_export(plan, state_dir=state_dir(), verify_all=verify_all, progress=bar)
    for warning in report.warnings:
        note(f"warning: {warning}")
    emit(report.as_dict(), as_json, lambda _: _human_run(report))
    if not report.ok:
        names = "; ".join(str(f) for f in report.failures)
        raise PlanError(f"run-export of plan {plan.name}: {len(report.failures)} failed: {names}")


def _human_run(report: RunReport) -> str:
    from imagekit.plans.model import format_duration
    from imagekit.plans.status import render

    lines = []
    for row in report.exports:
        lines.append(
            f"export {row['role']}: {row.get('instance') or row['ami']} → "
            f"{row['image_id'][:12]} ({row['mode']}, "
            f"{row.get('bytes_uploaded', 0):,} bytes uploaded)"
        )
    for row in report.copies:
        lines.append(f"copy → {row['store']}: {len(row['copied'])} images, {row['skipped']} there")
    for row in report.retention:
        lines.append(f"retention {row['store']}: {len(row['dropped'])} images dropped")
    for row in report.verification:
        lines.append(
            f"verify {row['store']}: {row.get('chunks_read', 0)} chunks read ({row['level']})"
        )
    if report.status is not None:
        lines.append(render(report.status))
    took = format_duration(report.finished - report.started)
    lines.append(f"run {'ok' if report.ok else 'FAILED'} in {took}")
    return "\n".join(lines)


@cli.command("status")
@plan_option
@json_option
def status_command(plan_path: Path, as_json: bool) -> None:
    """Per role and store: newest image, its age (RPO), verified, objectives met (exit 1 if not)."""
    from imagekit.plans.load import load_plan
    from imagekit.plans.status import gather, render

    plan = load_plan(plan_path)
    report = gather(plan, state_dir())
    emit(report.as_dict(), as_json, lambda _: render(report))
    if not report.ok:
        failing = ", ".join(f"{r.role}@{r.store}" for r in report.failing())
        raise PlanError(f"plan {plan.name}: objectives not met for {failing}")


def _find_imagekit() -> str:
    """The imagekit command of this installation: beside the interpreter (a venv), else PATH."""
    beside = Path(sys.executable).parent / "imagekit"
    if beside.is_file():
        return str(beside)
    found = shutil.which("imagekit")
    if found is None:
        raise UsageError("cannot find the imagekit command", hint="pass --imagekit PATH")
    return found


@cli.command("schedule")
@plan_option
@click.option("--print", "print_only", is_flag=True, help="Print the files instead of writing.")
@click.option("--cron", is_flag=True, help="Write the cron file (hosts without systemd).")
@click.option(
    "--dir",
    "folder",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where to write (default /etc/systemd/system, with --cron /etc/cron.d).",
)
@click.option(
    "--env-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="KEY=value file with the secrets the plan references (default /etc/imagekit/PLAN.env).",
)
@click.option("--imagekit", "executable", default=None, help="Path of the imagekit command.")
def schedule_command(
    plan_path: Path,
    print_only: bool,
    cron: bool,
    folder: Path | None,
    env_file: Path | None,
    executable: str | None,
) -> None:
    """Write (or print) a systemd service + timer pair, or a cron file, for run-export."""
    from imagekit.plans import schedule as schedule_mod
    from imagekit.plans.load import load_plan
    from imagekit.plans.records import write_atomic

    plan = load_plan(plan_path)
    command = executable or _find_imagekit()
    files = schedule_mod.render(
        plan,
        plan_path=plan_path.resolve(),
        imagekit=command,
        env_file=env_file or Path(f"/etc/imagekit/{plan.name}.env"),
    )
    name = files.unit_name
    if print_only:
        for filename, text in files.files.items():
            click.echo(f"# {filename}\n{text}")
        click.echo(f"# /etc/cron.d/{name} (hosts without systemd)\n{files.cron}", nl=False)
        return
    target = folder or Path("/etc/cron.d" if cron else "/etc/systemd/system")
    if not target.is_dir():
        raise UsageError(f"{target}: no such folder")
    chosen = {name: files.cron} if cron else files.files
    for filename, text in chosen.items():
        write_atomic(target / filename, text)
        note(f"wrote {target / filename}")
    if not cron:
        note(f"enable with: systemctl daemon-reload && systemctl enable --now {name}.timer")


__all__ = ["plan_group", "run_export_command", "schedule_command", "status_command"]
