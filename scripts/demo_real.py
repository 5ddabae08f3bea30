"""``make demo-real``: the demo's flow on real Debian 12 AMIs, rehearsed on the GCE twin.

    start the AWS emulator → seed two real Debian AMIs (configured as Debian's EC2 image; db
    with a data volume its fstab names /dev/nvme1n1) → create the encrypted store →
    ``imagekit run-export`` (export, verify, and the guest preflight for the GCE target) → AWS
    goes away → ``imagekit rehearse --target gcp --twin`` (restore, adapt, boot, an SSH login
    with the run's key, the data volume read over SSH, teardown) → the findings, the changes
    made, the RTO by stage

Needs root (the twin's network namespace) and the Debian guests (`make debian-images`). Lives
in ``build/demo-real/``; ``make demo`` stays the fast one. Shares its steps with ``demo.py``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import demo
from demo import ROOT, DemoFailed, Objectives, Steps, require, run_imagekit, say, shown

WORKSPACE = ROOT / "build" / "demo-real"
PLAN_TEMPLATE = ROOT / "templates" / "plans" / "demo-real.yaml"
TARGET = "gcp"
#: role → the Debian variant its AMI holds (testbed/debian/build.py).
VARIANTS = {"web": "ec2", "db": "ec2-nvme"}


def finding_lines(report: dict[str, Any]) -> list[str]:
    """The preflight's verdicts from a run-export document."""
    return [
        f"preflight {g['role']:<4} on {g['target']}: "
        + ("bootable once adapted" if g["bootable"] else "BLOCKED: " + "; ".join(g["blockers"]))
        for g in (report.get("status") or {}).get("guests", [])
    ]


def run_demo_real() -> int:
    from imagekit.plans.load import load_plan
    from testbed.debian.guests import debian_guest, seed_guest_ami
    from testbed.moto_aws import MotoAWS

    if os.geteuid() != 0:
        raise DemoFailed("the GCE twin needs root (a network namespace per node)")
    guests = {role: debian_guest(variant) for role, variant in VARIANTS.items()}
    missing = [p for g in guests.values() for p in g.missing()]
    if missing:
        raise DemoFailed(f"{shown(missing[0])} is missing: run `make debian-images`")
    steps = Steps(total=6)
    env = {
        **os.environ,
        "IMAGEKIT_PASSPHRASE": demo.DEMO_PASSPHRASE,
        "IMAGEKIT_STATE_DIR": str(WORKSPACE / "state"),
    }
    aws: MotoAWS | None = None
    try:
        with steps.step("workspace", "prepare the workspace and the plan"):
            if (WORKSPACE / "state").is_dir():
                for run_id in demo.tear_down_leftovers(env):
                    say(f"tore down {run_id}, left booted by an interrupted earlier demo")
            ws = demo.prepare_workspace(WORKSPACE, PLAN_TEMPLATE)
            require(run_imagekit(["plan", "validate", str(ws.plan), "--json"], env), "validate")
            plan = load_plan(ws.plan)
            objectives = Objectives(plan.objectives.rpo, plan.objectives.rto)

        with steps.step("seed", "start the AWS emulator; seed two real Debian AMIs"):
            aws = MotoAWS(log_path=ws.moto_log).start()
            ebs, ec2 = aws.client("ebs"), aws.client("ec2")
            for role, guest in guests.items():
                ami = seed_guest_ami(ebs, ec2, guest)
                ec2.create_tags(Resources=[ami.image_id], Tags=[{"Key": "dr", "Value": "true"}])
                blocks = sum(s.blocks_written for _, s in ami.volumes)
                say(f"{role:<4} {ami.image_id}  Debian 12 ({guest.variant}), {blocks} blocks")

        with steps.step("store", "create the encrypted store"):
            url = plan.stores.primary.url
            created = require(
                run_imagekit(["store", "init", url, "--passphrase", "--json"], env), "store init"
            )
            say(f"primary {shown(url)}  repository {created['id'][:16]}")

        with steps.step("run-export", "imagekit run-export: export, verify, guest preflight"):
            outcome = run_imagekit(
                ["run-export", "--plan", str(ws.plan), "--json"], {**env, **aws.env}
            )
            for line in demo.export_lines(outcome.document or {}) + finding_lines(
                outcome.document or {}
            ):
                say(line)
            require(outcome, "imagekit run-export")
            aws.stop()
            aws = None
            say("AWS goes away: the rehearsal uses the off-AWS store only")

        with steps.step("rehearse", f"imagekit rehearse --target {TARGET} --twin (adapted)"):
            no_aws = {k: v for k, v in env.items() if not k.startswith("AWS_")}
            args = ["rehearse", "--plan", str(ws.plan), "--target", TARGET, "--twin"]
            outcome = run_imagekit([*args, "--report-dir", str(ws.reports), "--json"], no_aws)
            result = outcome.document
            if not isinstance(result, dict):
                raise DemoFailed(f"imagekit rehearse exited with status {outcome.code}")
            for line in demo.role_lines(result):
                say(line)

        with steps.step("changes", "what the guest stage changed in each restored copy"):
            for row in result.get("roles", []):
                for change in row.get("adapted", []):
                    say(f"{row['role']:<4} {change}")
    finally:
        if aws is not None:
            aws.stop()

    return demo.conclude("imagekit demo-real", result, outcome, objectives, steps)


def main() -> int:
    try:
        return run_demo_real()
    except DemoFailed as exc:
        print(f"\ndemo-real: failed: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("\ndemo-real: interrupted", file=sys.stderr, flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
