"""The rehearsal report as one self-contained HTML page (pure: a report dict in, a string out).

No scripts, no external assets: inline SVG for the stage timeline and for the RTO/RPO trend across
earlier rehearsals, so the file can be mailed, archived or opened offline years later.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

#: One colour per stage, in pipeline order; unknown stages fall back to grey.
STAGE_COLOURS = {
    "fetch": "#4e79a7",
    "decrypt": "#59a14f",
    "convert": "#f28e2b",
    "adapt": "#9c755f",
    "upload": "#76b7b2",
    "import": "#edc948",
    "boot": "#b07aa1",
    "healthy": "#e15759",
}
WIDTH = 760


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _day(started: object) -> str:
    """An ISO time as ``YYYY-MM-DD HH:MM`` (UTC) for axis labels."""
    text = str(started or "")
    return text[:16].replace("T", " ")


def timeline_svg(stages: Sequence[Mapping[str, Any]]) -> str:
    """Stages laid end to end on one time axis, each labelled with its name and seconds."""
    total = sum(float(s["seconds"]) for s in stages) or 1.0
    row, left, right = 26, 110, 20
    scale = (WIDTH - left - right) / total
    height = row * len(stages) + 30
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'role="img" aria-label="stage timeline">'
    ]
    start = 0.0
    for i, stage in enumerate(stages):
        seconds = float(stage["seconds"])
        y = i * row + 4
        x = left + start * scale
        w = max(seconds * scale, 1.0)
        colour = STAGE_COLOURS.get(str(stage["name"]), "#9c9c9c")
        parts.append(
            f'<text x="{left - 8}" y="{y + 15}" text-anchor="end" font-size="12">'
            f"{_esc(stage['name'])}</text>"
        )
        parts.append(
            f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row - 8}" '
            f'fill="{colour}"><title>{_esc(stage["name"])}: {seconds:.2f} s</title></rect>'
        )
        # The label goes right of the bar, or inside its end when the bar reaches the edge.
        inside = x + w + 50 > WIDTH
        label_x, anchor = (x + w - 4, "end") if inside else (x + w + 4, "start")
        fill = "#fff" if inside else "#222"
        parts.append(
            f'<text x="{label_x:.1f}" y="{y + 15}" font-size="11" text-anchor="{anchor}" '
            f'fill="{fill}">{seconds:.1f} s</text>'
        )
        start += seconds
    axis_y = len(stages) * row + 12
    parts.append(
        f'<line x1="{left}" y1="{axis_y}" x2="{WIDTH - right}" y2="{axis_y}" stroke="#555"/>'
    )
    parts.append(
        f'<text x="{WIDTH - right}" y="{axis_y + 14}" text-anchor="end" font-size="11">'
        f"{total:.1f} s</text>"
    )
    parts.append("</svg>")
    return "".join(parts)


def trend_svg(history: Sequence[Mapping[str, Any]]) -> str:
    """RTO and RPO of each rehearsal in ``history`` (oldest first) as two polylines."""
    points = [h for h in history if h.get("rto_seconds") is not None]
    if len(points) < 2:
        return "<p>Trend: fewer than two rehearsals in this folder so far.</p>"
    height, pad = 220, 40
    top = max(max(float(p["rto_seconds"]), float(p.get("rpo_seconds") or 0)) for p in points) or 1.0
    step = (WIDTH - 2 * pad) / (len(points) - 1)

    def y(value: float) -> float:
        return height - pad - value / top * (height - 2 * pad)

    def line(key: str, colour: str) -> str:
        coords = " ".join(
            f"{pad + i * step:.1f},{y(float(p.get(key) or 0)):.1f}" for i, p in enumerate(points)
        )
        dots = "".join(
            f'<circle cx="{pad + i * step:.1f}" cy="{y(float(p.get(key) or 0)):.1f}" r="3" '
            f'fill="{colour}"><title>{_esc(p.get("started", ""))}: {key} '
            f"{_duration(float(p.get(key) or 0))}</title></circle>"
            for i, p in enumerate(points)
        )
        return f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"/>{dots}'

    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" role="img" '
        f'aria-label="RTO and RPO trend">'
        f'<line x1="{pad}" y1="{height - pad}" x2="{WIDTH - pad}" y2="{height - pad}" '
        'stroke="#555"/>'
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#555"/>'
        f'<text x="{pad}" y="{pad - 8}" font-size="11">max {_duration(top)}</text>'
        f"{line('rto_seconds', '#e15759')}{line('rpo_seconds', '#4e79a7')}"
        f'<text x="{pad}" y="{height - pad + 16}" font-size="11">'
        f"{_esc(_day(points[0].get('started')))}</text>"
        f'<text x="{WIDTH - pad}" y="{height - pad + 16}" text-anchor="end" font-size="11">'
        f"{_esc(_day(points[-1].get('started')))}</text>"
        f'<text x="{WIDTH - pad}" y="{pad - 8}" text-anchor="end" font-size="11">'
        f'<tspan fill="#e15759">RTO</tspan> · <tspan fill="#4e79a7">RPO</tspan></text>'
        "</svg>"
    )


def _endpoint(endpoint: Any) -> str:
    if isinstance(endpoint, Mapping):
        where = f"{endpoint.get('host')}:{endpoint.get('port')}"
        return f"{endpoint.get('node', '')} {endpoint.get('guest_port')} → {where}".strip()
    return str(endpoint)


def render(report: Mapping[str, Any], history: Sequence[Mapping[str, Any]] = ()) -> str:
    """The whole page for ``report``; ``history`` holds earlier reports of the same folder."""
    healthy = bool(report.get("healthy"))
    verdict = "healthy" if healthy else "NOT healthy"
    rows = "".join(
        f"<tr><td>{_esc(r.get('role'))}</td><td>{_esc(r.get('image_id', ''))[:12]}</td>"
        f"<td>{_esc(r.get('point_in_time', ''))}</td><td>{_duration(r.get('rpo_seconds'))}</td>"
        f"<td>{_esc(', '.join(_endpoint(e) for e in r.get('endpoints', [])))}</td>"
        f"<td>{'yes' if r.get('healthy') else 'no'}</td></tr>"
        for r in report.get("roles", [])
    )
    adapted = "".join(
        f"<li>{_esc(r.get('role'))}: {_esc(change)}</li>"
        for r in report.get("roles", [])
        for change in r.get("adapted") or ()
    )
    error = report.get("error")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>imagekit rehearsal {_esc(report.get("plan", ""))} → {_esc(report.get("target", ""))}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 52rem; }}
.verdict {{ font-size: 1.4rem; color: {"#2e7d32" if healthy else "#c62828"}; }}
table {{ border-collapse: collapse; margin: 1rem 0; }}
td, th {{ border: 1px solid #ccc; padding: .3rem .6rem; text-align: left; font-size: .9rem; }}
.figures span {{ display: inline-block; margin-right: 2rem; font-size: 1.1rem; }}
</style></head><body>
<h1>Rehearsal: {_esc(report.get("plan", ""))} → {_esc(report.get("target", ""))}</h1>
<p class="verdict">{verdict}</p>
<p class="figures"><span>RTO {_duration(report.get("rto_seconds"))}</span>
<span>RPO {_duration(report.get("rpo_seconds"))}</span>
<span>started {_esc(_day(report.get("started")))} UTC</span></p>
{f"<p><strong>Failure:</strong> {_esc(error)}</p>" if error else ""}
<h2>Stages</h2>
{timeline_svg(report.get("stages", []))}
<h2>Roles</h2>
<table><tr><th>role</th><th>image</th><th>data frozen</th><th>RPO</th><th>endpoints</th>
<th>healthy</th></tr>{rows}</table>
<h2>Guest adaptation</h2>
{f"<ul>{adapted}</ul>" if adapted else "<p>No changes to the guests.</p>"}
<h2>Trend across rehearsals</h2>
{trend_svg([*history, report])}
<p>Torn down: {"yes" if report.get("torn_down") else "no"}.</p>
</body></html>
"""
