"""The guest stage: inspect a restored disk, decide per target, adapt the working copy.

Between ``convert`` and ``providers`` in the pipeline: facts are read at the edge (libguestfs),
pure rules turn facts and a target into findings and edits, and the edits are applied at the
edge to the run's working copy — never to the store.
"""

from imagekit.guest.profile import GuestProfile

__all__ = ["GuestProfile"]
