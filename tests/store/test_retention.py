"""Retention selection: keep-last / daily / weekly / monthly, per lineage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from imagekit.store.manifest import ImageManifest, StoredImage
from imagekit.store.retention import RetentionPolicy, plan_retention

START = datetime(2024, 1, 1, 3, 0, tzinfo=UTC)  # a Monday


def _images(name: str, times: list[datetime]) -> list[StoredImage]:
    return [
        StoredImage(f"{name}-{i:03d}", ImageManifest(name, t, "s", ())) for i, t in enumerate(times)
    ]


def _kept(images: list[StoredImage], policy: RetentionPolicy) -> list[str]:
    return sorted(i.id for i in plan_retention(images, policy).keep)


def test_keep_last() -> None:
    images = _images("web", [START + timedelta(hours=h) for h in range(5)])
    assert _kept(images, RetentionPolicy(keep_last=2)) == ["web-003", "web-004"]


def test_keep_daily_takes_newest_of_each_day() -> None:
    # Two images a day for 5 days.
    times = [START + timedelta(days=d, hours=h) for d in range(5) for h in (0, 12)]
    images = _images("web", times)
    # Newest of the last 3 days: day 4, 3, 2 at 12:00 → indexes 9, 7, 5.
    assert _kept(images, RetentionPolicy(keep_daily=3)) == ["web-005", "web-007", "web-009"]


def test_weekly_and_monthly_combine_with_last() -> None:
    times = [START + timedelta(days=d) for d in range(0, 70, 3)]  # every 3 days for 10 weeks
    images = _images("db", times)
    plan = plan_retention(images, RetentionPolicy(keep_last=1, keep_weekly=2, keep_monthly=3))
    kept = {i.id: plan.reasons[i.id] for i in plan.keep}
    newest = images[-1].id
    assert "last" in kept[newest] and "weekly" in kept[newest] and "monthly" in kept[newest]
    # Three months (Jan, Feb, Mar) → the newest image of each.
    monthly = sorted(k for k, r in kept.items() if "monthly" in r)
    assert len(monthly) == 3
    assert len(plan.keep) + len(plan.drop) == len(images)
    assert len(plan.keep) == 4  # newest (last, week, March), previous week, Feb, Jan


def test_lineages_are_independent() -> None:
    images = _images("web", [START, START + timedelta(days=1)]) + _images("db", [START])
    assert _kept(images, RetentionPolicy(keep_last=1)) == ["db-000", "web-001"]


def test_empty_policy_keeps_everything() -> None:
    images = _images("web", [START, START + timedelta(days=1)])
    plan = plan_retention(images, RetentionPolicy())
    assert len(plan.keep) == 2 and not plan.drop
