"""What the cloud providers share: secrets (environment first, then the credentials file; never a
value in an error message), names, the poll of long operations, how checks reach a node."""

from __future__ import annotations

from pathlib import Path

import pytest
from libcloud.compute.base import Node
from libcloud.compute.types import NodeState

from imagekit.errors import ProviderError, UsageError
from imagekit.providers.base import Endpoint
from imagekit.providers.cloud.common import (
    NAME_LIMIT,
    endpoints,
    node_target,
    poll,
    public_ip,
    read_secret,
    resource_name,
)
from imagekit.providers.runs import RunStore
from imagekit.providers.userdata import generate_keys


def test_environment_wins_over_the_credentials_file(tmp_path: Path) -> None:
    creds = tmp_path / "creds.ini"
    creds.write_text("[azure]\nAZURE_CLIENT_SECRET = from-file\n")
    env = {"IMAGEKIT_CREDENTIALS_FILE": str(creds), "AZURE_CLIENT_SECRET": "from-env"}
    assert read_secret("azure", "AZURE_CLIENT_SECRET", env) == "from-env"
    del env["AZURE_CLIENT_SECRET"]
    assert read_secret("azure", "AZURE_CLIENT_SECRET", env) == "from-file"  # INI keys any case


def test_toml_file_section_is_named_after_the_provider(tmp_path: Path) -> None:
    creds = tmp_path / "creds.toml"
    creds.write_text('[gcp]\nGOOGLE_APPLICATION_CREDENTIALS = "/keys/sa.json"\n')
    env = {"IMAGEKIT_CREDENTIALS_FILE": str(creds)}
    assert read_secret("gcp", "GOOGLE_APPLICATION_CREDENTIALS", env) == "/keys/sa.json"
    assert read_secret("azure", "AZURE_CLIENT_SECRET", env, required=False) is None


def test_missing_secret_names_the_variable_and_the_file_section() -> None:
    with pytest.raises(UsageError, match="OS_PASSWORD is not set") as info:
        read_secret("openstack", "OS_PASSWORD", {})
    assert info.value.hint and "[openstack]" in info.value.hint


def test_resource_names_are_clean_and_bounded() -> None:
    assert resource_name("gcp-20260101-000000-ab12", "image") == "gcp-20260101-000000-ab12-image"
    assert resource_name("Azure_Run", "X Y") == "azure-run-x-y"
    long = resource_name("openstack-" + "a" * 80, "sg")
    assert len(long) <= NAME_LIMIT and not long.endswith("-")


class Clock:
    """``time.monotonic`` and ``sleep`` for ``poll``: sleeping moves the clock, nothing waits."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr("imagekit.providers.cloud.common.time.monotonic", fake.monotonic)
    return fake


def test_poll_looks_until_done_pausing_between_looks(clock: Clock) -> None:
    states = iter(["queued", "saving", "active"])
    last = poll(
        lambda: next(states),
        done=lambda state: state == "active",
        late=lambda state: ProviderError(f"late in {state}"),
        deadline=clock.now + 60,
        interval=5.0,
        sleep=clock.sleep,
    )
    assert last == "active"
    assert clock.slept == [5.0, 5.0]  # between looks only: none after the last


def test_poll_raises_the_clouds_own_error_at_once(clock: Clock) -> None:
    rejected = ProviderError("image rejected", hint="fix the disk")
    with pytest.raises(ProviderError) as info:
        poll(
            lambda: "killed",
            done=lambda state: state == "active",
            failed=lambda state: rejected if state == "killed" else None,
            late=lambda state: ProviderError("late"),
            deadline=clock.now + 60,
            interval=5.0,
            sleep=clock.sleep,
        )
    assert info.value is rejected and clock.slept == []


def test_poll_gives_up_before_sleeping_past_the_deadline(clock: Clock) -> None:
    with pytest.raises(ProviderError, match="not done in time \\(status saving\\)"):
        poll(
            lambda: "saving",
            done=lambda state: state == "active",
            late=lambda state: ProviderError(f"not done in time (status {state})"),
            deadline=clock.now + 12,
            interval=5.0,
            sleep=clock.sleep,
        )
    # Looks at 0, 5 and 10 s; a fourth, at 15 s, would come after the deadline.
    assert clock.slept == [5.0, 5.0]


def test_cloud_node_is_reached_at_its_address_on_the_guest_ports(tmp_path: Path) -> None:
    node = Node("n1", "web-1", NodeState.RUNNING, ["203.0.113.7"], [], driver=None)
    assert public_ip(node) == "203.0.113.7"
    assert endpoints("203.0.113.7", (22, 80)) == (
        Endpoint(22, "203.0.113.7", 22),
        Endpoint(80, "203.0.113.7", 80),
    )
    assert endpoints("", (22, 80)) == ()  # no address yet: nothing to record
    run = RunStore(tmp_path).create("gcp", settings={})
    target = node_target(node, "203.0.113.7", "imagekit", run)
    assert target.endpoint(8080) == ("203.0.113.7", 8080)
    assert target.ssh is None  # the run made no key pair
    generate_keys(run.ssh_dir, "imagekit-test")
    ssh = node_target(node, "203.0.113.7", "imagekit", run).ssh
    assert ssh is not None and ssh.user == "imagekit" and ssh.host_key is None
