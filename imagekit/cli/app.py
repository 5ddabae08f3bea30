"""The root command group, global options and the single error → exit-code mapping."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Sequence
from typing import NamedTuple

import click

from imagekit import __version__
from imagekit.errors import ExitCode, ImagekitError

log = logging.getLogger("imagekit")


class Listed(NamedTuple):
    """Where a command is defined and the line ``--help`` shows for it."""

    module: str
    help: str


#: Every command in pipeline order (AWS in → store → convert → clouds out → plans), with the
#: module that defines it and the first sentence of its docstring. The command modules import
#: boto3, libcloud, paramiko and pydantic, which take half a second; with this table ``--help``
#: and ``--version`` import none of them, and a command imports only its own module.
#: tests/test_cli_startup.py checks the table against the modules, so the two cannot drift.
COMMANDS: dict[str, Listed] = {
    "export": Listed(
        "imagekit.cli.export_cmd",
        "Export AMIs through the EBS direct APIs into STORE: incremental, verified, resumable.",
    ),
    "iam-policy": Listed(
        "imagekit.cli.export_cmd",
        "Print the least-privilege IAM policy (JSON) an export host needs.",
    ),
    "key": Listed(
        "imagekit.cli.store_cmds",
        "Identities (X25519 key pairs) and the key slots of a repository.",
    ),
    "store": Listed("imagekit.cli.store_cmds", "Create, check, prune and copy repositories."),
    "ingest": Listed(
        "imagekit.cli.store_cmds",
        "Store disk images DISK... (one volume each) as one image NAME.",
    ),
    "images": Listed("imagekit.cli.store_cmds", "List the images in a repository, oldest first."),
    "restore": Listed(
        "imagekit.cli.store_cmds",
        "Restore image REF (id, id prefix, or name → newest) to OUT (a directory if multi-volume).",
    ),
    "convert": Listed(
        "imagekit.cli.convert_cmd",
        "Convert disk image SRC for a target cloud, validated against its rules.",
    ),
    "targets": Listed("imagekit.cli.convert_cmd", "List the convert targets and what each is for."),
    "inspect": Listed(
        "imagekit.cli.guest_cmd",
        "Inspect image REF (or --disk FILE) offline: facts, findings per target, bootable where.",
    ),
    "boot": Listed(
        "imagekit.cli.boot_cmds",
        "Boot image REF from STORE on a provider and wait until healthy; nodes keep running.",
    ),
    "teardown": Listed(
        "imagekit.cli.boot_cmds",
        "Delete everything run RUN_ID created (nodes, images, uploads) and its record.",
    ),
    "runs": Listed(
        "imagekit.cli.boot_cmds",
        "List recorded runs (booted and not yet torn down), oldest first.",
    ),
    "providers": Listed(
        "imagekit.cli.boot_cmds", "List the providers and what each needs configured."
    ),
    "plan": Listed(
        "imagekit.cli.plan_cmds",
        "Plan files: one production stack, its stores, objectives and targets.",
    ),
    "run-export": Listed(
        "imagekit.cli.plan_cmds",
        "The periodic job: export every source, copy to replicas, retention, verify, report.",
    ),
    "status": Listed(
        "imagekit.cli.plan_cmds",
        "Per role and store: newest image, its age (RPO), verified, "
        "objectives met (exit 1 if not).",
    ),
    "schedule": Listed(
        "imagekit.cli.plan_cmds",
        "Write (or print) a systemd service + timer pair, or a cron file, for run-export.",
    ),
    "failover": Listed(
        "imagekit.cli.dr_cmds",
        "Boot the plan's stack on TARGET from the off-AWS stores (no AWS calls), role by role.",
    ),
    "rehearse": Listed(
        "imagekit.cli.dr_cmds",
        "Fail over into TARGET as a rehearsal, measure RTO by stage and RPO, always tear down.",
    ),
}


class _LazyGroup(click.Group):
    """The root group: lists commands from ``COMMANDS``, imports a module only to run its command.

    A command module registers its commands on ``cli`` with ``@cli.command()`` when imported, so
    importing it directly (as tests do) works too.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        # Pipeline order first; then anything registered that the table does not name.
        return [*COMMANDS, *(name for name in self.commands if name not in COMMANDS)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        listed = COMMANDS.get(cmd_name)
        if cmd_name not in self.commands and listed is not None:
            importlib.import_module(listed.module)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # As click's own, but a command not yet imported is shown by a stand-in built from its
        # table line, so that listing the commands imports none of them.
        shown: list[tuple[str, click.Command]] = []
        for name in self.list_commands(ctx):
            command = self.commands.get(name) or click.Command(name, help=COMMANDS[name].help)
            if not command.hidden:
                shown.append((name, command))
        if not shown:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in shown)
        with formatter.section("Commands"):
            formatter.write_dl([(name, c.get_short_help_str(limit)) for name, c in shown])


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="imagekit")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Export AMIs out of AWS into encrypted off-AWS stores; boot them on other clouds.

    Exit codes: 0 success, 1 operation failed, 2 usage/config/input error, 130 interrupted.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # paramiko logs each refused SSH try of a health check as an ERROR with a traceback; the
    # checks report their own reasons, so only --debug shows paramiko's.
    if not debug:
        logging.getLogger("paramiko").setLevel(logging.CRITICAL)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status instead of raising (console-script entry point)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="imagekit", standalone_mode=False)
    except ImagekitError as exc:
        if debug:
            log.exception("failed")
        click.echo(f"imagekit: error: {exc}", err=True)
        return int(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("imagekit: interrupted", err=True)
        return int(ExitCode.INTERRUPTED)
    except KeyboardInterrupt:
        click.echo("imagekit: interrupted", err=True)
        return int(ExitCode.INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        return int(ExitCode.USAGE)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    return int(ExitCode.OK)


def run() -> None:
    sys.exit(main())
