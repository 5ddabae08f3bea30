"""The rehearsal page: self-contained, escaped, a bar per stage, a trend once there are two."""

from __future__ import annotations

import re
from typing import Any

from imagekit.plans.report_html import render

STAGES = ["fetch", "decrypt", "convert", "adapt", "upload", "import", "boot", "healthy"]


def report(rto: float, healthy: bool = True, role: str = "web") -> dict[str, Any]:
    return {
        "plan": "shop",
        "target": "gcp",
        "healthy": healthy,
        "rto_seconds": rto,
        "rpo_seconds": 3600.0,
        "started": "2026-11-25T02:30:00Z",
        "stages": [{"name": n, "seconds": i + 1.0} for i, n in enumerate(STAGES)],
        "roles": [
            {
                "role": role,
                "image_id": "abcdef0123456789",
                "point_in_time": "2026-11-25T01:30:00Z",
                "rpo_seconds": 3600.0,
                "healthy": healthy,
                "endpoints": [{"node": "n-1", "guest_port": 80, "host": "203.0.113.7", "port": 80}],
            }
        ],
        "error": None if healthy else "role web did not come up",
        "torn_down": True,
    }


def test_one_bar_per_stage_and_no_trend_from_a_single_rehearsal() -> None:
    page = render(report(30.0))
    assert len(re.findall(r"<rect ", page)) == len(STAGES)
    for name in STAGES:
        assert f"<title>{name}: " in page
    assert "fewer than two rehearsals" in page and "<polyline" not in page
    assert "n-1 80 → 203.0.113.7:80" in page
    # Self-contained: nothing loaded from elsewhere, no scripts.
    assert "<script" not in page and "src=" not in page and "<link" not in page


def test_trend_draws_every_rehearsal_and_failures_are_visible() -> None:
    page = render(report(20.0, healthy=False), [report(30.0), report(25.0)])
    assert page.count("<polyline") == 2  # RTO and RPO
    assert len(re.findall(r"<circle ", page)) == 6  # three rehearsals, two lines
    assert "NOT healthy" in page and "role web did not come up" in page


def test_names_from_the_plan_are_escaped() -> None:
    page = render(report(10.0, role="<script>alert(1)</script>"))
    assert "<script>" not in page and "&lt;script&gt;" in page
