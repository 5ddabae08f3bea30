"""Faults on the wire: the fault-injecting proxy (``proxy.py``) between the store and moto's
S3 or Azurite.

Each case runs ``store init``, ``ingest`` and ``restore`` through the proxy with a seeded
share of requests broken one way (error statuses, each throttling answer, latency, resets
mid-body, truncated bodies, a slow drip). Every step either completes, or stops with one line
and exit 1, and then completes when run again (faults off: the error was resumable). Every
restore that completes wrote the disk's own bytes, and ``store verify --read-data`` of what
was stored is clean: nothing wrong was ever stored or restored.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.bench import (
    PASSPHRASE,
    Result,
    StoreSite,
    azure_site,
    make_disk,
    run_cli,
    s3_site,
)
from tests.reliability.conftest import Tally
from tests.reliability.proxy import FAULTS, FaultProxy, Schedule
from tests.reliability.sizes import SOAK

WIRE_SEEDS = list(range(10 if SOAK else 1))
#: Share of requests broken: enough that each operation meets several faults, few enough that
#: the retry policy (retries=4 below) usually rides them out.
RATE = 0.3


@pytest.fixture(params=["s3", "azure"])
def upstream(request: pytest.FixtureRequest) -> tuple[str, int]:
    server = request.getfixturevalue("moto_s3" if request.param == "s3" else "azurite")
    return request.param, server.port


def _site(kind: str, endpoint: str) -> StoreSite:
    from testbed.azurite import ACCOUNT, ACCOUNT_KEY
    from testbed.moto_s3 import ACCESS_KEY_ID, SECRET_ACCESS_KEY
    from tests.store.backends.conftest import BUCKET

    if kind == "s3":
        return s3_site(endpoint, BUCKET, ACCESS_KEY_ID, SECRET_ACCESS_KEY)
    return azure_site(endpoint, BUCKET, ACCOUNT, ACCOUNT_KEY)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("IMAGEKIT_PASSPHRASE", PASSPHRASE)
    yield


def _step(schedule: Schedule, *args: object) -> tuple[Result, bool]:
    """Run a step under faults; if it fails, check the failure and run it again without.
    The result that counts, and whether the first try failed."""
    schedule.enabled = True
    first = run_cli(*args)
    if first.code == 0:
        return first, False
    lines = [ln for ln in first.err.splitlines() if ln.startswith("imagekit: error: ")]
    assert first.code == 1 and len(lines) == 1 and "Traceback" not in first.err, first.err
    schedule.enabled = False
    again = run_cli(*args)
    assert again.code == 0, f"not resumable: {first.err}\nthen: {again.err}"
    return again, True


@pytest.mark.slow
@pytest.mark.parametrize("seed", WIRE_SEEDS)
@pytest.mark.parametrize(
    ("fault", "outage"),
    [*((f, False) for f in FAULTS), ("503", True), ("reset", True), ("truncate", True)],
    ids=[*FAULTS, "outage-503", "outage-reset", "outage-truncate"],
)
@pytest.mark.timeout(300)
def test_store_round_trip(
    upstream: tuple[str, int],
    fault: str,
    outage: bool,
    seed: int,
    env: None,
    tmp_path: Path,
    tally: Tally,
) -> None:
    kind, port = upstream
    name = f"outage-{fault}" if outage else fault
    tally.group(name, name if outage else f"{name} and not outage")
    schedule = Schedule(seed, [fault], RATE)
    if outage:
        # From a seeded request on, every request fails: the retries (4) run out and the step
        # must stop with its one line, then complete when run again.
        start = 3 + random.Random(seed).randrange(12)
        schedule = Schedule(seed, [fault], 0.0, range(start, start + 40))
    disk = make_disk(tmp_path / "disk.raw", 10, seed=seed)
    with FaultProxy(port, schedule) as proxy:
        site = _site(kind, proxy.endpoint)
        url = site.url + "&retries=4"
        with site.environment():
            _, init_failed = _step(schedule, "store", "init", url, "--passphrase")
            _, ingest_failed = _step(schedule, "ingest", disk, "--store", url, "--name", "w")
            out = tmp_path / "restored.raw"
            restore_failed = False
            for attempt in range(2):
                schedule.enabled = attempt == 0
                result = run_cli("restore", "w", "--store", url, "-o", out, "--force")
                if result.code == 0:
                    assert out.read_bytes() == disk.read_bytes(), "restored wrong bytes"
                    break
                assert result.code == 1 and "Traceback" not in result.err, result.err
                assert not out.exists(), "a failed restore left its output"
                restore_failed = True
            assert out.read_bytes() == disk.read_bytes()
            schedule.enabled = False
            verified = run_cli("store", "verify", url, "--read-data", "--json")
            assert verified.code == 0, verified.out + verified.err
    injected = len(schedule.injected)
    assert injected, "no fault was injected: the case proved nothing"
    stopped = init_failed or ingest_failed or restore_failed
    if outage:
        assert stopped, "an outage longer than the retries did not stop any step"
    tally.at("stopped, then resumed" if stopped else "rode out every fault")
