"""The AWS emulator fixtures (``aws``, ``moto_server``), and clients."""

from __future__ import annotations

from typing import Any

import pytest

from testbed.moto_aws import MotoAWS


@pytest.fixture
def ebs(aws: MotoAWS) -> Any:
    """An EBS client that makes exactly one attempt, so every error reaches the test."""
    return aws.client("ebs")


@pytest.fixture
def ec2(aws: MotoAWS) -> Any:
    return aws.client("ec2")
