"""Export benchmark: imagekit export vs a bare boto3 GetSnapshotBlock loop, same emulator, same run.

The emulator (moto, corrected) serves one seeded AMI; at each concurrency both clients read every
block once. imagekit also verifies checksums, compresses, encrypts and writes a local store, so the
ratio shows whether imagekit is bound by the server (≈ 1.0) or by its own pipeline.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
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
#: With 50 ms a block and one request in flight the export reads a 256 MiB AMI: 1 GiB would take
#: 100 s a run, and at ~10 MiB/s the fixed cost is 2 % of it anyway. At more requests in flight the
#: 1 GiB AMI again (on 256 MiB at 60 MiB/s the fixed ~0.5 s would be an eighth of the run).
LATENCY_BLOCKS = 512
CONCURRENCY = (1, 8, 32)
#: Seconds the emulator holds every GetSnapshotBlock in the second round: an export host outside
#: AWS reaches the EBS endpoint over the internet, tens of milliseconds a round trip (an
#: assumption, not a measurement of AWS). With it the server, not the shared CPU, is the bound —
#: the situation the 0.9x goal is about — up to the concurrency where the CPU is the bound again.
LATENCY = 0.05
#: Runs of each client per row, back to back in alternating order so that both see the same drift
#: in the machine's load and the same share of first places; the row reports medians. One run of
#: each moved the ratio by ±0.1 here.
REPEATS = 3
#: The goal, as a ratio of imagekit's rate to the bare loop's.
GOAL = 0.9

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
    bare: list[Sample]
    imagekit: list[Sample]
    mib: float
    #: The same export again into the same store: nothing changed, no block is read, so this is
    #: what an export costs besides its blocks (start-up, store key, EC2 model, manifest).
    again: Sample | None = None
    latency: float = 0.0  # seconds the emulator held each GetSnapshotBlock
    #: CPU seconds the emulator spent serving each run (same order as ``bare`` / ``imagekit``).
    bare_server: list[float] = field(default_factory=list)
    imagekit_server: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.returncode == 0 for s in (*self.bare, *self.imagekit))

    def rate(self, samples: list[Sample]) -> float:
        return self.mib / statistics.median(s.wall for s in samples)

    def cpu_per_gib(self, samples: list[Sample]) -> float:
        return statistics.median(s.cpu for s in samples) / (self.mib / 1024)

    def server_cpu_per_gib(self, runs: list[float]) -> float:
        return statistics.median(runs) / (self.mib / 1024) if runs else 0.0

    @property
    def cpu_bound_ratio(self) -> float:
        """The ratio if every CPU-second counted, the emulator's included: what two shared
        cores allow when neither client waits on anything else."""
        bare = self.cpu_per_gib(self.bare) + self.server_cpu_per_gib(self.bare_server)
        ik = self.cpu_per_gib(self.imagekit) + self.server_cpu_per_gib(self.imagekit_server)
        return bare / ik

    @property
    def ratios(self) -> list[float]:
        """imagekit's rate over the bare loop's, per back-to-back pair."""
        return [b.wall / i.wall for b, i in zip(self.bare, self.imagekit, strict=True)]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a running process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _seed(aws: MotoAWS, name: str, blocks: int) -> tuple[str, str]:
    ami = seed_ami(
        aws.client("ebs"),
        aws.client("ec2"),
        name,
        [VolumeSpec("/dev/xvda", os.urandom(blocks * BLOCK))],
    )
    return ami.image_id, ami.snapshot_ids[0]


def _show(sample: Sample) -> None:
    status = "ok" if sample.returncode == 0 else f"FAILED: {sample.stderr_tail}"
    print(
        f"  {sample.label}: {sample.wall:.2f} s, {sample.cpu:.2f} s CPU ({status})", file=sys.stderr
    )


def run_all(work: Path) -> list[ExportRow]:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    rows = []
    with MotoAWS(log_path=work / "moto.log") as aws:
        env = dict(aws.env)
        large = _seed(aws, "bench-export", BLOCKS)
        small = _seed(aws, "bench-export-latency", LATENCY_BLOCKS)
        exe = str(Path(sys.executable).parent / "imagekit")
        env_ik = {**env, "IMAGEKIT_PASSPHRASE": "bench", "IMAGEKIT_STATE_DIR": str(work / "state")}
        rounds = [(0.0, workers) for workers in CONCURRENCY]
        rounds += [(LATENCY, workers) for workers in CONCURRENCY]
        for latency, workers in rounds:
            aws.clear_faults()
            if latency:
                aws.add_fault("GetSnapshotBlock", count=10**9, kind="delay", delay=latency)
            slow_serial = latency and workers == 1
            (image_id, snapshot), blocks = (
                (small, LATENCY_BLOCKS) if slow_serial else (large, BLOCKS)
            )
            tag = f" c={workers}" + (f" latency {latency * 1000:.0f} ms" if latency else "")
            row = ExportRow(workers, [], [], blocks * BLOCK / 2**20, None, latency)
            server = aws.server.proc
            assert server is not None
            for repeat in range(REPEATS):
                store = work / f"store-{workers}-{repeat}"
                subprocess.run(
                    [exe, "store", "init", str(store), "--passphrase"],
                    env={**os.environ, **env_ik},
                    check=True,
                    capture_output=True,
                )
                export = [exe, "export", image_id, "--store", str(store)]
                export += ["--concurrency", str(workers)]
                bare_argv = [sys.executable, "-c", BARE_LOOP, snapshot, str(workers)]
                label = f"{tag} #{repeat + 1}"
                # Who goes first alternates: an export right after the bare loop was measured
                # slower here than the same export right after another export (up to 0.1 of
                # the ratio), so a fixed order would favour one client.
                order = ("bare", "imagekit") if repeat % 2 == 0 else ("imagekit", "bare")
                for who in order:
                    before = _cpu_seconds(server.pid)
                    if who == "bare":
                        row.bare.append(run(f"bare loop{label}", bare_argv, env))
                        row.bare_server.append(_cpu_seconds(server.pid) - before)
                    else:
                        row.imagekit.append(run(f"imagekit export{label}", export, env_ik))
                        row.imagekit_server.append(_cpu_seconds(server.pid) - before)
                if repeat == 0:
                    row.again = run(f"imagekit export again{tag}", export, env_ik)
                    _show(row.again)
                for sample in (row.bare[-1], row.imagekit[-1]):
                    _show(sample)
                shutil.rmtree(store, ignore_errors=True)
            rows.append(row)
    return rows


def report(rows: list[ExportRow]) -> list[str]:
    lines = [
        "## Export: EBS direct APIs against a bare boto3 loop",
        "",
        f"An AMI of {BLOCKS * BLOCK >> 20} MiB of random data in the local AWS emulator (moto,",
        "corrected). The bare loop lists the blocks then fetches each with GetSnapshotBlock at the",
        "given concurrency and drops the data. imagekit lists, fetches, verifies every SHA-256",
        "checksum, compresses, encrypts and writes a local store. MiB/s is data over wall time;",
        "CPU is the client's own (the emulator's is not counted), process start-up included.",
        f"Each row runs the two clients {REPEATS} times, back to back, who goes first",
        "alternating, and reports medians; the ratio is the median of the pairs' ratios, their",
        "range in brackets.",
        'Client and emulator share the machine\'s cores. "Fixed" is imagekit exporting the same',
        "AMI again right after: no block changed, so it is the cost of an export besides its",
        "blocks (start-up, the store's key derivation, loading the EC2 API model, the describe",
        "calls, the manifest).",
        "",
        "The second half of the table repeats the runs with the emulator holding every",
        f"GetSnapshotBlock {LATENCY * 1000:.0f} ms, as a round trip from outside AWS would (an",
        "assumed figure): there the server's latency, not the shared CPU, bounds the bare loop.",
        f"With one request in flight, that round reads a {LATENCY_BLOCKS * BLOCK >> 20} MiB AMI.",
        "",
        "The emulator's CPU per GiB served is measured too (from /proc, around each run). When",
        "the two cores are the bound, a run's rate follows the CPU it needs *with* the emulator's:",
        "the all-CPU ratio is (bare + its emulator CPU) / (imagekit + its emulator CPU), what the",
        "ratio would be if the cores were all that limited both clients.",
        "",
        "| server latency | concurrency | bare MiB/s | imagekit MiB/s | ratio (range) | goal "
        "| imagekit CPU s/GiB | bare CPU s/GiB | emulator CPU s/GiB (bare / imagekit) "
        "| all-CPU ratio | imagekit fixed s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    best = None
    for r in rows:
        where = f"{r.latency * 1000:.0f} ms" if r.latency else "none"
        if not r.ok:
            lines.append(f"| {where} | {r.concurrency} | failed | failed |" + " – |" * 7)
            continue
        ratio = statistics.median(r.ratios)
        verdict = "met" if ratio >= GOAL else "NOT met"
        fixed = f"{r.again.wall:.2f}" if r.again and r.again.returncode == 0 else "–"
        lines.append(
            f"| {where} | {r.concurrency} | {r.rate(r.bare):.0f} | {r.rate(r.imagekit):.0f} | "
            f"{ratio:.2f} ({min(r.ratios):.2f}–{max(r.ratios):.2f}) | {verdict} | "
            f"{r.cpu_per_gib(r.imagekit):.1f} | {r.cpu_per_gib(r.bare):.1f} | "
            f"{r.server_cpu_per_gib(r.bare_server):.1f} / "
            f"{r.server_cpu_per_gib(r.imagekit_server):.1f} | {r.cpu_bound_ratio:.2f} | {fixed} |"
        )
        if r.again is not None and r.again.returncode == 0 and not r.latency:
            # Per GiB of blocks, not counting what the export costs whatever its size.
            cpu = statistics.median(s.cpu for s in r.imagekit)
            marginal = (cpu - r.again.cpu) / (r.mib / 1024)
            best = marginal if best is None else min(best, marginal)
    lines.append("")
    lines.append(
        f"Goal: imagekit ≥ {GOAL}× the bare loop at each concurrency (bound by the server)."
    )
    if best is not None:
        cores = 500 / 1024 * best
        lines.append(
            f"Beyond its fixed cost, imagekit spends {best:.1f} CPU-seconds per GiB of blocks "
            f"(export CPU less the re-export's); at the AWS ceiling of ~500 MiB/s per snapshot "
            f"that is about {cores:.1f} cores busy (≈ {cores * 1.25:.1f} with headroom). The "
            "emulator's own CPU is not part of that figure."
        )
    lines += [
        "",
        "Where imagekit's client CPU goes (profiled with perf, py-spy and yappi on 2026-11-26, at",
        "concurrency 8 with the emulator on the other core — not measured by this run):",
        "HTTP 1.5–1.8 CPU-s per GiB (urllib3 and http.client's header parsing, SigV4 signing;",
        "the boto3 client's own path cost 2.4–3.2, which is why GetSnapshotBlock has a lean path),",
        "SHA-256 checks 0.6, keyed BLAKE3 chunk ids 0.17, zstd 0.1–0.25 (random data is copied",
        "through), AES-GCM 0.15, pack ids and joins 0.25, the local store's page-cache writes and",
        "fsyncs 0.4–2.8 (kernel time, which varies from run to run on this virtual machine), and",
        "about 1 of Python hand-offs between threads. The same pipeline fed from memory instead",
        "of HTTP needs ~2.8 on one core. The C primitives' floor for the whole job is about 3,",
        "which is what the bare loop spends on requests alone: where the emulator and both",
        "clients share two cores, the all-CPU ratio is the ceiling of the measured one.",
        "",
    ]
    return lines
