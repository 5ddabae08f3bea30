"""The schedule units: their content per ``every``, the CLI writing them, systemd's own check."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import imagekit.cli.plan_cmds  # noqa: F401  (registers the commands on the CLI)
from imagekit.cli import main
from imagekit.plans.load import load_text
from imagekit.plans.model import Plan
from imagekit.plans.schedule import cron_times, on_calendar, render

BASE = """\
version: 1
name: shop
sources: {web: {ami: ami-12345678, region: eu-west-1}}
stores: {primary: {name: main, url: /srv/imagekit}}
objectives: {rpo: 9d}
"""


def plan_with(schedule: str) -> Plan:
    loaded = load_text(BASE + f"schedule: {schedule}\n", "plan.yaml")
    assert loaded.plan is not None, loaded.problems
    return loaded.plan


@pytest.mark.parametrize(
    ("schedule", "calendar", "cron"),
    [
        ('{every: daily, at: "01:15"}', "*-*-* 01:15:00 UTC", "15 1 * * *"),
        ('{every: hourly, at: "00:05"}', "*-*-* *:05:00 UTC", "5 * * * *"),
        ('{every: weekly, at: "23:00", weekday: Sun}', "Sun *-*-* 23:00:00 UTC", "0 23 * * 0"),
        ('{every: weekly, at: "03:30", weekday: Mon}', "Mon *-*-* 03:30:00 UTC", "30 3 * * 1"),
        ('{every: 6h, at: "07:45"}', "*-*-* 01/6:45:00 UTC", "45 1-23/6 * * *"),
    ],
)
def test_times(schedule: str, calendar: str, cron: str) -> None:
    plan = plan_with(schedule)
    assert on_calendar(plan) == calendar
    assert cron_times(plan) == cron


def test_unit_content() -> None:
    plan = plan_with('{every: daily, at: "02:30", randomized_delay: 10m, user: backup}')
    files = render(
        plan,
        plan_path=Path("/etc/imagekit/my plan.yaml"),
        imagekit="/usr/bin/imagekit",
        env_file=Path("/etc/imagekit/shop.env"),
    )
    assert set(files.files) == {"imagekit-export-shop.service", "imagekit-export-shop.timer"}
    service = files.service.splitlines()
    assert 'ExecStart=/usr/bin/imagekit run-export --plan "/etc/imagekit/my plan.yaml"' in service
    assert "EnvironmentFile=-/etc/imagekit/shop.env" in service
    assert "Type=oneshot" in service
    timer = files.timer.splitlines()
    assert "OnCalendar=*-*-* 02:30:00 UTC" in timer
    assert "RandomizedDelaySec=600" in timer
    assert "Unit=imagekit-export-shop.service" in timer
    assert "WantedBy=timers.target" in timer
    job = files.cron.splitlines()[-1]
    assert job.startswith("30 2 * * * backup set -a; [ ! -r '/etc/imagekit/shop.env' ]")
    assert job.endswith(
        "exec '/usr/bin/imagekit' 'run-export' '--plan' '/etc/imagekit/my plan.yaml'"
    )


def test_cron_escapes_percent() -> None:
    files = render(
        plan_with("{every: daily}"),
        plan_path=Path("/srv/100%.yaml"),
        imagekit="/usr/bin/imagekit",
        env_file=Path("/e"),
    )
    assert "'/srv/100\\%.yaml'" in files.cron


def test_cli_writes_and_prints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(BASE)
    assert (
        main(["schedule", "--plan", str(plan), "--dir", str(tmp_path), "--imagekit", "/x/ik"]) == 0
    )
    service = (tmp_path / "imagekit-export-shop.service").read_text()
    assert f"ExecStart=/x/ik run-export --plan {plan}" in service
    assert (tmp_path / "imagekit-export-shop.timer").is_file()
    assert main(["schedule", "--plan", str(plan), "--cron", "--dir", str(tmp_path)]) == 0
    assert (tmp_path / "imagekit-export-shop").read_text().splitlines()[-1].startswith("0 2 * * *")
    capsys.readouterr()
    assert main(["schedule", "--plan", str(plan), "--print"]) == 0
    out = capsys.readouterr().out
    assert "# imagekit-export-shop.service\n[Unit]" in out and "[Timer]" in out
    assert "# /etc/cron.d/imagekit-export-shop" in out


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    executable = tmp_path / "imagekit"
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    files = render(
        plan_with('{every: 6h, at: "00:10", randomized_delay: 5m}'),
        plan_path=tmp_path / "plan.yaml",
        imagekit=str(executable),
        env_file=tmp_path / "shop.env",
    )
    for name, text in files.files.items():
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", *(str(tmp_path / n) for n in files.files)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Messages about units this container lacks (network-online.target, timers.target in a
    # chroot) are the host's, not ours; anything naming our files is a real problem.
    ours = [line for line in result.stderr.splitlines() if "imagekit-export-shop" in line]
    assert ours == [], result.stderr
    calendar = subprocess.run(
        ["systemd-analyze", "calendar", on_calendar(plan_with('{every: 6h, at: "00:10"}'))],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert calendar.returncode == 0, calendar.stderr
