"""Azurite (the Azure Blob emulator) on a free loopback port, for tests and the bench.

Always started with ``--disableTelemetry`` (without it Azurite reports usage off the machine).
``--skipApiVersionCheck`` lets libcloud's older x-ms-version through; ``--loose`` ignores the
headers Azurite does not implement instead of failing the request.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from testbed.process import ServerProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
AZURITE_BLOB = ROOT / "build" / "npm" / "node_modules" / ".bin" / "azurite-blob"

#: Azurite's fixed development account and its well-known key (published in Azurite's README;
#: it opens nothing but the emulator).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


class Azurite(ServerProcess):
    """``with Azurite(workdir) as azurite:`` → blob endpoint at ``azurite.endpoint``."""

    def __init__(self, workdir: Path | None = None, port: int | None = None):
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="azurite-"))
        port = port or free_port()
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        argv = [
            str(AZURITE_BLOB),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--location",
            str(data),
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--loose",
            "--silent",
        ]
        super().__init__(argv, port, self.workdir / "azurite.log")

    @staticmethod
    def available() -> bool:
        return AZURITE_BLOB.exists()
