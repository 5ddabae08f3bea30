"""``make demo``: the disaster-recovery plan's main job end to end, on this machine only.

    start the AWS emulator (127.0.0.1) → seed the stack: web and worker AMIs holding the bootable
    test disk, and a running db instance with a data volume → create the encrypted stores →
    ``imagekit run-export`` (AWS → primary store → replica, verified) → the db's data changes,
    ``run-export`` again (only the changed blocks) → AWS goes away (the emulator stops) →
    ``imagekit rehearse`` on local QEMU (restore, convert, boot, health — the db must serve the
    newer data — teardown) → RPO, RTO, report

Everything lives in ``build/demo/``. A run wipes it except ``reports/``, which is kept so the
HTML report's trend shows every earlier rehearsal. The emulator is stopped by its PID on success,
on failure and on Ctrl-C. A failed step ends the demo with one line naming it and a non-zero
status (130 when interrupted).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the bench (testbed/) is not installed, only imagekit is

if TYPE_CHECKING:
    from testbed.moto_aws import MotoAWS
    from testbed.seed_ami import SeededAmi

DEMO = ROOT / "build" / "demo"
TEST_DISK = ROOT / "build" / "test-disk" / "disk.raw"
PLAN_TEMPLATE = ROOT / "templates" / "plans" / "demo.yaml"
IMAGEKIT = str(Path(sys.executable).parent / "imagekit")
TARGET = "local"
#: The demo's store passphrase: fixed and public, as the demo's stores protect nothing.
DEMO_PASSPHRASE = "imagekit-demo"
#: The stack's roles, in the plan's order; each AMI carries these tags plus ``role=<role>``,
#: which is what the plan's sources select.
ROLES = ("web", "worker")
DR_TAGS = {"dr": "true"}
ROOT_DEVICE = "/dev/xvda"
#: The running instance's role, its data volume and what the demo writes there between the two
#: exports: the test disk serves the volume's first line at /data, the plan's check wants the 2nd.
DATA_ROLE = "db"
DATA_DEVICE = "/dev/xvdf"
DATA_GENERATIONS = ("generation-1", "generation-2")
#: How long an interrupted imagekit command may take to clean up (tear down its VMs) after the
#: Ctrl-C it received too, before it is killed.
CHILD_GRACE_SECONDS = 60.0
KEPT = "reports"


class DemoFailed(Exception):
    """A step failed; the message is the one line the demo ends with."""


class _Terminated(KeyboardInterrupt):
    """SIGTERM: unlike a terminal's Ctrl-C, it reached this process only, not its children."""


# -- the workspace -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def plan(self) -> Path:
        return self.root / "plan.yaml"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def reports(self) -> Path:
        return self.root / KEPT

    @property
    def moto_log(self) -> Path:
        return self.root / "aws-emulator.log"


def prepare_workspace(root: Path, template: Path = PLAN_TEMPLATE) -> Workspace:
    """Empty ``root`` except ``reports/``, and put the plan in it."""
    root.mkdir(parents=True, exist_ok=True)
    for entry in root.iterdir():
        if entry.name == KEPT:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    workspace = Workspace(root)
    workspace.reports.mkdir(exist_ok=True)
    shutil.copyfile(template, workspace.plan)
    return workspace


# -- the AWS side --------------------------------------------------------------------------------


def seed_stack(
    aws: MotoAWS, disk: Path, roles: Sequence[str] = ROLES, *, name_prefix: str = "demo"
) -> dict[str, SeededAmi]:
    """One AMI per role whose root snapshot holds ``disk``, the way AWS builds them (EBS direct
    API uploads, then RegisterImage), tagged ``dr=true`` and ``role=<role>``."""
    from testbed.seed_ami import VolumeSpec, seed_ami

    ebs, ec2 = aws.client("ebs"), aws.client("ec2")
    return {
        role: seed_ami(
            ebs,
            ec2,
            f"{name_prefix}-{role}",
            [VolumeSpec(ROOT_DEVICE, disk)],
            tags={**DR_TAGS, "role": role},
        )
        for role in roles
    }


def launch_data_instance(aws: MotoAWS, disk: Path, *, name_prefix: str = "demo") -> Any:
    """The db role: a running instance of an AMI holding ``disk``, with a 1 GiB data volume,
    tagged ``dr=true`` and ``role=db`` as the plan's instance source selects."""
    from testbed.seed_ami import VolumeSpec, seed_ami
    from testbed.seed_instance import DataVolume, launch_instance

    ebs, ec2 = aws.client("ebs"), aws.client("ec2")
    ami = seed_ami(ebs, ec2, f"{name_prefix}-{DATA_ROLE}", [VolumeSpec(ROOT_DEVICE, disk)])
    tags = {**DR_TAGS, "role": DATA_ROLE}
    return launch_instance(
        ec2, ami, data_volumes=[DataVolume(DATA_DEVICE)], instance_type="t3.small", tags=tags
    )


def write_data(aws: MotoAWS, volume_id: str, generation: str) -> None:
    """What the db writes: the first block of its data volume starts with the generation."""
    aws.write_volume(volume_id, {0: f"imagekit-data: {generation}\n".encode()})


# -- running imagekit ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    code: int
    document: Any  # the --json document, None when stdout held none


def run_imagekit(args: Sequence[str], env: Mapping[str, str]) -> Outcome:
    """``imagekit ARGS`` with stderr (progress, notes, errors) shown as it comes, stdout kept."""
    with subprocess.Popen(
        [IMAGEKIT, *args], env=dict(env), stdout=subprocess.PIPE, text=True, cwd=ROOT
    ) as proc:
        try:
            out, _ = proc.communicate()
        except KeyboardInterrupt as exc:
            if isinstance(exc, _Terminated):
                proc.send_signal(signal.SIGINT)  # the terminal did not send it the Ctrl-C
            try:
                proc.wait(timeout=CHILD_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
    try:
        document = json.loads(out) if out.strip() else None
    except json.JSONDecodeError:
        document = None
    return Outcome(proc.returncode, document)


def tear_down_leftovers(env: Mapping[str, str]) -> list[str]:
    """Tear down the runs an earlier demo left booted (killed before it could): wiping the state
    folder would otherwise forget VMs that are still running."""
    listed = require(run_imagekit(["runs", "--json"], env), "imagekit runs")
    ids = [str(record["run_id"]) for record in listed]
    for run_id in ids:
        require(run_imagekit(["teardown", run_id, "--json"], env), f"imagekit teardown {run_id}")
    return ids


def require(outcome: Outcome, what: str) -> Any:
    if outcome.code != 0 or outcome.document is None:
        raise DemoFailed(f"{what} exited with status {outcome.code} (its error is above)")
    return outcome.document


# -- reporting -----------------------------------------------------------------------------------


def mib(n: float) -> str:
    return f"{n / 1048576:,.1f} MiB"


def shown(path: str | Path) -> str:
    """A path relative to the repository when it is inside it (what a reader can copy)."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def seconds(value: Any) -> str:
    """A measured duration: exact seconds, with a rounded human form once it is long."""
    if not isinstance(value, int | float):
        return "-"
    return f"{value:.1f} s" if value < 120 else f"{value:.0f} s ({human(value)})"


def human(value: float) -> str:
    """An objective as people state it: ``90 s``, ``30 min``, ``26 h``."""
    for unit, size in (("h", 3600), ("min", 60)):
        if value >= 2 * size:
            return f"{value / size:.{0 if value % size == 0 else 1}f} {unit}"
    return f"{value:.0f} s"


def endpoint(value: Any) -> str:
    """An endpoint as the rehearsal reports it: a URL, or host, port and the guest port."""
    if isinstance(value, Mapping) and "port" in value:
        where = f"{value.get('host', '127.0.0.1')}:{value['port']}"
        return f"{value['guest_port']}→{where}" if "guest_port" in value else where
    return str(value)


def export_lines(report: Mapping[str, Any]) -> list[str]:
    """What one ``run-export --json`` document says, a line per export, copy and verification."""
    lines = []
    for row in report.get("exports", []):
        lines.append(
            f"export {row['role']:<7} {row.get('instance') or row['ami']} → "
            f"{str(row.get('image_id', '?'))[:12]}  "
            f"{row.get('mode', '?')}: {mib(row.get('bytes_read', 0))} read from AWS, "
            f"{mib(row.get('bytes_uploaded', 0))} new in {row['store']}"
        )
    for row in report.get("copies", []):
        lines.append(
            f"copy   → {row['store']}: {len(row['copied'])} images, "
            f"{mib(row.get('bytes_uploaded', 0))} uploaded"
        )
    for row in report.get("verification", []):
        if row.get("skipped"):
            detail = f"data not verified: {row['skipped']}"
        elif row.get("level") == "all":
            detail = f"all {row.get('chunks_read', 0)} chunks read back"
        else:
            detail = f"newest image of {len(row.get('sampled_images', []))} roles sample-read"
        lines.append(
            f"verify {row['store']}: {row.get('images', 0)} images, {row.get('chunks', 0)} chunks "
            f"in {row.get('packs', 0)} packs, {'ok' if row.get('ok') else 'PROBLEMS'}; {detail}"
        )
    for failure in report.get("run", {}).get("failures", []):
        lines.append(f"FAILED {failure['step']} {failure['subject']}: {failure['message']}")
    return lines


def role_lines(result: Mapping[str, Any]) -> list[str]:
    lines = []
    for row in result.get("roles", []):
        state = "healthy" if row.get("healthy") else "UNHEALTHY"
        endpoints = ", ".join(endpoint(e) for e in row.get("endpoints", [])) or "-"
        source = f" from {row['store']}" if row.get("store") else ""
        lines.append(
            f"{row.get('role', '?'):<7} {state:<9} image {str(row.get('image_id', '?'))[:12]}"
            f"{source}  {endpoints}"
        )
        lines += [f"        {note}" for note in row.get("notes", [])]
    return lines


@dataclass(frozen=True)
class Objectives:
    rpo: float
    rto: float | None


def summary_lines(
    result: Mapping[str, Any], objectives: Objectives, steps: Sequence[tuple[str, float]]
) -> list[str]:
    """The closing block: health, RPO and RTO against the objectives, the report, the stages."""

    def against(value: Any, objective: float | None) -> str:
        if objective is None or not isinstance(value, int | float):
            return seconds(value)
        verdict = "met" if value <= objective else "MISSED"
        return f"{seconds(value)}  (objective {human(objective)}: {verdict})"

    lines = [
        f"rehearsal   {'healthy' if result.get('healthy') else 'NOT HEALTHY'}",
        f"RPO         {against(result.get('rpo_seconds'), objectives.rpo)}",
        f"RTO         {against(result.get('rto_seconds'), objectives.rto)}",
        f"report      {shown(result['report_html']) if result.get('report_html') else '-'}",
        f"            {shown(result['report_json']) if result.get('report_json') else '-'}",
        "",
        f"{'rehearsal stage':<28}{'seconds':>9}",
    ]
    for stage in result.get("stages", []):
        lines.append(f"  {stage.get('name', '?'):<26}{stage.get('seconds', 0):>9.1f}")
    lines += ["", f"{'demo step':<28}{'seconds':>9}"]
    lines += [f"  {title:<26}{took:>9.1f}" for title, took in steps]
    return lines


# -- the steps -----------------------------------------------------------------------------------


@dataclass
class Steps:
    """Numbered step headers, each step's time; a failure names the step it happened in."""

    total: int
    done: list[tuple[str, float]] = field(default_factory=list)

    @contextmanager
    def step(self, short: str, title: str) -> Iterator[None]:
        print(f"\n[{len(self.done) + 1}/{self.total}] {title}", flush=True)
        started = time.monotonic()
        try:
            yield
        except DemoFailed as exc:
            raise DemoFailed(f"{short}: {exc}") from exc
        except Exception as exc:  # anything unforeseen still ends in one line naming the step
            first = (str(exc).strip().splitlines() or [""])[0]
            raise DemoFailed(f"{short}: {type(exc).__name__}: {first}") from exc
        took = time.monotonic() - started
        self.done.append((short, took))
        print(f"      done in {took:.1f} s", flush=True)


def say(line: str) -> None:
    print(f"      {line}", flush=True)


def run_demo(workspace_root: Path = DEMO, disk: Path = TEST_DISK) -> int:
    from imagekit.plans.load import load_plan
    from testbed.moto_aws import MotoAWS

    if not disk.is_file():
        raise DemoFailed(f"{shown(disk)} is missing: run `make test-image`")
    steps = Steps(total=8)
    print(f"imagekit demo: workspace {shown(workspace_root)} ({KEPT}/ kept across runs)")
    base_env = {
        **os.environ,
        "IMAGEKIT_PASSPHRASE": DEMO_PASSPHRASE,
        "IMAGEKIT_STATE_DIR": str(workspace_root / "state"),
    }
    aws: MotoAWS | None = None
    try:
        with steps.step("workspace", "prepare the workspace and the plan"):
            if (workspace_root / "state").is_dir():
                for run_id in tear_down_leftovers(base_env):
                    say(f"tore down {run_id}, left booted by an interrupted earlier demo")
            ws = prepare_workspace(workspace_root)
            require(
                run_imagekit(["plan", "validate", str(ws.plan), "--json"], base_env),
                "imagekit plan validate",
            )
            plan = load_plan(ws.plan)
            objectives = Objectives(plan.objectives.rpo, plan.objectives.rto)
            say(f"{shown(ws.plan)}: plan {plan.name}, roles {', '.join(plan.sources)}")

        with steps.step("aws emulator", "start the AWS emulator on 127.0.0.1"):
            aws = MotoAWS(log_path=ws.moto_log).start()
            pid = aws.server.proc.pid if aws.server.proc else "?"
            say(f"{aws.endpoint} (pid {pid}, log {shown(ws.moto_log)})")

        with steps.step("seed stack", "seed the stack: two AMIs and a running db instance"):
            say(f"test disk {shown(disk)}: {mib(disk.stat().st_size)}")
            for role, ami in seed_stack(aws, disk).items():
                snap = ami.volumes[0][1]
                tags = " ".join(f"{k}={v}" for k, v in ami.tags.items())
                say(
                    f"{role:<7} {ami.image_id}  {snap.snapshot_id}  "
                    f"{snap.blocks_written} blocks of 512 KiB  [{tags}]"
                )
            db = launch_data_instance(aws, disk)
            data_volume = db.volumes[DATA_DEVICE]
            write_data(aws, data_volume, DATA_GENERATIONS[0])
            say(
                f"{DATA_ROLE:<7} {db.instance_id}  data volume {data_volume} holds "
                f"{DATA_GENERATIONS[0]!r}"
            )

        with steps.step("stores", "create the encrypted stores (primary, replica)"):
            for spec in plan.stores.all():
                url = spec.url  # made absolute by the loader: relative to the plan file
                created = require(
                    run_imagekit(["store", "init", url, "--passphrase", "--json"], base_env),
                    f"imagekit store init ({spec.name})",
                )
                say(f"{spec.name:<8} {shown(url)}  repository {created['id'][:16]}")

        with steps.step("run-export", "imagekit run-export: AWS → primary store → replica"):
            aws_env = {**base_env, **aws.env}
            outcome = run_imagekit(["run-export", "--plan", str(ws.plan), "--json"], aws_env)
            for line in export_lines(outcome.document or {}):
                say(line)
            require(outcome, "imagekit run-export")

        with steps.step("fresh data", f"the {DATA_ROLE} writes new data; run-export again"):
            write_data(aws, data_volume, DATA_GENERATIONS[1])
            say(f"{DATA_ROLE}: data volume now holds {DATA_GENERATIONS[1]!r}")
            outcome = run_imagekit(["run-export", "--plan", str(ws.plan), "--json"], aws_env)
            for line in export_lines(outcome.document or {}):
                say(line)
            require(outcome, "imagekit run-export (second)")

        with steps.step("aws gone", "AWS goes away: stop the emulator"):
            aws.stop()
            aws = None
            say("from here on nothing talks to AWS: the rehearsal uses the off-AWS stores only")

        with steps.step("rehearse", f"imagekit rehearse --target {TARGET} on local QEMU"):
            no_aws = {k: v for k, v in base_env.items() if not k.startswith("AWS_")}
            outcome = run_imagekit(
                [
                    "rehearse",
                    "--plan",
                    str(ws.plan),
                    "--target",
                    TARGET,
                    "--report-dir",
                    str(ws.reports),
                    "--json",
                ],
                no_aws,
            )
            result = outcome.document
            if not isinstance(result, dict):
                raise DemoFailed(
                    f"imagekit rehearse exited with status {outcome.code} (its error is above)"
                )
            for line in role_lines(result):
                say(line)
    finally:
        if aws is not None:
            aws.stop()

    return conclude("imagekit demo", result, outcome, objectives, steps)


def conclude(
    title: str,
    result: Mapping[str, Any],
    outcome: Outcome,
    objectives: Objectives,
    steps: Steps,
) -> int:
    """Print the summary block; 0 if the rehearsal was healthy, else ``DemoFailed``."""
    print(f"\n==== {title}: summary ".ljust(73, "="))
    for line in summary_lines(result, objectives, steps.done):
        print(line)
    print("=" * 72, flush=True)
    if outcome.code != 0 or not result.get("healthy"):
        raise DemoFailed(f"the rehearsal was not healthy (exit {outcome.code}): see the report")
    return 0


def main() -> int:
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return run_demo()
    except DemoFailed as exc:
        print(f"\ndemo: failed: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("\ndemo: interrupted; the AWS emulator was stopped", file=sys.stderr, flush=True)
        return 130


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Terminated()


if __name__ == "__main__":
    sys.exit(main())
