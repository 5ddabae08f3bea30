"""The provider contract, run against every provider in ``conftest.CASES``.

The promises tested are those in ``providers/base.py``: resources recorded as they are created,
teardown from the record alone (a fresh provider instance, as in another process), idempotent
deletes, and a failed boot — in any stage — leaving nothing behind.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from imagekit.errors import ExitCode, HealthError, ProviderError, UsageError
from imagekit.providers.boot import STAGES, BootOptions, boot, teardown
from imagekit.providers.runs import RunStore
from imagekit.providers.sources import FileImageSource
from tests.providers.conftest import ProviderCase


def _boot(case: ProviderCase, state: Path, disk: Path, **options: object):  # type: ignore[no-untyped-def]
    provider = case.provider(state)
    opts = BootOptions(checks=case.passing_checks, timeout=10, adapt=False, **options)  # type: ignore[arg-type]
    return provider, boot(provider, FileImageSource(disk), opts, RunStore(state))


def test_boot_records_everything_and_teardown_from_a_fresh_instance_removes_it(
    case: ProviderCase, tmp_path: Path, small_disk: Path
) -> None:
    provider, record = _boot(case, tmp_path, small_disk, count=2)
    assert record.status == "healthy"
    assert set(record.stages) == set(STAGES) - {"adapt"}  # booted with adapt=False
    assert all(seconds >= 0 for seconds in record.stages.values())
    assert [n.name for n in record.nodes] == [f"{record.run_id}-1", f"{record.run_id}-2"]
    assert {r.kind for r in record.resources} >= {"image", "node"}
    assert all(provider.exists(r) for r in record.resources)
    assert len(record.health) == 2 * len(case.passing_checks)
    runs = RunStore(tmp_path)
    assert [r.run_id for r in runs.list()] == [record.run_id]
    # The record on disk is what another process sees.
    assert runs.open(record.run_id).record == record

    report = teardown(runs, record.run_id)  # builds its own provider from the registry

    assert {r.key for r in report.deleted} == {r.key for r in record.resources}
    assert not any(provider.exists(r) for r in record.resources)
    assert runs.list() == []
    assert not (tmp_path / "runs" / record.run_id).exists()


def test_teardown_of_an_unknown_or_removed_run_is_a_usage_error(
    case: ProviderCase, tmp_path: Path, small_disk: Path
) -> None:
    _, record = _boot(case, tmp_path, small_disk)
    runs = RunStore(tmp_path)
    teardown(runs, record.run_id)
    for run_id in (record.run_id, "never-was"):
        with pytest.raises(UsageError, match="already torn down") as info:
            teardown(runs, run_id)
        assert info.value.exit_code == ExitCode.USAGE


def test_delete_is_idempotent(case: ProviderCase, tmp_path: Path, small_disk: Path) -> None:
    provider, record = _boot(case, tmp_path, small_disk)
    for resource in reversed(record.resources):
        assert provider.delete(resource) is True
        assert provider.delete(resource) is False
    # Teardown of a run whose resources vanished reports them as already gone.
    report = teardown(RunStore(tmp_path), record.run_id)
    assert report.deleted == () and len(report.already_gone) == len(record.resources)


@pytest.mark.parametrize("stage", ["upload", "register_image", "create_nodes"])
def test_a_failure_in_any_stage_tears_down_what_exists(
    case: ProviderCase, tmp_path: Path, small_disk: Path, stage: str
) -> None:
    if stage not in case.failing_settings:
        pytest.skip(f"{case.name} cannot be made to fail in {stage}")
    provider = case.provider(tmp_path, **case.failing_settings[stage])
    created = []
    runs = RunStore(tmp_path)
    with pytest.raises(ProviderError, match="torn down"):
        boot(
            provider,
            FileImageSource(small_disk),
            BootOptions(count=2, checks=case.passing_checks, timeout=10, adapt=False),
            runs,
            on_run=created.append,
        )
    (run,) = created
    assert not run.dir.exists()
    assert runs.list() == []
    assert not any(provider.exists(r) for r in run.record.resources)


def test_never_healthy_fails_by_its_deadline_with_the_console_tail(
    case: ProviderCase, tmp_path: Path, small_disk: Path
) -> None:
    provider = case.provider(tmp_path)
    created = []
    started = time.monotonic()
    with pytest.raises(HealthError) as info:
        boot(
            provider,
            FileImageSource(small_disk),
            BootOptions(checks=case.failing_checks, timeout=1.0, adapt=False),
            RunStore(tmp_path),
            on_run=created.append,
        )
    assert time.monotonic() - started < 1.0 + 5  # the deadline, plus teardown
    message = str(info.value)
    assert str(case.failing_checks[0]) in message and "within 1 s" in message
    assert "torn down" in message
    (run,) = created
    assert not run.dir.exists()
    assert not any(provider.exists(r) for r in run.record.resources)


def test_a_failed_teardown_keeps_what_remains_for_a_later_one(
    case: ProviderCase, tmp_path: Path, small_disk: Path
) -> None:
    if "delete" not in case.failing_settings:
        pytest.skip(f"{case.name} cannot be made to fail deleting")
    provider, record = _boot(case, tmp_path, small_disk)
    runs = RunStore(tmp_path)

    def failing(name: str, **kwargs: object):  # type: ignore[no-untyped-def]
        return case.provider(tmp_path, **case.failing_settings["delete"])

    with pytest.raises(ProviderError, match=r"teardown .* left"):
        teardown(runs, record.run_id, factory=failing)
    kept = runs.open(record.run_id).record
    assert kept.status == "tearing-down" and kept.resources == record.resources
    teardown(runs, record.run_id)
    assert not any(provider.exists(r) for r in record.resources)
