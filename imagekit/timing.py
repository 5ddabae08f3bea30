"""Where the time of a restore goes: a thread-safe stopwatch the rehearsal report reads.

A restore fetches pack ranges and decrypts them on several threads at once, so the busy seconds
of "fetch" and "decrypt" add up to more than the wall time. ``split_restore`` shares the restore's
wall time between the two in proportion to their busy time, so a report's stages add up to its
RTO instead of double-counting overlapped work.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

#: Busy time summed over threads: backend reads, and authenticate + decompress + write.
FETCH_BUSY = "fetch-busy"
DECRYPT_BUSY = "decrypt-busy"
#: Wall time: restoring volumes to raw files, and converting them to the target format.
RESTORE = "restore"
CONVERT = "convert"


class Stopwatch:
    """Seconds accumulated per name, from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.totals: dict[str, float] = {}

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self.totals[name] = self.totals.get(name, 0.0) + seconds

    @contextmanager
    def time(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - started)

    def get(self, name: str) -> float:
        with self._lock:
            return self.totals.get(name, 0.0)


def split_restore(clock: Stopwatch) -> dict[str, float]:
    """``fetch``, ``decrypt`` and ``convert`` seconds of the restores ``clock`` timed."""
    wall = clock.get(RESTORE)
    fetch, decrypt = clock.get(FETCH_BUSY), clock.get(DECRYPT_BUSY)
    share = fetch / (fetch + decrypt) if fetch + decrypt > 0 else 0.5
    return {"fetch": wall * share, "decrypt": wall * (1 - share), "convert": clock.get(CONVERT)}


__all__ = ["CONVERT", "DECRYPT_BUSY", "FETCH_BUSY", "RESTORE", "Stopwatch", "split_restore"]
