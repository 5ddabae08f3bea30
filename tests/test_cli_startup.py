"""Start-up: --help and --version import no cloud library; the command table matches the modules.

The root group lists commands from ``imagekit.cli.app.COMMANDS`` and imports a command's module
only to run it. These tests check what a fresh interpreter has imported (not how long it took:
speed is for benchmarks), and that the table names every command with its module's own help line.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import threading
from pathlib import Path

import click
import pytest

from imagekit.cli import main
from imagekit.cli.app import COMMANDS, cli

#: Libraries that took ~0.5 s to import before a command could start; none is needed to list,
#: describe or parse the commands.
HEAVY = ("boto3", "botocore", "libcloud", "paramiko", "cryptography", "pydantic")

_PROBE = """
import json, sys
from imagekit.cli import main
code = main(json.loads(sys.argv[1]))
heavy = json.loads(sys.argv[2])
print(json.dumps({"code": code, "imported": sorted(m for m in heavy if m in sys.modules)}))
"""


def _imported_after(argv: list[str]) -> dict[str, object]:
    """Run ``main(argv)`` in a fresh interpreter: its exit code and the HEAVY modules it loaded."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(argv), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["--version"],
        # A command's own --help loads its module: these keep the heavy imports inside commands.
        ["export", "--help"],
        ["store", "--help"],
        ["key", "generate", "--help"],
        ["boot", "--help"],
        ["iam-policy"],
    ],
    ids=" ".join,
)
def test_no_cloud_library_is_imported(argv: list[str]) -> None:
    assert _imported_after(argv) == {"code": 0, "imported": []}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_table_matches_the_command_module(name: str) -> None:
    listed = COMMANDS[name]
    importlib.import_module(listed.module)
    command = cli.commands.get(name)
    assert command is not None, f"{listed.module} does not register {name!r}"
    stand_in = click.Command(name, help=listed.help)
    for limit in (30, 45, 60, 200):
        assert command.get_short_help_str(limit) == stand_in.get_short_help_str(limit), (
            f"COMMANDS[{name!r}].help differs from the first sentence of its docstring"
        )


def test_every_registered_command_is_in_the_table() -> None:
    for module in {listed.module for listed in COMMANDS.values()}:
        importlib.import_module(module)
    assert sorted(set(cli.commands) - set(COMMANDS)) == []


def test_help_lists_every_command_in_pipeline_order(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    section = capsys.readouterr().out.split("Commands:\n", 1)[1]
    rows = [line for line in section.splitlines() if line[:2] == "  " and line[2:3] != " "]
    listed = [row.split()[0] for row in rows]
    assert listed == list(COMMANDS)
    assert listed.index("export") < listed.index("store") < listed.index("convert")
    assert listed.index("convert") < listed.index("boot") < listed.index("run-export")


def test_preload_imports_in_the_background_and_leaves_failures_to_the_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imagekit.cli.common import preload

    (tmp_path / "ik_preload_ok.py").write_text("VALUE = 1\n")
    (tmp_path / "ik_preload_bad.py").write_text("raise RuntimeError('broken module')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("ik_preload_ok", "ik_preload_bad"):
        monkeypatch.delitem(sys.modules, name, raising=False)

    preload("ik_preload_ok").join(10)
    assert sys.modules["ik_preload_ok"].VALUE == 1

    escaped: list[object] = []
    monkeypatch.setattr(threading, "excepthook", escaped.append)
    failed = preload("ik_preload_bad")
    failed.join(10)
    assert not failed.is_alive()
    assert escaped == []  # no traceback printed from the thread: the caller reports it
    assert "ik_preload_bad" not in sys.modules
    with pytest.raises(RuntimeError, match="broken module"):
        importlib.import_module("ik_preload_bad")
