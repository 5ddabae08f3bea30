"""How big the suites run: CI-sized by default, ``IMAGEKIT_SOAK=1`` for the long version.

The numbers are read at collection time, so seeds become pytest parameters (one item, one
case, one line of ``docs/reliability.md`` to reproduce it by).
"""

from __future__ import annotations

import os

SOAK = os.environ.get("IMAGEKIT_SOAK", "") not in ("", "0")

#: kill -9 moments per operation: 20 in `make test` (issue 18), 200 under `make soak`.
CRASH_SEEDS = 200 if SOAK else 20
#: hypothesis examples per parser property.
FUZZ_EXAMPLES = 5000 if SOAK else 300


def seeds(count: int) -> list[int]:
    return list(range(count))


__all__ = ["CRASH_SEEDS", "FUZZ_EXAMPLES", "SOAK", "seeds"]
