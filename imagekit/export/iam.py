"""The least-privilege IAM policy an export host needs (pure; printed by ``imagekit iam-policy``).

Read-only by construction for AMIs: describing images and snapshots, and the three EBS direct
*read* actions. ``kms:Decrypt`` is added only for the keys named, because encrypted snapshots need
it and nothing else does. Exporting running instances (``instances=True``) adds exactly what the
snapshot lifecycle needs: describing instances and volumes, ``CreateSnapshots`` with the tags
only on snapshots that very call creates, and ``DeleteSnapshot`` only on snapshots tagged
``imagekit:managed=true`` — a condition AWS checks, on top of imagekit's own check of the tags.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

EC2_READ_ACTIONS = ("ec2:DescribeImages", "ec2:DescribeSnapshots")
EBS_READ_ACTIONS = ("ebs:ListSnapshotBlocks", "ebs:ListChangedBlocks", "ebs:GetSnapshotBlock")
INSTANCE_DESCRIBE_ACTIONS = (
    "ec2:DescribeInstances",
    "ec2:DescribeVolumes",
    "ec2:DescribeInstanceTypes",
)
#: The tag every snapshot imagekit takes carries (``export.lifecycle.TAG_MANAGED``).
MANAGED_TAG = "imagekit:managed"


def export_policy(kms_key_arns: Sequence[str] = (), *, instances: bool = False) -> dict[str, Any]:
    statements: list[dict[str, Any]] = [
        {
            "Sid": "DescribeAmis",
            "Effect": "Allow",
            # Describe* calls do not support resource-level permissions: "*" is the only form.
            "Action": list(EC2_READ_ACTIONS),
            "Resource": "*",
        },
        {
            "Sid": "ReadSnapshotBlocks",
            "Effect": "Allow",
            "Action": list(EBS_READ_ACTIONS),
            "Resource": "arn:aws:ec2:*::snapshot/*",
        },
    ]
    if instances:
        statements += _instance_statements()
    if kms_key_arns:
        statements.append(
            {
                "Sid": "DecryptEncryptedSnapshots",
                "Effect": "Allow",
                "Action": ["kms:Decrypt"],
                "Resource": list(kms_key_arns),
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def _instance_statements() -> list[dict[str, Any]]:
    return [
        {
            "Sid": "DescribeInstances",
            "Effect": "Allow",
            "Action": list(INSTANCE_DESCRIBE_ACTIONS),
            "Resource": "*",
        },
        {
            # CreateSnapshots is authorized on the instance, its volumes and the new snapshots.
            "Sid": "SnapshotInstances",
            "Effect": "Allow",
            "Action": ["ec2:CreateSnapshots"],
            "Resource": [
                "arn:aws:ec2:*:*:instance/*",
                "arn:aws:ec2:*:*:volume/*",
                "arn:aws:ec2:*::snapshot/*",
            ],
        },
        {
            "Sid": "TagNewSnapshotsOnly",
            "Effect": "Allow",
            "Action": ["ec2:CreateTags"],
            "Resource": "arn:aws:ec2:*::snapshot/*",
            "Condition": {"StringEquals": {"ec2:CreateAction": "CreateSnapshots"}},
        },
        {
            "Sid": "DeleteOwnSnapshotsOnly",
            "Effect": "Allow",
            "Action": ["ec2:DeleteSnapshot"],
            "Resource": "arn:aws:ec2:*::snapshot/*",
            "Condition": {"StringEquals": {f"aws:ResourceTag/{MANAGED_TAG}": "true"}},
        },
    ]
