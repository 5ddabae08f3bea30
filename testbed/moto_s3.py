"""A stock ``moto_server`` on a free loopback port, standing in for S3 (not EC2/EBS).

For an S3-compatible store the backends only need the endpoint, any access key pair, and a
bucket; ``create_bucket`` makes one with a plain signed request through boto3.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from testbed.process import ServerProcess, free_port

#: moto accepts any key pair; these are the conventional placeholders.
ACCESS_KEY_ID = "testing-key-id"
SECRET_ACCESS_KEY = "testing-secret-access-key"
REGION = "us-east-1"

MOTO_SERVER = Path(sys.executable).parent / "moto_server"


class MotoS3(ServerProcess):
    """``with MotoS3() as s3:`` → S3 endpoint at ``s3.endpoint``."""

    def __init__(self, workdir: Path | None = None, port: int | None = None):
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="moto-s3-"))
        port = port or free_port()
        argv = [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)]
        super().__init__(argv, port, self.workdir / "moto-s3.log")

    def create_bucket(self, name: str) -> None:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
        )
        client.create_bucket(Bucket=name)
