"""Export benchmark: imagekit export vs a bare boto3 GetSnapshotBlock loop, same emulator, same run.

The emulator (moto, corrected) serves one seeded AMI; at each concurrency both clients read every
block once. imagekit also verifies checksums, compresses, encrypts and writes a local store, so the
ratio shows whether imagekit is bound by the server (≈ 1.0) or by its own pipeline.

The goal's rounds run both clients at the lowest CPU priority (``nice -n 19``): the emulator then
takes the cores it can use first, as AWS's servers never share a CPU with the export host, and a
client gets whatever is left. A round with equal shares follows, for information: there the
emulator and the client compete for the same two cores, and the ratio measures how much CPU
imagekit's extra work (checks, hashing, compression, encryption, writes) costs, not which side
bounds the transfer.
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
#: each moved the ratio by ±0.1 here; with three, one outlying pair (0.77 beside 0.90 and 0.98)
#: left a CPU-bound row's median resting on one of the other two. Five steady the median.
REPEATS = 5
#: The goal, as a ratio of imagekit's rate to the bare loop's.
GOAL = 0.9
#: How the goal's rounds start both clients: below the emulator's priority (see the docstring).
SERVER_FIRST = ("nice", "-n", "19")

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
    #: The clients ran below the emulator's priority (the goal's rounds); False: equal shares.
    server_first: bool = True

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
        rounds = [(0.0, workers, True) for workers in CONCURRENCY]
        rounds += [(LATENCY, workers, True) for workers in CONCURRENCY]
        rounds += [(0.0, workers, False) for workers in CONCURRENCY]
        for latency, workers, server_first in rounds:
            aws.clear_faults()
            if latency:
                aws.add_fault("GetSnapshotBlock", count=10**9, kind="delay", delay=latency)
            slow_serial = latency and workers == 1
            (image_id, snapshot), blocks = (
                (small, LATENCY_BLOCKS) if slow_serial else (large, BLOCKS)
            )
            tag = f" c={workers}" + (f" latency {latency * 1000:.0f} ms" if latency else "")
            tag += "" if server_first else " equal shares"
            prefix = list(SERVER_FIRST) if server_first else []
            row = ExportRow(workers, [], [], blocks * BLOCK / 2**20, None, latency)
            row.server_first = server_first
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
                export = [*prefix, exe, "export", image_id, "--store", str(store)]
                export += ["--concurrency", str(workers)]
                bare_argv = [*prefix, sys.executable, "-c", BARE_LOOP, snapshot, str(workers)]
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


def _ratio_cells(r: ExportRow) -> str:
    ratio = statistics.median(r.ratios)
    return (
        f"{r.rate(r.bare):.0f} | {r.rate(r.imagekit):.0f} | "
        f"{ratio:.2f} ({min(r.ratios):.2f}–{max(r.ratios):.2f})"
    )


def _cores_at_bare_rate(r: ExportRow) -> float:
    """Cores imagekit and the emulator together would keep busy at the bare loop's rate: above
    the machine's count, no client doing imagekit's work could match the bare loop here."""
    per_gib = r.cpu_per_gib(r.imagekit) + r.server_cpu_per_gib(r.imagekit_server)
    return per_gib * r.rate(r.bare) / 1024


def _goal_row(r: ExportRow) -> str:
    where = f"{r.latency * 1000:.0f} ms" if r.latency else "none"
    if not r.ok:
        return f"| {where} | {r.concurrency} | failed | failed |" + " – |" * 6
    verdict = "met" if statistics.median(r.ratios) >= GOAL else "NOT met"
    fixed = f"{r.again.wall:.2f}" if r.again and r.again.returncode == 0 else "–"
    return (
        f"| {where} | {r.concurrency} | {_ratio_cells(r)} | {verdict} | "
        f"{r.cpu_per_gib(r.imagekit):.1f} | {r.cpu_per_gib(r.bare):.1f} | "
        f"{_cores_at_bare_rate(r):.2f} | {fixed} |"
    )


def _shared_row(r: ExportRow) -> str:
    if not r.ok:
        return f"| {r.concurrency} | failed | failed |" + " – |" * 5
    return (
        f"| {r.concurrency} | {_ratio_cells(r)} | "
        f"{r.cpu_per_gib(r.imagekit):.1f} | {r.cpu_per_gib(r.bare):.1f} | "
        f"{r.server_cpu_per_gib(r.bare_server):.1f} / "
        f"{r.server_cpu_per_gib(r.imagekit_server):.1f} | {r.cpu_bound_ratio:.2f} |"
    )


def _marginal_cpu(rows: list[ExportRow]) -> float | None:
    """imagekit's CPU-seconds per GiB of blocks, less what an export costs whatever its size."""
    best = None
    for r in rows:
        if r.ok and not r.latency and r.again is not None and r.again.returncode == 0:
            cpu = statistics.median(s.cpu for s in r.imagekit)
            marginal = (cpu - r.again.cpu) / (r.mib / 1024)
            best = marginal if best is None else min(best, marginal)
    return best


def report(rows: list[ExportRow]) -> list[str]:
    goal_rows = [r for r in rows if r.server_first]
    shared_rows = [r for r in rows if not r.server_first]
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
        'range in brackets. "Fixed" is imagekit exporting the same AMI again right after: no',
        "block changed, so it is the cost of an export besides its blocks (start-up, the store's",
        "key derivation, loading the EC2 API model, the describe calls, the manifest).",
        "",
        "### The goal: is imagekit bound by the server?",
        "",
        "On AWS the server never shares a CPU with the export host. Here the emulator and the",
        "client share two cores, so both clients run at the lowest CPU priority",
        f"(`{' '.join(SERVER_FIRST)}`): the emulator takes the CPU it can use first, the client",
        "gets every cycle left, and a client that keeps up with the server matches the bare loop.",
        "The second half repeats the runs with the emulator holding every GetSnapshotBlock",
        f"{LATENCY * 1000:.0f} ms, as a round trip from outside AWS would (an assumed figure);",
        f"with one request in flight that round reads a {LATENCY_BLOCKS * BLOCK >> 20} MiB AMI.",
        "",
        '"Cores needed" is the CPU imagekit and the emulator (measured from /proc) would keep',
        f"busy together at the bare loop's rate; near or above the machine's {os.cpu_count()}, the",
        "row measures the machine's CPU rather than which side bounds the transfer.",
        "",
        "| server latency | concurrency | bare MiB/s | imagekit MiB/s | ratio (range) | goal "
        "| imagekit CPU s/GiB | bare CPU s/GiB | cores needed | imagekit fixed s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *map(_goal_row, goal_rows),
        "",
        f"Goal: imagekit ≥ {GOAL}× the bare loop at each concurrency (bound by the server).",
    ]
    if goal_rows:
        met = sum(1 for r in goal_rows if r.ok and statistics.median(r.ratios) >= GOAL)
        lines.append(f"Met in {met} of {len(goal_rows)} rows.")
    best = _marginal_cpu(rows)
    if best is not None:
        cores = 500 / 1024 * best
        lines += [
            "",
            f"Beyond its fixed cost, imagekit spends {best:.1f} CPU-seconds per GiB of blocks "
            f"(export CPU less the re-export's); at the AWS ceiling of ~500 MiB/s per snapshot "
            f"that is about {cores:.1f} cores busy (≈ {cores * 1.25:.1f} with headroom). The "
            "emulator's own CPU is not part of that figure.",
        ]
    if shared_rows:
        lines += [
            "",
            "### For information: equal shares of two cores",
            "",
            "The same runs with the emulator and the client at the same priority. Both then",
            "compete for the two cores, so the ratio says what imagekit's extra work costs in CPU",
            "rather than which side bounds the transfer. The emulator's CPU per GiB served is",
            "measured from /proc around each run; the all-CPU ratio is (bare + its emulator CPU) /",
            "(imagekit + its emulator CPU), what the ratio would be if the cores were all that",
            "limited both clients.",
            "",
            "| concurrency | bare MiB/s | imagekit MiB/s | ratio (range) | imagekit CPU s/GiB "
            "| bare CPU s/GiB | emulator CPU s/GiB (bare / imagekit) | all-CPU ratio |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
            *map(_shared_row, shared_rows),
        ]
    lines += [
        "",
        "Where imagekit's client CPU goes (perf and separate measurements, 2026-11-26 — not",
        "measured by this run), CPU-seconds per GiB: HTTP ~1.4 on the lean path (http.client:",
        "the kernel's socket reads ~0.5, header parsing and request objects, SigV4 signing 0.13;",
        "a urllib3 pool cost 1.8–2.2, the boto3 client's own path 2.4–3.2), SHA-256 checks 0.6",
        "(OpenSSL's SHA-NI code, 1.7 GiB/s: the floor), keyed BLAKE3 0.45 (chunk ids, then pack",
        "ids over the packs: two passes), zstd 0.1–0.25 (random data is copied through), AES-GCM",
        "0.15, the local store's writes ~0.2 with O_DIRECT from reused aligned buffers (through",
        "the page cache they cost ~0.5, and 1.8–2.6 on this virtual machine before the store",
        "dropped a pack's cached pages after its fsync; an A/B of 4 × 6 exports measured the",
        "direct writes 0.06–0.35 lower, throughput unchanged). The store pipeline alone, fed",
        "blocks from memory, measured ~2.2 before the direct writes. The rest is threads",
        "contending on two cores. The work the bare loop does not do — checks, ids, compression,",
        "encryption, writes — is ~1.5 CPU-s per GiB at the least, so with equal shares the",
        "all-CPU ratio stays near 0.8 for any implementation.",
        "",
    ]
    return lines
