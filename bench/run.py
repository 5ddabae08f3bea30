"""``make bench``: run the benchmarks and write ``docs/performance.md``.

Sections are added as the pipeline grows; each compares imagekit with the named peers *in the
same run on the same machine*, and states the targets as ratios so the verdict does not depend on
the machine's absolute speed.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import export_bench
from floor import Floor, day2_floor
from images import ensure_images
from store_bench import TOOLS, Row, run_all

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "bench"
MB = 1e6


def _fmt_row(r: Row) -> str:
    return (
        f"| {r.tool} | {r.full.wall:.1f} | {r.full.cpu:.1f} ({r.full.sys_cpu:.1f}) | "
        f"{r.day2.wall:.1f} | "
        f"{r.day2_added / MB:.0f} | {r.restore.wall:.1f} | {r.restored_allocated / MB:.0f} | "
        f"{max(r.full.peak_rss_mib, r.day2.peak_rss_mib, r.restore.peak_rss_mib):.0f} | "
        f"{'yes' if r.restored_ok else 'NO'} |"
    )


def _verdicts(rows: list[Row], source_allocated: int) -> list[str]:
    by = {r.tool: r for r in rows}
    ik = by.get("imagekit")
    if ik is None or not ik.restored_ok:
        return ["- imagekit did not complete the run: no verdicts."]
    out = []

    def line(name: str, value: float, limit: float, unit: str = "×") -> None:
        verdict = "met" if value <= limit else "NOT met"
        out.append(f"- {name}: {value:.2f}{unit} (target ≤ {limit}{unit}) — {verdict}")

    if "borg fixed+sparse" in by:
        line(
            "full ingest wall vs borg fixed+sparse",
            ik.full.wall / by["borg fixed+sparse"].full.wall,
            0.5,
        )
    if "restic" in by:
        line("full ingest wall vs restic", ik.full.wall / by["restic"].full.wall, 0.25)
        line("day-2 bytes added vs restic", ik.day2_added / max(1, by["restic"].day2_added), 0.6)
    line("day-2 ingest wall vs imagekit full ingest", ik.day2.wall / ik.full.wall, 0.3)
    peers = [r.restore.wall for t, r in by.items() if t != "imagekit" and r.restored_ok]
    if peers:
        line("restore wall vs fastest peer", ik.restore.wall / min(peers), 0.5)
    line("restored allocated vs source allocated", ik.restored_allocated / source_allocated, 1.1)
    peak = max(ik.full.peak_rss_mib, ik.day2.peak_rss_mib, ik.restore.peak_rss_mib)
    line("peak RSS", peak, 256, " MiB")
    return out


def _notes(rows: list[Row], floor: Floor | None) -> list[str]:
    """What bounds the two ratios that depend on more than imagekit's pipeline."""
    by = {r.tool: r for r in rows}
    ik = by.get("imagekit")
    out = []
    if ik is not None and ik.fixed is not None and ik.fixed.returncode == 0:
        fixed = ik.fixed.wall
        line = (
            f"- Every imagekit run pays a fixed {fixed:.2f} s (start-up, the identity's scrypt, "
            "the format probe, index and manifest: measured by ingesting a one-chunk disk); "
            f"without it, day 2 takes {(ik.day2.wall - fixed) / (ik.full.wall - fixed):.2f}× "
            "the full ingest."
        )
        if floor is not None:
            line += (
                f" Day 2 reads and hashes all {floor.day2_read / MB:.0f} MB of chunks holding "
                "data again (a raw file says nothing of what changed): its floor is that read, "
                "not the 1 % that changed."
            )
        out.append(line)
    if floor is not None:
        line = (
            f"- Day-2 floor with 512 KiB chunks: {floor.chunks} chunks of day 2 match no chunk of "
            f"day 1 ({floor.raw_bytes / MB:.0f} MB, {floor.incompressible} of them random data "
            f"zstd cannot shrink); even zstd -19 leaves {floor.best_bytes / MB:.0f} MB"
        )
        restic = by.get("restic")
        if restic is not None and restic.day2_added:
            line += f", {floor.best_bytes / restic.day2_added:.2f}× what restic added"
        out.append(line + ". No chunk size short of a format change goes below it.")
    return out


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--only",
        choices=("store", "export"),
        help="run one part and print its figures; docs/performance.md is left as it is",
    )
    parser.add_argument(
        "--tools",
        default=",".join(TOOLS),
        help=f"store part: comma-separated subset of {','.join(TOOLS)} (implies no doc write)",
    )
    return parser.parse_args()


def main() -> None:
    args = _args()
    tools = [t for t in args.tools.split(",") if t]
    unknown = sorted(set(tools) - set(TOOLS))
    if unknown:
        sys.exit(f"unknown tools: {', '.join(unknown)}")
    partial = args.only is not None or set(tools) != set(TOOLS)
    started = time.strftime("%Y-%m-%d")
    load_before = os.getloadavg()[0]
    rows: list[Row] = []
    floor: Floor | None = None
    source_allocated = 1
    if args.only in (None, "store"):
        day1, day2 = ensure_images(WORK / "images")
        source_allocated = os.stat(day2).st_blocks * 512
        rows = run_all(day1, day2, WORK / "store", tools)
        floor = day2_floor(day1, day2)
    export_rows: list[export_bench.ExportRow] = []
    if args.only in (None, "export"):
        print("export:", file=sys.stderr)
        export_rows = export_bench.run_all(WORK / "export")
    if partial:
        # A partial run is for looking, not for the record: print, do not rewrite the doc.
        if rows:
            verdicts = _verdicts(rows, source_allocated)
            print("\n".join([*map(_fmt_row, rows), "", *verdicts, *_notes(rows, floor)]))
        if export_rows:
            print("\n".join(export_bench.report(export_rows)))
        return
    lines = [
        "# imagekit performance",
        "",
        "Written by `make bench` (`bench/run.py`); every figure below comes from one run on one",
        f"machine ({os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}), "
        f"{started}; one-minute load average {load_before:.2f} at the start, "
        f"{os.getloadavg()[0]:.2f} at the end (other work on the machine skews wall times).",
        "",
        "## Store: ingest and restore against restic and borg",
        "",
        "Disks (`bench/images.py`, fixed seed): day 1 is a 4 GiB sparse raw image holding ~1 GiB of",
        "mixed data (slices of a tar of /usr, random data, written zeros, holes, 2,000 small metadata",
        "blocks); day 2 rewrites ~1 % of the data at 100 offsets and appends 50 MiB.",
        "Each tool backs up the same path on day 1 then day 2 into a fresh local repository, then",
        "restores day 2. Wall and CPU are seconds (CPU in the kernel in brackets); added is",
        "repository growth on day 2 (MB); allocated is the restored file's disk usage (MB); RSS",
        "is the peak of the three runs.",
        "",
        "| tool | full wall | full CPU (kernel) | day-2 wall | day-2 added MB | restore wall | restored allocated MB | peak RSS MiB | restore identical |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *[_fmt_row(r) for r in rows],
        "",
        f"Source (day 2) allocated: {source_allocated / MB:.0f} MB.",
        "",
        "Targets (ratios within this run):",
        "",
        *_verdicts(rows, source_allocated),
        "",
        "What bounds the figures:",
        "",
        *_notes(rows, floor),
        "",
        *export_bench.report(export_rows),
    ]
    out = ROOT / "docs" / "performance.md"
    out.write_text("\n".join(lines))
    print(f"wrote {out.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
