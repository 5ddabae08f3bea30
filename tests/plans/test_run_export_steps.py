"""How run-export contains a failing step (no AWS, no store: the step guard alone)."""

from __future__ import annotations

import logging

import pytest

from imagekit.errors import StoreError
from imagekit.plans.run_export import RunReport, _Step


def test_an_unexpected_exception_is_that_steps_failure_and_the_run_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    report = RunReport("shop", 0.0)
    step = _Step(report)
    done = []
    with caplog.at_level(logging.ERROR):
        for role in ("web", "db"):
            with step("export", role) as guard:
                if role == "web":
                    raise KeyError("3f2a")  # what a lost base chunk once raised
                done.append(role)
    assert done == ["db"] and guard.failed is False
    (failure,) = report.failures
    assert (failure.step, failure.subject) == ("export", "web")
    assert "unexpected KeyError" in failure.message and "3f2a" in failure.message
    assert "Traceback" in caplog.text  # the traceback is kept for whoever fixes it


def test_expected_errors_are_recorded_and_interrupts_propagate() -> None:
    report = RunReport("shop", 0.0)
    step = _Step(report)
    with step("copy", "far"):
        raise StoreError("far: unreachable")
    assert [f.message for f in report.failures] == ["far: unreachable"]
    with pytest.raises(KeyboardInterrupt), step("copy", "far"):
        raise KeyboardInterrupt
