"""The reliability suites' bench: the CLI run in-process or as a process, stores on real
backends (a directory, moto's S3 over HTTP, Azurite), and small disks to put in them.

Running the CLI in-process (``Cli``) is what a user sees, without the interpreter start; the
crash suite runs it as a process (``cli_argv``) since it must be killable.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import random
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import imagekit.cli.store_cmds  # noqa: F401  (registers the commands on the root group)
from imagekit.cli.app import main
from imagekit.store.backends.base import Backend
from imagekit.store.backends.credentials import Credentials
from imagekit.store.backends.registry import open_backend
from imagekit.store.format import CHUNK_SIZE

PASSPHRASE = "reliability passphrase"


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def run_cli(*args: object) -> Result:
    """``imagekit ARGS`` in this process: its exit status, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    # The CLI's warnings go to stderr through logging, which pytest has taken over: a handler
    # of our own puts them where a user would read them.
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.WARNING)
    logger = logging.getLogger("imagekit")
    logger.addHandler(handler)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in args])
    finally:
        logger.removeHandler(handler)
    return Result(code, out.getvalue(), err.getvalue())


def run_process(*args: object) -> Result:
    """``imagekit ARGS`` as its own process: logging configured as a user's run has it
    (``--debug`` logs everything to stderr), which pytest's capture does not allow in-process."""
    done = subprocess.run(cli_argv(*args), capture_output=True, text=True, check=False)
    return Result(done.returncode, done.stdout, done.stderr)


def cli_argv(*args: object) -> list[str]:
    """The argv of ``imagekit ARGS`` as its own process (this interpreter, this checkout)."""
    code = "import sys; from imagekit.cli.app import run; sys.argv[0] = 'imagekit'; run()"
    return [sys.executable, "-c", code, *(str(a) for a in args)]


@dataclass
class StoreSite:
    """A store URL on one backend, the environment its CLI needs, and raw access to it."""

    kind: str
    url: str
    env: dict[str, str] = field(default_factory=dict)
    credentials: Credentials | None = None

    def backend(self) -> Backend:
        return open_backend(self.url, self.credentials)

    @contextlib.contextmanager
    def environment(self) -> Iterator[None]:
        saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def s3_site(endpoint: str, bucket: str, key: str, secret: str) -> StoreSite:
    prefix = f"r-{uuid.uuid4().hex[:10]}"
    return StoreSite(
        "s3",
        f"s3://{bucket}/{prefix}?endpoint={endpoint}&region=us-east-1",
        {"IMAGEKIT_S3_ACCESS_KEY_ID": key, "IMAGEKIT_S3_SECRET_ACCESS_KEY": secret},
        Credentials(key, secret),
    )


def azure_site(endpoint: str, container: str, account: str, key: str) -> StoreSite:
    prefix = f"r-{uuid.uuid4().hex[:10]}"
    return StoreSite(
        "azure",
        f"azure://{container}/{prefix}?endpoint={endpoint}",
        {"IMAGEKIT_AZURE_ACCOUNT": account, "IMAGEKIT_AZURE_KEY": key},
        Credentials(account, key),
    )


def make_disk(path: Path, chunks: int, *, seed: int, changed_from: Path | None = None) -> Path:
    """A raw disk of ``chunks`` chunks: random data in most, holes in some. With
    ``changed_from``, that disk with a few chunks rewritten (the next night's export)."""
    rng = random.Random(seed)
    if changed_from is not None:
        data = bytearray(changed_from.read_bytes())
        for i in rng.sample(range(chunks), max(1, chunks // 4)):
            data[i * CHUNK_SIZE : (i + 1) * CHUNK_SIZE] = rng.randbytes(CHUNK_SIZE)
        path.write_bytes(data)
        return path
    with open(path, "wb") as f:
        for i in range(chunks):
            f.write(bytes(CHUNK_SIZE) if i % 5 == 4 else rng.randbytes(CHUNK_SIZE))
    return path


def _data_extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:  # ENXIO: only a hole is left
            return
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, end
        pos = end


def same_bytes(a: Path, b: Path) -> bool:
    """Whether two files hold the same bytes, reading only where either has data (a 1 GiB
    sparse volume of 15 MiB compares in milliseconds, not a second)."""
    size = a.stat().st_size
    if b.stat().st_size != size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        spans = sorted({*_data_extents(fa.fileno(), size), *_data_extents(fb.fileno(), size)})
        for start, end in spans:
            fa.seek(start)
            fb.seek(start)
            while start < end:
                step = min(8 << 20, end - start)
                if fa.read(step) != fb.read(step):
                    return False
                start += step
    return True


def init_store(url: str, *extra: object) -> None:
    result = run_cli("store", "init", url, "--passphrase", *extra)
    assert result.code == 0, result.err


def ingest(url: str, disk: Path, name: str = "web") -> dict[str, Any]:
    result = run_cli("ingest", disk, "--store", url, "--name", name, "--json")
    assert result.code == 0, result.err
    doc: dict[str, Any] = result.json()
    return doc


__all__ = [
    "PASSPHRASE",
    "Result",
    "StoreSite",
    "azure_site",
    "cli_argv",
    "ingest",
    "init_store",
    "make_disk",
    "run_cli",
    "run_process",
    "s3_site",
    "same_bytes",
]
