"""boto3 at the edge: clients from the standard chain, and AWS errors translated once.

Credentials, region and endpoints come from boto3's own chain (``AWS_PROFILE``, ``AWS_REGION``,
``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_EC2``, ``AWS_ENDPOINT_URL_EBS``, instance roles …);
imagekit adds nothing custom. Throttling and 5xx answers are retried by botocore's *adaptive*
retry mode: exponential backoff with jitter plus a client-side rate limiter that slows the
request rate after throttling — the "back off and lower concurrency" that the EBS quotas ask for.
"""

from __future__ import annotations

import re
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from imagekit.errors import ExportError, ImagekitError, InputError

#: Botocore retries per request; adaptive mode spaces them out (max backoff 20 s each).
MAX_ATTEMPTS = 10

#: The IAM action behind each API call imagekit makes, to name it when access is denied.
IAM_ACTIONS = {
    "DescribeImages": "ec2:DescribeImages",
    "DescribeSnapshots": "ec2:DescribeSnapshots",
    "ListSnapshotBlocks": "ebs:ListSnapshotBlocks",
    "ListChangedBlocks": "ebs:ListChangedBlocks",
    "GetSnapshotBlock": "ebs:GetSnapshotBlock",
    "DescribeInstances": "ec2:DescribeInstances",
    "CreateSnapshots": "ec2:CreateSnapshots",
    "DeleteSnapshot": "ec2:DeleteSnapshot",
}

#: Error codes AWS uses for throttling across EC2 and the EBS direct APIs.
THROTTLING_CODES = frozenset(
    {
        "ThrottlingException",
        "RequestThrottledException",
        "RequestLimitExceeded",
        "SlowDown",
        "Throttling",
        "TooManyRequestsException",
    }
)

#: urllib3 prefixes its connection errors with the connection object's repr: noise in a message.
_OBJECT_REPR = re.compile(r"^<[^>]*>:\s*")


def session(region: str | None = None) -> boto3.session.Session:
    return boto3.session.Session(region_name=region)


def client(sess: boto3.session.Session, service: str, *, max_pool: int = 10) -> Any:
    """A client with adaptive retries and a connection pool sized for our concurrency."""
    config = botocore.config.Config(
        retries={"mode": "adaptive", "max_attempts": MAX_ATTEMPTS},
        max_pool_connections=max_pool,
        connect_timeout=10,
        read_timeout=60,
    )
    return sess.client(service, config=config)  # type: ignore[call-overload]


def region_of(sess: boto3.session.Session) -> str:
    region = sess.region_name
    if not region:
        raise InputError("no AWS region configured", hint="pass --region or set AWS_REGION")
    return str(region)


def error_code(exc: BaseException) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def translate(exc: Exception, operation: str, subject: str) -> ImagekitError:
    """One clear ``ExportError`` for an AWS failure of ``operation`` on ``subject``."""
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return InputError(
            "no AWS credentials found",
            hint="set AWS_PROFILE or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        )
    if isinstance(exc, botocore.exceptions.SSLError):
        return ExportError(
            f"TLS to AWS failed for {operation}: {exc}",
            hint="check the endpoint URL and the CA bundle (AWS_CA_BUNDLE)",
        )
    if isinstance(exc, botocore.exceptions.EndpointConnectionError):
        # botocore's message names only the URL; the cause says whether the endpoint refused,
        # timed out, or a proxy turned the request away (a 407 from CONNECT, say).
        cause = _OBJECT_REPR.sub("", str(exc.kwargs.get("error") or "")).strip()
        return ExportError(
            f"cannot reach AWS for {operation}: {exc}" + (f" ({cause})" if cause else ""),
            hint="check the network path to the endpoint, and HTTPS_PROXY / NO_PROXY if a proxy "
            "is in the way",
            transient=True,
        )
    if not isinstance(exc, botocore.exceptions.ClientError):
        return ExportError(f"{operation} on {subject} failed: {exc}", transient=True)
    code = error_code(exc)
    message = str(exc.response.get("Error", {}).get("Message", "")) or code
    if code in ("AccessDeniedException", "AccessDenied", "UnauthorizedOperation"):
        action = IAM_ACTIONS.get(operation, operation)
        if "kms" in message.lower():
            return ExportError(
                f"{subject}: access denied by KMS ({message})",
                hint="grant kms:Decrypt on the snapshot's key to the exporting identity",
            )
        return ExportError(
            f"{subject}: access denied for {action}",
            hint=f"allow {action} (see `imagekit iam-policy`)",
        )
    if code in (
        "InvalidAMIID.NotFound",
        "InvalidAMIID.Malformed",
        "InvalidSnapshot.NotFound",
        "InvalidInstanceID.NotFound",
        "InvalidInstanceID.Malformed",
        "InvalidVolume.NotFound",
        "ResourceNotFoundException",
    ):
        return InputError(f"{subject}: not found ({message})", hint="check the id and the region")
    transient = (
        code in THROTTLING_CODES
        or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500
    )
    return ExportError(f"{operation} on {subject} failed: {code}: {message}", transient=transient)
