"""``schedule``: the plan's ``schedule`` as a systemd service + timer pair, or a cron line. Pure.

Times in the plan are UTC. systemd timers say so (``OnCalendar=… UTC``); classic cron runs in
the host's time zone and has no portable way to say otherwise, so the cron file notes it.
Secrets the plan references reach the job from an environment file (``KEY=value`` lines, mode
0600), read by systemd's ``EnvironmentFile=`` or sourced by the cron line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from imagekit.plans.model import WEEKDAYS, Plan

#: Where a root service keeps its state: systemd's ``StateDirectory=imagekit`` → /var/lib/imagekit.
SYSTEMD_STATE = "%S/imagekit"


@dataclass(frozen=True)
class ScheduleFiles:
    unit_name: str  # without suffix: imagekit-export-<plan>
    service: str
    timer: str
    cron: str  # an /etc/cron.d file: comment lines and one job line

    @property
    def files(self) -> dict[str, str]:
        return {f"{self.unit_name}.service": self.service, f"{self.unit_name}.timer": self.timer}


def unit_name(plan: Plan) -> str:
    return f"imagekit-export-{plan.name}"


def on_calendar(plan: Plan) -> str:
    s = plan.schedule
    hour, minute = s.hour_minute
    if s.every == "hourly":
        return f"*-*-* *:{minute:02d}:00 UTC"
    if s.every == "daily":
        return f"*-*-* {hour:02d}:{minute:02d}:00 UTC"
    if s.every == "weekly":
        return f"{s.weekday} *-*-* {hour:02d}:{minute:02d}:00 UTC"
    if s.interval < 3600:  # every N minutes, from the plan's minute on
        step = int(s.interval // 60)
        return f"*-*-* *:{minute % step:02d}/{step}:00 UTC"
    step = int(s.interval // 3600)
    if step == 1:
        return f"*-*-* *:{minute:02d}:00 UTC"
    return f"*-*-* {hour % step:02d}/{step}:{minute:02d}:00 UTC"


def cron_times(plan: Plan) -> str:
    """The five cron time fields (host time zone)."""
    s = plan.schedule
    hour, minute = s.hour_minute
    if s.every == "hourly":
        return f"{minute} * * * *"
    if s.every == "daily":
        return f"{minute} {hour} * * *"
    if s.every == "weekly":
        return f"{minute} {hour} * * {(WEEKDAYS.index(s.weekday) + 1) % 7}"  # cron: Sun = 0
    if s.interval < 3600:
        step = int(s.interval // 60)
        return f"{minute % step}-59/{step} * * * *"
    step = int(s.interval // 3600)
    if step == 1:
        return f"{minute} * * * *"
    return f"{minute} {hour % step}-23/{step} * * *"


def _systemd_quote(text: str) -> str:
    if all(c.isalnum() or c in "/._-+:=@" for c in text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _sh_quote(text: str) -> str:
    # cron turns an unescaped % into a newline, so it is escaped even inside quotes.
    return "'" + text.replace("'", "'\\''").replace("%", "\\%") + "'"


def render(
    plan: Plan,
    *,
    plan_path: Path,
    imagekit: str,
    env_file: Path,
    state_dir: str | None = None,
) -> ScheduleFiles:
    """The unit files and cron file that run ``imagekit run-export --plan PLAN_PATH``."""
    name = unit_name(plan)
    command = [imagekit, "run-export", "--plan", str(plan_path)]
    state = state_dir or SYSTEMD_STATE
    delay = int(plan.schedule.randomized_delay)
    service = "\n".join(
        [
            "[Unit]",
            f"Description=imagekit run-export of plan {plan.name}",
            "Wants=network-online.target",
            "After=network-online.target",
            "",
            "[Service]",
            "Type=oneshot",
            f"ExecStart={' '.join(_systemd_quote(c) for c in command)}",
            f"EnvironmentFile=-{_systemd_quote(str(env_file))}",
            f"Environment=IMAGEKIT_STATE_DIR={_systemd_quote(state)}",
            "StateDirectory=imagekit",
            "UMask=0077",
            # A nightly copy must not starve production I/O or CPU on the export host.
            "Nice=10",
            "IOSchedulingClass=idle",
            "",
        ]
    )
    timer = "\n".join(
        [
            "[Unit]",
            f"Description=imagekit run-export of plan {plan.name}, {plan.schedule.every}",
            "",
            "[Timer]",
            f"OnCalendar={on_calendar(plan)}",
            f"RandomizedDelaySec={delay}",
            # A run missed while the host was down starts at the next boot.
            "Persistent=true",
            f"Unit={name}.service",
            "",
            "[Install]",
            "WantedBy=timers.target",
            "",
        ]
    )
    cron_state = state_dir or "/var/lib/imagekit"
    job = (
        f"set -a; [ ! -r {_sh_quote(str(env_file))} ] || . {_sh_quote(str(env_file))}; "
        f"IMAGEKIT_STATE_DIR={_sh_quote(cron_state)} exec "
        + " ".join(_sh_quote(c) for c in command)
    )
    cron = "\n".join(
        [
            f"# imagekit run-export of plan {plan.name}, {plan.schedule.every}.",
            f"# The plan says {plan.schedule.at} UTC; cron uses this host's time zone.",
            "# Output goes to cron's mail; the status file and metrics record every run.",
            f"{cron_times(plan)} {plan.schedule.user} {job}",
            "",
        ]
    )
    return ScheduleFiles(name, service, timer, cron)


__all__ = ["ScheduleFiles", "cron_times", "on_calendar", "render", "unit_name"]
