"""Plans with running instances as sources: the model, its checks, sub-daily schedules."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from imagekit.errors import InputError
from imagekit.export.instance import InstanceSpec
from imagekit.plans.load import load_text
from imagekit.plans.model import Plan
from imagekit.plans.run_instances import hook_spec
from imagekit.plans.schedule import cron_times, on_calendar

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGk4m5wP4xP4mR1O9B0zRgk3yV7q2h0cQ8yQ3p1S7m1b"

BASE = """\
version: 1
name: shop
aws: {region: eu-west-1}
stores: {primary: {name: main, url: /srv/imagekit}}
"""


def load(body: str) -> tuple[Plan | None, list[str]]:
    loaded = load_text(BASE + body, "plan.yaml")
    return loaded.plan, [str(p) for p in loaded.problems]


def test_an_instance_source_with_hooks_loads() -> None:
    plan, problems = load(
        f"""\
sources:
  db:
    instance:
      tags: {{app: db}}
      hooks:
        identity: keys/hooks.key
        host_key: "{HOST_KEY}"
        pre: fsfreeze -f /data
        post: fsfreeze -u /data
        timeout: 30s
    rpo: 2h
schedule: {{every: 1h, at: "00:10"}}
objectives: {{rpo: 26h}}
"""
    )
    assert problems == []
    assert plan is not None
    instance = plan.sources["db"].instance
    assert instance is not None and instance.hooks is not None
    assert instance.describe_filters() == {"tag:app": ["db"]}
    assert instance.hooks.timeout == 30.0
    assert plan.schedule.interval == 3600.0
    resolved = plan.resolve_paths(Path("/etc/imagekit"))
    hooks = resolved.sources["db"].instance.hooks  # type: ignore[union-attr]
    assert hooks is not None and hooks.identity == Path("/etc/imagekit/keys/hooks.key")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{instance: {id: i-0123456789abcdef0}, ami: ami-12345678}", "either instance or an AMI"),
        ("{instance: {id: i-0123456789abcdef0, tags: {a: b}}}", "by id or by tags"),
        ("{instance: {}}", "by id or by tags"),
        ("{instance: {id: vol-12345678}}", "should match pattern"),
        (
            "{instance: {id: i-0123456789abcdef0, hooks: {identity: k, host_key: x, pre: a}}}",
            "TYPE BASE64",
        ),
        (
            "{instance: {id: i-0123456789abcdef0, hooks: {identity: k, host_key: "
            f'"{HOST_KEY}"' + "}}}",
            "a pre and/or a post",
        ),
    ],
)
def test_instance_source_mistakes_are_named(source: str, message: str) -> None:
    _, problems = load(f"sources: {{db: {source}}}\nobjectives: {{rpo: 26h}}\n")
    assert any(message in p for p in problems), problems


def test_a_target_cannot_boot_a_data_only_instance_image() -> None:
    _, problems = load(
        """\
sources: {db: {instance: {id: i-0123456789abcdef0, exclude_boot_volume: true}}}
objectives: {rpo: 26h}
targets: {local: {provider: local, stack: {db: {}}}}
"""
    )
    assert any("boots nothing" in p for p in problems), problems


@pytest.mark.parametrize(
    ("every", "at", "calendar", "cron", "interval"),
    [
        ("1h", "00:10", "*-*-* *:10:00 UTC", "10 * * * *", 3600),
        ("15m", "00:05", "*-*-* *:05/15:00 UTC", "5-59/15 * * * *", 900),
        ("30m", "00:40", "*-*-* *:10/30:00 UTC", "10-59/30 * * * *", 1800),
        ("2h", "01:00", "*-*-* 01/2:00:00 UTC", "0 1-23/2 * * *", 7200),
    ],
)
def test_sub_daily_periods(every: str, at: str, calendar: str, cron: str, interval: int) -> None:
    plan, problems = load(
        "sources: {db: {instance: {id: i-0123456789abcdef0}}}\n"
        f'schedule: {{every: {every}, at: "{at}"}}\nobjectives: {{rpo: 3h}}\n'
    )
    assert problems == [] and plan is not None
    assert (on_calendar(plan), cron_times(plan), plan.schedule.interval) == (
        calendar,
        cron,
        interval,
    )


@pytest.mark.parametrize(("every", "message"), [("7m", "divide 60"), ("2m", "5 or more")])
def test_bad_minute_periods(every: str, message: str) -> None:
    _, problems = load(
        "sources: {db: {instance: {id: i-0123456789abcdef0}}}\n"
        f"schedule: {{every: {every}}}\nobjectives: {{rpo: 3h}}\n"
    )
    assert any(message in p for p in problems), problems


def test_rpo_shorter_than_an_hourly_schedule_is_refused() -> None:
    _, problems = load(
        "sources: {db: {instance: {id: i-0123456789abcdef0}, rpo: 30m}}\n"
        "schedule: {every: 1h}\nobjectives: {rpo: 3h}\n"
    )
    assert any("shorter than the schedule interval" in p for p in problems), problems


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_accepts_minute_calendars() -> None:
    plan, _ = load(
        "sources: {db: {instance: {id: i-0123456789abcdef0}}}\n"
        'schedule: {every: 15m, at: "00:05"}\nobjectives: {rpo: 3h}\n'
    )
    assert plan is not None
    result = subprocess.run(
        ["systemd-analyze", "calendar", "--iterations=3", on_calendar(plan)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    minutes = re.findall(r"\d\d:(\d\d):00 UTC\n", result.stdout)
    assert len(minutes) == 3 and set(minutes) <= {"05", "20", "35", "50"}, result.stdout


def test_hooks_reach_the_instance_at_its_private_ip_unless_a_host_is_set() -> None:
    plan, _ = load(
        "sources:\n  db:\n    instance:\n      id: i-0123456789abcdef0\n      hooks: "
        f'{{identity: /k, host_key: "{HOST_KEY}", pre: "sync", port: 2222}}\n'
        "objectives: {rpo: 26h}\n"
    )
    assert plan is not None and plan.sources["db"].instance is not None
    hooks = plan.sources["db"].instance.hooks
    instance = InstanceSpec("i-1", "eu-west-1", "db", "m6i.large", (), private_ip="10.0.0.7")
    spec = hook_spec(hooks, instance)
    assert spec is not None and (spec.host, spec.port, spec.pre) == ("10.0.0.7", 2222, "sync")
    with pytest.raises(InputError, match="no private IP"):
        hook_spec(hooks, InstanceSpec("i-1", "eu-west-1", "db", "m6i.large", ()))
    assert hook_spec(None, instance) is None
