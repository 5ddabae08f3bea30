"""What one hourly cycle of a running instance costs, as a function of the blocks changed.

    .venv/bin/python bench/instance_cycle.py [--data-mib 512] [--changes 0,16,128,1024]

On the AWS emulator (moto over HTTP, corrected to the contract) and a local store: an instance
with a root volume and a data volume holding ``--data-mib`` of written data is exported once
(full), then, per row, ``N`` random blocks of the data volume are rewritten and one cycle runs —
CreateSnapshots, wait, incremental export, lifecycle. Printed: a markdown table of the requests
per API action, the bytes read and the wall time of each cycle (snapshot and export apart: the
emulator completes a snapshot at once, AWS takes seconds to minutes).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from imagekit.export.instance import InstanceSelection  # noqa: E402
from imagekit.export.instance_job import (  # noqa: E402
    InstanceSource,
    export_instance,
    resolve_instances,
)
from imagekit.store.backends.registry import open_backend  # noqa: E402
from imagekit.store.identity import Identity  # noqa: E402
from imagekit.store.repository import Repository  # noqa: E402
from testbed.moto_aws import MotoAWS  # noqa: E402
from testbed.seed_ami import BLOCK_SIZE, VolumeSpec, pattern_block, seed_ami  # noqa: E402
from testbed.seed_instance import DataVolume, launch_instance  # noqa: E402

#: Blocks per write-hook request: keeps each JSON body to ~45 MiB.
WRITE_BATCH = 64
ACTIONS = ("CreateSnapshots", "DescribeSnapshots", "ListChangedBlocks", "GetSnapshotBlock")


def write_random(aws: MotoAWS, volume: str, indexes: list[int]) -> None:
    for start in range(0, len(indexes), WRITE_BATCH):
        batch = indexes[start : start + WRITE_BATCH]
        aws.write_volume(volume, {i: os.urandom(BLOCK_SIZE) for i in batch})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-mib", type=int, default=512)
    parser.add_argument("--changes", default="0,16,128,1024")
    args = parser.parse_args()
    data_blocks = args.data_mib * (1 << 20) // BLOCK_SIZE
    changes = [int(n) for n in args.changes.split(",")]
    with MotoAWS() as aws, tempfile.TemporaryDirectory() as work:
        aws.set_snapshot_polls(0)
        ec2, ebs = aws.client("ec2", max_attempts=3), aws.client("ebs", max_attempts=3)
        root = b"".join(pattern_block(f"root-{i}") for i in range(128))
        ami = seed_ami(ebs, ec2, "bench-base", [VolumeSpec("/dev/xvda", root)])
        gib = max(1, -(-args.data_mib // 1024) * 2)
        seeded = launch_instance(ec2, ami, data_volumes=[DataVolume("/dev/sdf", size_gib=gib)])
        data = seeded.volumes["/dev/sdf"]
        write_random(aws, data, list(range(data_blocks)))
        (instance,) = resolve_instances(ec2, aws.region, InstanceSelection((seeded.instance_id,)))
        writer = Identity.generate()
        with open_backend(str(Path(work) / "store")) as backend:
            Repository.init(
                backend, recipients=[Identity.generate().recipient], writers=[writer.recipient]
            )
            repo = Repository.open(backend, identity=writer)
            source = InstanceSource("bench", "db", poll_interval=0.0)
            rows = []
            for n in [None, *changes]:
                if n:
                    step = max(1, data_blocks // n)
                    write_random(aws, data, [(i * step) % data_blocks for i in range(n)])
                aws.reset_counters()
                started = time.monotonic()
                result = export_instance(
                    repo,
                    ec2,
                    ebs,
                    instance,
                    source,
                    image_name="db",
                    state_dir=Path(work) / "state",
                )
                wall = time.monotonic() - started
                counts = aws.counters()
                rows.append(
                    (
                        "first (full)" if n is None else str(n),
                        [counts[a] for a in ACTIONS],
                        result.export.bytes_read,
                        result.export.bytes_uploaded,
                        result.snapshot_seconds,
                        result.export.seconds,
                        wall,
                    )
                )
    print(f"data volume: {args.data_mib} MiB written of {gib} GiB; root: 64 MiB written")
    print()
    print(
        "| blocks changed | " + " | ".join(ACTIONS) + " | MiB read | MiB uploaded "
        "| snapshot s | export s | cycle s |"
    )
    print("|" + " --- |" * (len(ACTIONS) + 6))
    for label, counts, read, uploaded, snap_s, export_s, wall in rows:
        print(
            f"| {label} | " + " | ".join(str(c) for c in counts) + f" | {read / 2**20:.1f} | "
            f"{uploaded / 2**20:.1f} | {snap_s:.2f} | {export_s:.2f} | {wall:.2f} |"
        )


if __name__ == "__main__":
    main()
