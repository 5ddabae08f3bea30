"""GCE size choice: only families a pd-balanced, virtio-net boot can use; general purpose first."""

from __future__ import annotations

from pathlib import Path

import pytest
from libcloud.compute.base import NodeSize

from imagekit.errors import UsageError
from imagekit.guest.profile import GuestProfile
from imagekit.providers.base import PreparedImage
from imagekit.providers.gcp import families
from imagekit.providers.sizes import choose_size

# Every family offers a 2 vCPU / 8 GiB shape: the tie that used to be broken by name.
NAMES = ("c4a", "c4", "n4", "n2", "t2a", "e2", "n1")


def sizes() -> list[NodeSize]:
    return [
        NodeSize(
            f"{f}-standard-2", f"{f}-standard-2", 8192, 0, 0, 0.0, None, extra={"guestCpus": 2}
        )  # type: ignore[arg-type]
        for f in NAMES
    ]


def image(**metadata: object) -> PreparedImage:
    return PreparedImage(Path("d"), "gce", "web", "i", 1 << 30, metadata=metadata)


def test_an_x86_image_never_lands_on_hyperdisk_only_or_arm_families():
    usable = {s.id for s in families.usable(sizes(), "x86_64")}
    assert usable == {"n2-standard-2", "e2-standard-2", "n1-standard-2"}
    size, why = choose_size(families.usable(sizes(), "x86_64"), None, "m5.large", families.rank)
    assert size.id == "e2-standard-2", why


def test_an_arm64_image_gets_an_arm_family_that_takes_pd_balanced():
    arm = image(ami={"architecture": "arm64"})
    assert arm.architecture == "arm64"
    assert [s.id for s in families.usable(sizes(), arm.architecture)] == ["t2a-standard-2"]


@pytest.mark.parametrize(
    ("metadata", "arch"),
    [
        ({}, "x86_64"),
        ({"architecture": "aarch64"}, "arm64"),
        ({"instance": {"architecture": "x86_64"}}, "x86_64"),
    ],
)
def test_architecture_from_what_export_recorded(metadata, arch):
    assert image(**metadata).architecture == arch


def test_the_general_purpose_families_rank_first():
    ranked = sorted(sizes(), key=families.rank)
    assert [families.family(s) for s in ranked[:3]] == ["e2", "n2", "n1"]


def test_hyperdisk_families_open_only_to_a_guest_with_nvme_and_gve():
    nvme_only = GuestProfile(drivers=frozenset({"nvme", "virtio_net"}))
    both = GuestProfile(drivers=frozenset({"nvme", "gve"}))
    assert "n4-standard-2" not in {s.id for s in families.usable(sizes(), "x86_64", nvme_only)}
    assert {"n4-standard-2", "c4-standard-2"} <= {
        s.id for s in families.usable(sizes(), "x86_64", both)
    }
    # Still general purpose first: a guest that could use N4 is not sent there on a tie.
    size, _ = choose_size(families.usable(sizes(), "x86_64", both), None, "m5.large", families.rank)
    assert size.id == "e2-standard-2"


def _size(name: str) -> NodeSize:
    return next(s for s in sizes() if s.id == name)


@pytest.mark.parametrize(
    ("size", "drivers", "expected"),
    [
        ("e2-standard-2", None, families.Attachment("pd-balanced", None, None)),
        ("e2-standard-2", {"gve"}, families.Attachment("pd-balanced", "SCSI", "GVNIC")),
        ("n1-standard-2", {"nvme"}, families.Attachment("pd-balanced", "SCSI", "VIRTIO_NET")),
        ("t2a-standard-2", set(), families.Attachment("pd-balanced", "SCSI", "VIRTIO_NET")),
        (
            "c4a-standard-2",
            {"nvme", "gve"},
            families.Attachment("hyperdisk-balanced", "NVME", "GVNIC"),
        ),
    ],
)
def test_disk_type_interface_and_nic_follow_family_and_guest(size, drivers, expected):
    guest = None if drivers is None else GuestProfile(drivers=frozenset(drivers))
    assert families.attachment(_size(size), guest) == expected


@pytest.mark.parametrize("drivers", [None, {"gve"}, {"nvme"}])
def test_a_hyperdisk_family_is_refused_to_a_guest_without_both_drivers(drivers):
    guest = None if drivers is None else GuestProfile(drivers=frozenset(drivers))
    with pytest.raises(UsageError, match="N4 family"):
        families.attachment(_size("n4-standard-2"), guest)
