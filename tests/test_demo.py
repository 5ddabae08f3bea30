"""``make demo`` without its VMs: the workspace, the two-role stack seeded into the AWS emulator,
the plan it runs, and the closing summary. (The whole demo boots two guests: run it by hand.)"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from imagekit.plans.load import load_plan
from testbed.moto_aws import MotoAWS
from testbed.seed_ami import BLOCK_SIZE

ROOT = Path(__file__).resolve().parent.parent


def _load_demo() -> ModuleType:
    """scripts/ is not a package: load the script as a module (registered, for dataclasses)."""
    spec = importlib.util.spec_from_file_location("imagekit_demo", ROOT / "scripts" / "demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


demo = _load_demo()


def read_snapshot(aws: MotoAWS, snapshot_id: str, size: int) -> bytes:
    """A snapshot's first ``size`` bytes through the EBS direct APIs (unlisted blocks are zeros)."""
    ebs = aws.client("ebs")
    listed = ebs.list_snapshot_blocks(SnapshotId=snapshot_id)
    data = bytearray(size + BLOCK_SIZE)
    for block in listed["Blocks"]:
        got = ebs.get_snapshot_block(
            SnapshotId=snapshot_id, BlockIndex=block["BlockIndex"], BlockToken=block["BlockToken"]
        )
        offset = block["BlockIndex"] * BLOCK_SIZE
        data[offset : offset + BLOCK_SIZE] = got["BlockData"].read()
    return bytes(data[:size])


@pytest.mark.slow
def test_seed_stack_two_tagged_amis_holding_the_test_disk(aws: MotoAWS, test_disk: Path) -> None:
    seeded = demo.seed_stack(aws, test_disk)

    assert sorted(seeded) == ["web", "worker"]
    ec2 = aws.client("ec2")
    images = ec2.describe_images(Filters=[{"Name": "tag:dr", "Values": ["true"]}])["Images"]
    assert sorted(i["ImageId"] for i in images) == sorted(a.image_id for a in seeded.values())
    disk = test_disk.read_bytes()
    for image in images:
        tags = {t["Key"]: t["Value"] for t in image["Tags"]}
        role = tags["role"]
        assert tags == {"dr": "true", "role": role}
        assert image["RootDeviceName"] == "/dev/xvda"
        (mapping,) = image["BlockDeviceMappings"]
        assert mapping["Ebs"]["SnapshotId"] == seeded[role].snapshot_ids[0]
        assert read_snapshot(aws, mapping["Ebs"]["SnapshotId"], len(disk)) == disk

    # What the demo plan's sources select is exactly the seeded AMI of each role.
    plan = load_plan(ROOT / "templates" / "plans" / "demo.yaml")
    for role in demo.ROLES:
        source = plan.sources[role]
        filters = [{"Name": k, "Values": v} for k, v in source.describe_filters().items()]
        found = ec2.describe_images(Filters=filters)["Images"]
        assert [i["ImageId"] for i in found] == [seeded[role].image_id]


def test_workspace_is_wiped_except_the_reports(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    (root / "reports").mkdir(parents=True)
    (root / "reports" / "rehearsal-1.json").write_text("{}")
    (root / "stores" / "primary").mkdir(parents=True)
    (root / "state").mkdir()
    (root / "plan.yaml").write_text("old")

    ws = demo.prepare_workspace(root)

    assert sorted(p.name for p in root.iterdir()) == ["plan.yaml", "reports"]
    assert (root / "reports" / "rehearsal-1.json").read_text() == "{}"
    assert ws.plan.read_text() == (ROOT / "templates" / "plans" / "demo.yaml").read_text()


def test_the_db_instance_is_what_the_plan_selects_and_holds_its_data(
    aws: MotoAWS, test_disk: Path
) -> None:
    db = demo.launch_data_instance(aws, test_disk)
    volume = db.volumes[demo.DATA_DEVICE]
    demo.write_data(aws, volume, "generation-7")
    ec2 = aws.client("ec2")
    block = b"imagekit-data: generation-7\n".ljust(BLOCK_SIZE, b"\0")
    digest = base64.b64encode(hashlib.sha256(block).digest()).decode()
    assert aws.volume_blocks(volume) == {0: digest}  # the first block, nothing else written
    plan = load_plan(ROOT / "templates" / "plans" / "demo.yaml")
    source = plan.sources[demo.DATA_ROLE].instance
    assert source is not None
    filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in source.tags.items()]
    found = ec2.describe_instances(Filters=filters)["Reservations"]
    assert [i["InstanceId"] for r in found for i in r["Instances"]] == [db.instance_id]


def test_demo_plan_keeps_its_stores_in_the_workspace(tmp_path: Path) -> None:
    ws = demo.prepare_workspace(tmp_path / "demo")
    plan = load_plan(ws.plan)

    assert [Path(s.url) for s in plan.stores.all()] == [
        ws.root / "stores" / "primary",
        ws.root / "stores" / "replica",
    ]
    assert all(s.key.passphrase_env == "IMAGEKIT_PASSPHRASE" for s in plan.stores.all())
    assert plan.boot_order(demo.TARGET) == [["db", "web"], ["worker"]]
    db = plan.targets[demo.TARGET].stack[demo.DATA_ROLE]
    assert db.health == [f"http:80/data~{demo.DATA_GENERATIONS[-1]}"]
    for role in demo.ROLES:
        spec = plan.targets[demo.TARGET].stack[role]
        assert spec.ports == [22, 80] and spec.health == ["http:80/health~ok"]
        assert plan.sources[role].instance_type
    assert (plan.objectives.rpo, plan.objectives.rto) == (26 * 3600, 30 * 60)


def test_summary_names_the_figures_and_the_report() -> None:
    result = {
        "healthy": True,
        "rto_seconds": 61.25,
        "rpo_seconds": 95.0,
        "stages": [{"name": "restore", "seconds": 3.5}, {"name": "boot web", "seconds": 20.0}],
        "roles": [],
        "report_json": str(ROOT / "build" / "demo" / "reports" / "r.json"),
        "report_html": str(ROOT / "build" / "demo" / "reports" / "r.html"),
    }
    text = "\n".join(
        demo.summary_lines(result, demo.Objectives(rpo=93600, rto=60), [("seed amis", 1.25)])
    )

    assert "rehearsal   healthy" in text
    assert "RPO         95.0 s  (objective 26 h: met)" in text
    assert "RTO         61.2 s  (objective 60 s: MISSED)" in text
    assert "report      build/demo/reports/r.html" in text
    assert "  restore                         3.5" in text
    assert "  seed amis                       1.2" in text
