"""The atheris target of ``make fuzz``: coverage-guided fuzzing of every parser in
``parsers.PARSERS``, for a set time.

The first byte of each input picks the parser, the rest is its input; anything but the
parser's documented refusal is a crash atheris reports (and writes ``crash-*`` to reproduce).
Run ``python tests/reliability/fuzz_targets.py -max_total_time=60 [corpus dir]``; ``make fuzz``
does, with ``FUZZ_SECONDS``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

# Instrumented: the parsers (and what they call) get atheris' coverage feedback.
with atheris.instrument_imports(include=["imagekit", "tests.reliability"]):
    from tests.reliability.parsers import PARSERS, check

NAMES = sorted(PARSERS)


def one_input(data: bytes) -> None:
    if not data:
        return
    check(NAMES[data[0] % len(NAMES)], data[1:])


def main() -> None:
    # A plan of 64 KiB of YAML takes a while; parsers of store objects see far bigger inputs,
    # but the bugs sit in the structure, not the size.
    atheris.Setup([*sys.argv, "-max_len=4096"], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
