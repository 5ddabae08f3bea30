"""Size mapping: AWS instance types → the nearest provider size (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest
from libcloud.compute.base import NodeSize

from imagekit.errors import UsageError
from imagekit.providers.local.driver import QemuNodeDriver
from imagekit.providers.sizes import Shape, aws_shape, choose_size, nearest_size


@pytest.mark.parametrize(
    ("instance_type", "vcpus", "gib"),
    [
        ("t3.nano", 2, 0.5),
        ("t3.micro", 2, 1),
        ("t3a.xlarge", 4, 16),
        ("m5.large", 2, 8),
        ("m6i.2xlarge", 8, 32),
        ("c5.xlarge", 4, 8),
        ("c6i.4xlarge", 16, 32),
        ("r5.large", 2, 16),
        ("R6I.8XLARGE", 32, 256),
    ],
)
def test_aws_shapes(instance_type: str, vcpus: int, gib: float) -> None:
    assert aws_shape(instance_type) == Shape(vcpus, int(gib * 1024))


@pytest.mark.parametrize("instance_type", ["p4d.24xlarge", "m5", "m5.huge", "x1.large", ""])
def test_unknown_types(instance_type: str) -> None:
    assert aws_shape(instance_type) is None


def _sizes(*shapes: tuple[str, int, int], key: str = "vcpus") -> list[NodeSize]:
    return [NodeSize(i, i, ram, 0, None, 0, None, extra={key: c}) for i, c, ram in shapes]


CLOUD = _sizes(("s1", 1, 2048), ("s2", 2, 4096), ("m2", 2, 8192), ("c8", 8, 16384))


def test_nearest_is_the_smallest_covering_size() -> None:
    assert nearest_size(Shape(2, 1024), CLOUD) == (CLOUD[1], True)
    assert nearest_size(Shape(2, 8192), CLOUD) == (CLOUD[2], True)
    assert nearest_size(Shape(4, 4096), CLOUD) == (CLOUD[3], True)  # needs the vCPUs
    assert nearest_size(Shape(16, 1024), CLOUD) == (CLOUD[3], False)  # none covers: largest


def test_vcpus_are_read_from_each_drivers_key() -> None:
    gce = _sizes(("e2-small", 2, 2048), ("e2-standard-4", 4, 16384), key="guestCpus")
    azure = _sizes(("Standard_B1s", 1, 1024), ("Standard_D2s_v5", 2, 8192), key="numberOfCores")
    assert nearest_size(Shape(4, 1024), gce)[0].id == "e2-standard-4"
    assert nearest_size(Shape(2, 1024), azure)[0].id == "Standard_D2s_v5"


def test_choose_size_precedence() -> None:
    assert choose_size(CLOUD, "m2", "t3.nano")[0].id == "m2"  # a size of the provider
    assert choose_size(CLOUD, "m5.large", None)[0].id == "m2"  # an AWS type asked for
    size, why = choose_size(CLOUD, None, "c5.xlarge")  # the image's type
    assert size.id == "c8" and "nearest to c5.xlarge" in why
    assert choose_size(CLOUD, None, None)[0].id == "s1"
    _, why = choose_size(CLOUD, None, "r5.4xlarge")
    assert "SMALLER" in why
    with pytest.raises(UsageError, match="neither a size"):
        choose_size(CLOUD, "huge", None)


def test_local_sizes_map_common_types() -> None:
    sizes = QemuNodeDriver(root=Path("/nonexistent")).list_sizes()
    assert choose_size(sizes, None, None)[0].id == "local-256m"
    assert choose_size(sizes, "t3.micro", None)[0].id == "local-2g"
    assert choose_size(sizes, "m5.large", None)[0].id == "local-8g"
