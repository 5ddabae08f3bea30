"""The least-privilege IAM policy an export host needs (pure; printed by ``imagekit iam-policy``).

Read-only by construction: describing images and snapshots, and the three EBS direct *read*
actions. ``kms:Decrypt`` is added only for the keys named, because encrypted snapshots need it
and nothing else does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

EC2_READ_ACTIONS = ("ec2:DescribeImages", "ec2:DescribeSnapshots")
EBS_READ_ACTIONS = ("ebs:ListSnapshotBlocks", "ebs:ListChangedBlocks", "ebs:GetSnapshotBlock")


def export_policy(kms_key_arns: Sequence[str] = ()) -> dict[str, Any]:
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
