"""``make bench``: run the benchmarks and write ``docs/performance.md``.

Sections are added as the pipeline grows; each compares imagekit with the named peers *in the
same run on the same machine*, and states the targets as ratios so the verdict does not depend on
the machine's absolute speed.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import export_bench
from images import ensure_images
from store_bench import Row, run_all

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "bench"
MB = 1e6


def _fmt_row(r: Row) -> str:
    return (
        f"| {r.tool} | {r.full.wall:.1f} | {r.full.cpu:.1f} | {r.day2.wall:.1f} | "
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


def main() -> None:
    day1, day2 = ensure_images(WORK / "images")
    source_allocated = os.stat(day2).st_blocks * 512
    started = time.strftime("%Y-%m-%d")
    rows = run_all(day1, day2, WORK / "store")
    print("export:", file=sys.stderr)
    export_rows = export_bench.run_all(WORK / "export")
    lines = [
        "# imagekit performance",
        "",
        "Written by `make bench` (`bench/run.py`); every figure below comes from one run on one",
        f"machine ({os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}), "
        f"{started}.",
        "",
        "## Store: ingest and restore against restic and borg",
        "",
        "Disks (`bench/images.py`, fixed seed): day 1 is a 4 GiB sparse raw image holding ~1 GiB of",
        "mixed data (slices of a tar of /usr, random data, written zeros, holes, 2,000 small metadata",
        "blocks); day 2 rewrites ~1 % of the data at 100 offsets and appends 50 MiB.",
        "Each tool backs up the same path on day 1 then day 2 into a fresh local repository, then",
        "restores day 2. Wall and CPU are seconds; added is repository growth on day 2 (MB);",
        "allocated is the restored file's disk usage (MB); RSS is the peak of the three runs.",
        "",
        "| tool | full wall | full CPU | day-2 wall | day-2 added MB | restore wall | restored allocated MB | peak RSS MiB | restore identical |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *[_fmt_row(r) for r in rows],
        "",
        f"Source (day 2) allocated: {source_allocated / MB:.0f} MB.",
        "",
        "Targets (ratios within this run):",
        "",
        *_verdicts(rows, source_allocated),
        "",
        *export_bench.report(export_rows),
    ]
    out = ROOT / "docs" / "performance.md"
    out.write_text("\n".join(lines))
    print(f"wrote {out.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
