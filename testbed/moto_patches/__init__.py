"""Runtime patches that make moto's EC2 and EBS behave like AWS where the exporter depends on it.

The patches replace moto internals by name, so they are written against one moto version and
refuse any other: a silent mismatch would make the bench lie. Import this only inside the
emulator process (``python -m testbed.moto_aws serve``), never in the test process.

Patch (module.function) → the moto 5.2.1 deviation it fixes:

- ebs.start_snapshot_honours_parent_and_block_size → BlockSize 512; ParentSnapshotId ignored
- ebs.put_snapshot_block_validates → no length / checksum / index / state checks
- ebs.complete_snapshot_checks_count → ChangedBlocksCount ignored
- ebs.get_snapshot_block_with_checksum → block token ignored; KeyError → HTTP 500
- ebs.list_snapshot_blocks_paginated_sorted → no pagination; blocks in write order
- ebs.list_changed_blocks_union_and_lineage → second-only blocks missed; no lineage check
- ec2_images.register_image_honours_block_device_mappings → mapping, arch, ENA, boot mode,
  tags ignored
- ec2_volumes.* → volumes hold no data; CreateSnapshot(s) complete at once with no blocks,
  unrelated to the volume's source snapshot; DeleteSnapshot keeps the blocks; DescribeInstances
  without EnaSupport / BootMode
- control.call_action_with_faults_and_counters → (bench only) fault injection, counters
"""

from __future__ import annotations

PINNED_MOTO_VERSION = "5.2.1"


class MotoVersionError(RuntimeError):
    pass


def check_moto_version() -> str:
    import moto

    found = getattr(moto, "__version__", "unknown")
    if found != PINNED_MOTO_VERSION:
        raise MotoVersionError(
            f"the AWS test bench patches moto {PINNED_MOTO_VERSION}, but moto {found} is "
            "installed; "
            f"install moto[server]=={PINNED_MOTO_VERSION} (or port testbed/moto_patches to {found})"
        )
    return str(found)


def apply_all() -> str:
    """Check the moto version and apply every patch; returns the moto version."""
    version = check_moto_version()
    from . import control, ebs, ec2_images, ec2_volumes

    ebs.apply()
    ec2_images.apply()
    ec2_volumes.apply()
    control.apply()
    return version
