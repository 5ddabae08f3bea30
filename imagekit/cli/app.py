"""The root command group, global options and the single error → exit-code mapping."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import click

from imagekit import __version__
from imagekit.errors import ExitCode, ImagekitError

log = logging.getLogger("imagekit")


class _Group(click.Group):
    """Lists commands in the order they were added (the pipeline order), not alphabetically."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
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


def _register_commands() -> None:
    # Imported here so that each command module can import ``cli`` without a cycle.
    from imagekit.cli import boot_cmds, convert_cmd, export_cmd, plan_cmds, store_cmds  # noqa: F401


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status instead of raising (console-script entry point)."""
    _register_commands()
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
