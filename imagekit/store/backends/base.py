"""The backend contract: the dozen promises every store backend keeps.

A backend is a flat namespace of immutable-ish objects under one root (a bucket/container plus an
optional prefix, or a directory). Names are relative, ``/``-separated, ASCII, and never start with
``/``. The store layer above never needs more than what is promised here, so any libcloud storage
driver can carry a repository.

Promises (the conformance suite in ``tests/store/backends/test_conformance.py`` checks each one):

- ``write(name, data)``: atomic. After it returns the object exists whole; if it raises, the object
  either does not exist or holds its previous whole content — never a prefix. Writing an existing
  name replaces it. Idempotent: repeating a write with the same bytes is harmless.
- ``read(name, offset, length)``: the bytes ``[offset, offset+length)`` (to the end when
  ``length`` is None). A missing object raises ``ObjectNotFound``. A read past the end returns
  what exists; a short read of a range that exists raises ``IntegrityError`` (truncated download).
- ``stat(name)``: ``ObjectInfo`` or ``ObjectNotFound``. ``ObjectInfo.modified`` is the storage's
  time of the last write (a directory's mtime, S3/GCS/Swift/Azure ``Last-Modified``): ``list``
  always fills it, ``stat`` where the service's answer has it (else None).
- ``list(prefix)``: every object whose name starts with ``prefix``, in no promised order; objects
  written before the call started are listed (read-after-write listing, which S3, Azure, GCS and
  Swift now all give).
- ``delete(name)``: idempotent; deleting a missing object is not an error.
- Errors: anything that failed is a ``StoreError``; ``transient=True`` on the ones worth retrying
  (throttling, 5xx, connection resets, timeouts). Permanent: not found, auth refused, bad bucket.
- Thread safety: one backend instance may be used from several threads at once.
- Credentials are never part of ``url`` or of any error message.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ObjectInfo:
    name: str
    size: int
    #: When the storage last wrote the object (unix seconds, the storage's clock), where the
    #: backend reports it; None where it does not. Locks and prune use it so that one host's
    #: wrong clock cannot make a live lock or a young pack look old.
    modified: float | None = field(default=None, compare=False)


class Backend(abc.ABC):
    """One place a repository lives. Subclasses wrap a libcloud storage driver."""

    #: Where the repository is, without credentials, for messages and logs.
    url: str

    #: ``write_from`` takes a view of page-aligned memory and writes it without a copy of its
    #: own (a directory: ``O_DIRECT``), so packs are worth building in aligned buffers.
    aligned_writes: bool = False

    @abc.abstractmethod
    def write(self, name: str, data: bytes) -> None: ...

    def write_from(self, name: str, view: memoryview) -> None:
        """``write`` from memory the caller reuses once this returns (see ``aligned_writes``)."""
        self.write(name, bytes(view))

    @abc.abstractmethod
    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes: ...

    @abc.abstractmethod
    def stat(self, name: str) -> ObjectInfo: ...

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...

    @abc.abstractmethod
    def delete(self, name: str) -> None: ...

    def exists(self, name: str) -> bool:
        from imagekit.errors import ObjectNotFound

        try:
            self.stat(name)
        except ObjectNotFound:
            return False
        return True

    def remove_leftovers(self, older_than: float) -> int:
        """Delete partial writes a crash left, older than ``older_than`` seconds; how many.

        Object stores have none (an upload appears whole or not at all); a directory can.
        """
        return 0

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release connections; the backend is unusable afterwards."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
