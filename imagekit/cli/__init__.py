"""The ``imagekit`` command line: the only place errors become exit codes and stderr lines."""

from imagekit.cli.app import cli, main

__all__ = ["cli", "main"]
