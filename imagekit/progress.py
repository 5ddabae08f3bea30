"""The progress seam: library code reports progress through this protocol; the CLI decides how.

Core modules never import a progress-bar library. They accept an optional ``Progress`` and call
``start``/``advance``/``finish``; ``NullProgress`` is the default so callers may pass nothing.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    #: Someone sees it: work done only for the bar (listing ahead for an ETA) is worth doing.
    @property
    def visible(self) -> bool: ...

    def start(self, description: str, total: float | None) -> None: ...

    def update(self, completed: float) -> None: ...

    def advance(self, amount: float) -> None: ...

    def finish(self) -> None: ...


class NullProgress:
    """Reports nothing: the default for library calls and for ``--json`` runs without a tty."""

    visible = False

    def start(self, description: str, total: float | None) -> None:
        return None

    def update(self, completed: float) -> None:
        return None

    def advance(self, amount: float) -> None:
        return None

    def finish(self) -> None:
        return None
