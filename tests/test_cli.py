"""The CLI's contract: --help, --version, --json on stdout only, one-line errors, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from imagekit import __version__
from imagekit.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"imagekit, version {__version__}"


def test_help_lists_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "Exit codes" in out and "convert" in out


def test_json_goes_to_stdout_alone(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["targets", "--json"]) == 0
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert [r["name"] for r in rows] == ["raw", "qcow2", "vmdk", "vhd-azure", "vhdx", "gce"]
    assert captured.err == ""


def test_usage_error_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["convert"]) == 2
    assert "Missing argument" in capsys.readouterr().err


def test_unknown_command_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    assert "No such command" in capsys.readouterr().err


def test_console_script_error_line_and_debug_traceback(tmp_path: Path) -> None:
    """Run the installed entry point for real: one line without --debug, a traceback with it."""
    exe = Path(sys.executable).parent / "imagekit"
    argv = [
        str(exe),
        "convert",
        str(tmp_path / "missing.raw"),
        "-o",
        str(tmp_path / "o"),
        "--target",
        "raw",
    ]
    plain = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert plain.returncode == 2
    assert plain.stdout == ""
    assert plain.stderr.strip().splitlines() == [
        f"imagekit: error: {tmp_path / 'missing.raw'}: no such file"
    ]
    debug = subprocess.run(
        [argv[0], "--debug", *argv[1:]], capture_output=True, text=True, check=False
    )
    assert debug.returncode == 2
    assert "Traceback" in debug.stderr
