"""How commands report: one JSON document on stdout with ``--json``, human text otherwise.

Progress bars and human-facing notes always go to stderr so stdout stays machine-readable.
rich is imported on first use, not with this module: commands that only print (and ``--help``)
start faster without it.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress as RichProgress
    from rich.progress import TaskID

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON document on stdout."
)


@functools.cache
def stderr() -> Console:
    """The one console on stderr that notes and progress bars share."""
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def emit(result: Any, as_json: bool, human: Callable[[Any], str]) -> None:
    """Print a command's result: JSON on stdout, or the human rendering."""
    if as_json:
        json.dump(result, sys.stdout, indent=2, sort_keys=True, default=str)
        sys.stdout.write("\n")
    else:
        click.echo(human(result))


def note(message: str) -> None:
    """A human-facing line on stderr (never mixed into ``--json`` output)."""
    stderr().print(message)


class BarProgress:
    """``imagekit.progress.Progress`` drawn as a rich bar on stderr (bytes, speed, ETA)."""

    def __init__(self, bar: RichProgress):
        self._bar = bar
        self._task: TaskID | None = None

    @property
    def visible(self) -> bool:
        """Drawn on a terminal (work spent on the bar alone is wasted otherwise)."""
        return not self._bar.disable

    def start(self, description: str, total: float | None) -> None:
        self._task = self._bar.add_task(description, total=total)

    def update(self, completed: float) -> None:
        if self._task is not None:
            self._bar.update(self._task, completed=completed)

    def advance(self, amount: float) -> None:
        if self._task is not None:
            self._bar.advance(self._task, amount)

    def finish(self) -> None:
        if self._task is not None:
            task = self._bar.tasks[self._task]
            if task.total is not None:
                self._bar.update(self._task, completed=task.total)
            self._task = None


@contextmanager
def progress_bar() -> Iterator[BarProgress]:
    """A byte-oriented progress bar on stderr; hidden when stderr is not a terminal."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    console = stderr()
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    )
    with bar:
        yield BarProgress(bar)
