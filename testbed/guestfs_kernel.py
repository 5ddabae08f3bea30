"""A kernel for libguestfs's appliance on hosts that have none in /boot (containers, CI).

supermin builds libguestfs's appliance from the host's kernel. Where /boot holds none, this
unpacks Debian's cloud kernel (the one the test disk already downloads), writes its
``modules.dep`` with ``depmod -b``, and prints the folder to pass as
``IMAGEKIT_GUESTFS_KERNEL``. supermin also copies the host's ``/lib/modules`` directory's
attributes, so that directory must exist (it is made, empty, when missing and we are root).

``python testbed/guestfs_kernel.py --cache build/cache/test-disk --out build/guestfs/kernel``
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testbed.testdisk.build import BuildError, fetch_kernel


def host_has_kernel() -> bool:
    return any(Path("/boot").glob("vmlinuz-*"))


def unpack(cache: Path, out: Path) -> Path:
    if (out / ".ready").is_file():
        return out
    kernel = fetch_kernel(cache)
    (vmlinuz,) = sorted((kernel / "boot").glob("vmlinuz-*"))[-1:]
    version = vmlinuz.name[len("vmlinuz-") :]
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=".kernel-", dir=out.parent))
    shutil.copytree(kernel / "boot", partial / "boot")
    shutil.copytree(kernel / "lib", partial / "lib", symlinks=True)
    subprocess.run(["depmod", "-b", str(partial), version], check=True)
    (partial / ".ready").touch()
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if os.geteuid() == 0 and not Path("/lib/modules").exists():
        Path("/lib/modules").mkdir(parents=True)
    try:
        print(unpack(args.cache, args.out))
    except (BuildError, subprocess.CalledProcessError) as exc:
        print(f"guestfs-kernel: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
