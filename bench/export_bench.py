"""Export benchmark: imagekit export vs a bare boto3 GetSnapshotBlock loop, same emulator, same run.

The emulator (moto, corrected) serves one seeded AMI; at each concurrency both clients read every
block once. imagekit also verifies checksums, compresses, encrypts and writes a local store, so the
ratio shows whether imagekit is bound by the server (≈ 1.0) or by its own pipeline.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from measure import Sample, run

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from testbed.moto_aws import MotoAWS  # noqa: E402
from testbed.seed_ami import VolumeSpec, seed_ami  # noqa: E402

BLOCK = 524_288
#: 2,048 blocks = 1 GiB of random data: moto keeps it in RAM (~3 GiB here), and it is large
#: enough that an export's fixed cost (~0.55 s: imports, API models, key derivation) weighs as
#: little as it does on a real AMI of 8 GiB and more, instead of a fifth of the run.
BLOCKS = 2048
CONCURRENCY = (1, 8, 32)
#: Seconds the emulator holds every GetSnapshotBlock in the second round: an export host outside
#: AWS reaches the EBS endpoint over the internet, tens of milliseconds a round trip (an
#: assumption, not a measurement of AWS). With it the server, not the shared CPU, is the bound —
#: the situation the 0.9x goal is about — up to the concurrency where the CPU is the bound again.
LATENCY = 0.05

BARE_LOOP = """
import sys, boto3, botocore.config
from concurrent.futures import ThreadPoolExecutor
snapshot, workers = sys.argv[1], int(sys.argv[2])
ebs = boto3.client("ebs", config=botocore.config.Config(max_pool_connections=workers + 2))
refs, token = [], None
while True:
    page = ebs.list_snapshot_blocks(SnapshotId=snapshot, **({"NextToken": token} if token else {}))
    refs += [(b["BlockIndex"], b["BlockToken"]) for b in page["Blocks"]]
    token = page.get("NextToken")
    if not token:
        break
def get(ref):
    answer = ebs.get_snapshot_block(SnapshotId=snapshot, BlockIndex=ref[0], BlockToken=ref[1])
    return len(answer["BlockData"].read())
with ThreadPoolExecutor(workers) as pool:
    total = sum(pool.map(get, refs))
assert total == len(refs) * 524288, total
"""


@dataclass
class ExportRow:
    concurrency: int
    bare: Sample
    imagekit: Sample
    mib: float
    #: The same export again into the same store: nothing changed, no block is read, so this is
    #: what an export costs besides its blocks (start-up, store key, EC2 model, manifest).
    again: Sample | None = None
    latency: float = 0.0  # seconds the emulator held each GetSnapshotBlock


def run_all(work: Path) -> list[ExportRow]:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    rows = []
    with MotoAWS(log_path=work / "moto.log") as aws:
        env = dict(aws.env)
        ami = seed_ami(
            aws.client("ebs"),
            aws.client("ec2"),
            "bench-export",
            [VolumeSpec("/dev/xvda", os.urandom(BLOCKS * BLOCK))],
        )
        snapshot = ami.snapshot_ids[0]
        exe = str(Path(sys.executable).parent / "imagekit")
        env_ik = {**env, "IMAGEKIT_PASSPHRASE": "bench", "IMAGEKIT_STATE_DIR": str(work / "state")}
        rounds = [(0.0, workers) for workers in CONCURRENCY]
        rounds += [(LATENCY, workers) for workers in CONCURRENCY]
        for latency, workers in rounds:
            aws.clear_faults()
            if latency:
                aws.add_fault("GetSnapshotBlock", count=10**9, kind="delay", delay=latency)
            tag = f" latency {latency * 1000:.0f} ms" if latency else ""
            bare = run(
                f"bare loop c={workers}{tag}",
                [sys.executable, "-c", BARE_LOOP, snapshot, str(workers)],
                env,
            )
            store = work / f"store-{workers}"
            subprocess.run(
                [exe, "store", "init", str(store), "--passphrase"],
                env={**os.environ, **env_ik},
                check=True,
                capture_output=True,
            )
            export = [exe, "export", ami.image_id, "--store", str(store)]
            export += ["--concurrency", str(workers)]
            ik = run(f"imagekit export c={workers}{tag}", export, env_ik)
            again = run(f"imagekit export again c={workers}{tag}", export, env_ik)
            for sample in (bare, ik, again):
                status = "ok" if sample.returncode == 0 else f"FAILED: {sample.stderr_tail}"
                print(
                    f"  {sample.label}: {sample.wall:.2f} s, {sample.cpu:.2f} s CPU ({status})",
                    file=sys.stderr,
                )
            rows.append(ExportRow(workers, bare, ik, BLOCKS * BLOCK / 2**20, again, latency))
            shutil.rmtree(store, ignore_errors=True)
    return rows


def report(rows: list[ExportRow]) -> list[str]:
    lines = [
        "## Export: EBS direct APIs against a bare boto3 loop",
        "",
        f"One AMI of {BLOCKS * BLOCK >> 20} MiB of random data in the local AWS emulator (moto,",
        "corrected). The bare loop lists the blocks then fetches each with GetSnapshotBlock at the",
        "given concurrency and drops the data. imagekit lists, fetches, verifies every SHA-256",
        "checksum, compresses, encrypts and writes a local store. MiB/s is data over wall time;",
        "CPU is the client's own (the emulator's is not counted), process start-up included.",
        'Client and emulator share the machine\'s cores. "Fixed" is imagekit exporting the same',
        "AMI again right after: no block changed, so it is the cost of an export besides its",
        "blocks (start-up, the store's key derivation, loading the EC2 API model, the describe",
        "calls, the manifest).",
        "",
        "The second half of the table repeats the runs with the emulator holding every",
        f"GetSnapshotBlock {LATENCY * 1000:.0f} ms, as a round trip from outside AWS would (an",
        "assumed figure): there the server's latency, not the shared CPU, bounds the bare loop.",
        "",
        "| server latency | concurrency | bare MiB/s | imagekit MiB/s | ratio "
        "| imagekit CPU s/GiB | bare CPU s/GiB | imagekit fixed s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    best = None
    for r in rows:
        where = f"{r.latency * 1000:.0f} ms" if r.latency else "none"
        if r.bare.returncode or r.imagekit.returncode:
            lines.append(f"| {where} | {r.concurrency} | failed | failed | – | – | – | – |")
            continue
        bare_rate, ik_rate = r.mib / r.bare.wall, r.mib / r.imagekit.wall
        ik_cpu, bare_cpu = r.imagekit.cpu / (r.mib / 1024), r.bare.cpu / (r.mib / 1024)
        fixed = f"{r.again.wall:.2f}" if r.again and r.again.returncode == 0 else "–"
        lines.append(
            f"| {where} | {r.concurrency} | {bare_rate:.0f} | {ik_rate:.0f} | "
            f"{ik_rate / bare_rate:.2f} | "
            f"{ik_cpu:.1f} | {bare_cpu:.1f} | {fixed} |"
        )
        if r.again is not None and r.again.returncode == 0 and not r.latency:
            # Per GiB of blocks, not counting what the export costs whatever its size.
            marginal = (r.imagekit.cpu - r.again.cpu) / (r.mib / 1024)
            best = marginal if best is None else min(best, marginal)
    lines.append("")
    lines.append("Goal: imagekit ≥ 0.9× the bare loop at each concurrency (bound by the server).")
    if best is not None:
        cores = 500 / 1024 * best
        lines.append(
            f"Beyond its fixed cost, imagekit spends {best:.1f} CPU-seconds per GiB of blocks "
            f"(export CPU less the re-export's); at the AWS ceiling of ~500 MiB/s per snapshot "
            f"that is about {cores:.1f} cores busy (≈ {cores * 1.25:.1f} with headroom). The "
            "emulator's own CPU is not part of that figure."
        )
    lines.append("")
    return lines
