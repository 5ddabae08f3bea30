"""The reliability suites' shared fixtures and the tally behind ``docs/reliability.md``.

Every test here is a normal pytest test. What makes a figure of it: its suite is the module
(``test_tamper.py`` → ``tamper``), its operation the test function (``test_restore`` →
``restore``), and each pytest item is one case, except where a test counts more (a hypothesis
test calls ``tally.tried()`` once per example it runs). When ``IMAGEKIT_RELIABILITY_RESULTS``
names a file, one JSON line per item is appended to it; ``scripts/reliability.py`` reads them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.bench import StoreSite, azure_site, s3_site
from tests.reliability.sizes import SOAK

RESULTS_ENV = "IMAGEKIT_RELIABILITY_RESULTS"


class Tally:
    """How many cases one test item tried (1 unless it says otherwise)."""

    def __init__(self) -> None:
        self.count = 0
        self.phase: str | None = None
        self.operation: str | None = None
        self.select: str | None = None

    def tried(self, n: int = 1) -> None:
        self.count += n

    def group(self, operation: str, select: str) -> None:
        """Count this case under ``operation`` rather than the test function's name (one
        parametrised test covering many operations); ``select`` is the ``-k`` expression
        that reruns that operation's cases."""
        self.operation, self.select = operation, select

    def at(self, phase: str) -> None:
        """Where the case struck (a crash: before any write, between packs, after the
        manifest...); the page counts cases per phase."""
        self.phase = phase


@pytest.fixture
def tally(request: pytest.FixtureRequest) -> Tally:
    counter = Tally()
    request.node.stash[_TALLY] = counter
    return counter


_TALLY = pytest.StashKey[Tally]()


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test its own state directory (trust and rollback records start empty)."""
    state = tmp_path / "state"
    monkeypatch.setenv("IMAGEKIT_STATE_DIR", str(state))
    return state


def _suite_and_operation(item: pytest.Item) -> tuple[str, str]:
    module = Path(str(item.fspath)).stem.removeprefix("test_")
    function = getattr(item, "originalname", item.name).removeprefix("test_")
    return module, function


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    report = yield
    target = os.environ.get(RESULTS_ENV)
    # One line per item: from the call phase, or from setup when setup failed or skipped.
    done = report.when == "call" or (report.when == "setup" and not report.passed)
    if target and done and "reliability" in str(item.fspath):
        suite, operation = _suite_and_operation(item)
        counter = item.stash.get(_TALLY, None)
        if counter is not None and counter.operation:
            operation = counter.operation
        tried = max(1, counter.count) if counter is not None else 1
        failed = 1 if report.failed else 0
        line = {
            "suite": suite,
            "operation": operation,
            "nodeid": item.nodeid,
            "outcome": report.outcome,
            "tried": 0 if report.skipped else tried,
            # A failing hypothesis test stops at its first failing example: the ones before
            # it survived.
            "survived": 0 if report.skipped else tried - failed,
            "failed": failed,
            "seconds": round(report.duration, 3),
            "phase": counter.phase if counter is not None else None,
            "select": counter.select if counter is not None else None,
            "soak": SOAK,
        }
        with open(target, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
    return report


# -- stores on real backends ------------------------------------------------------------------

# The session servers of the backend conformance suite: moto's S3 and Azurite on loopback,
# started once, stopped by PID.
from tests.store.backends.conftest import BUCKET, azurite, moto_s3  # noqa: E402, F401

SITES = [
    "directory",
    pytest.param("s3", marks=pytest.mark.slow),
    pytest.param("azure", marks=pytest.mark.slow),
]


@pytest.fixture(scope="module", params=SITES)
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> StoreSite:
    """A fresh store location on one backend (a module's worth of tests share it)."""
    from testbed.azurite import ACCOUNT, ACCOUNT_KEY
    from testbed.moto_s3 import ACCESS_KEY_ID, SECRET_ACCESS_KEY

    kind: str = request.param
    if kind == "s3":
        server = request.getfixturevalue("moto_s3")
        return s3_site(server.endpoint, BUCKET, ACCESS_KEY_ID, SECRET_ACCESS_KEY)
    if kind == "azure":
        server = request.getfixturevalue("azurite")
        return azure_site(server.endpoint, BUCKET, ACCOUNT, ACCOUNT_KEY)
    return StoreSite("directory", str(tmp_path_factory.mktemp("store") / "repo"))
