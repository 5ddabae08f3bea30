"""pytest fixtures for the AWS emulator, shared by every test folder that needs AWS.

Register once (e.g. ``pytest_plugins = ["testbed.pytest_plugin"]`` in the top conftest). One
patched moto server per test session (moto does not give memory back on reset); ``aws`` hands
each test a clean slate: no resources, faults, counters or shortened token lifetime.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testbed.moto_aws import MotoAWS


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoAWS]:
    """The session's patched moto server (state shared between tests; prefer ``aws``)."""
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with MotoAWS(log_path=log) as server:
        yield server


@pytest.fixture
def aws(moto_server: MotoAWS) -> Iterator[MotoAWS]:
    """The emulator, reset before the test; faults are cleared after it too."""
    moto_server.reset()
    yield moto_server
    moto_server.clear_faults()
