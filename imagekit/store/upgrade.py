"""``store upgrade``: key slots written before slot MACs (version 1) become version-2 slots.

Whether a version-1 slot is genuine only its holder can tell (it is sealed to them), so:

- a slot that opens with the caller's identity or passphrase to the expected fingerprint is
  rewritten in place with its MAC: the same sealed bytes under the same name, one atomic write;
- for a slot sealed to someone else, the operator vouches for its recipient and access
  (``readers``, ``writers``): a new slot of the repository's own keys is sealed to that
  recipient, then the recipient's version-1 slots of that access are deleted. Recipients are
  taken from the operator, never from the bucket, so a planted slot never gets the real keys;
- every other version-1 slot is left as it is, listed (unverified, never counted).

Crash-safe at every step: a rewrite leaves the old or the new whole object (``Backend.write``),
and a replacement is written before the old slot goes, so a crash leaves both (they open to the
same keys); a rerun skips what is done, finds the replacement and deletes the old slot.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from imagekit.errors import UsageError, WrongKey
from imagekit.store.crypto import decode_recipient
from imagekit.store.keys import Access, KeySlot, sign_slot
from imagekit.store.repository import Repository
from imagekit.store.slots import describe, slot_id

log = logging.getLogger(__name__)


@dataclass
class UpgradeReport:
    #: Slots of the caller, rewritten in place with their MAC.
    upgraded: list[str] = field(default_factory=list)
    #: New slots sealed to the recipients the operator vouched for.
    added: list[str] = field(default_factory=list)
    #: Version-1 slots those replace, deleted.
    removed: list[str] = field(default_factory=list)
    #: Version-1 slots nobody vouched for: left, unverified.
    left: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "upgraded": list(self.upgraded),
            "added": list(self.added),
            "removed": list(self.removed),
            "left": list(self.left),
        }


def upgrade_slots(
    repo: Repository, *, readers: Sequence[str] = (), writers: Sequence[str] = ()
) -> UpgradeReport:
    """Give every version-1 slot the caller can vouch for its MAC (see the module docstring)."""
    vouched: list[tuple[str, Access]] = [(r, "read") for r in readers]
    vouched += [(r, "write") for r in writers]
    for recipient, access in vouched:
        try:
            decode_recipient(recipient)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
        if access == "read" and repo.key.read_private is None:
            raise WrongKey(f"{repo.url}: a write-only key cannot grant read access ({recipient})")
    review = repo.review_slots()
    legacy = [(n, s) for n, s in review.unverified if s.mac is None]
    # Every vouch checked before anything is written: a refusal leaves the store as it was.
    todo = [(r, a) for r, a in vouched if not _has_genuine(review.genuine, r, a)]
    for recipient, access in todo:
        claims = {s.access for _, s in legacy if s.recipient == recipient}
        if access not in claims:
            found = (
                f"its version-1 slots claim {', '.join(sorted(claims))} access"
                if claims
                else "no version-1 slot names it"
            )
            raise UsageError(
                f"{repo.url}: cannot vouch for {access} access of {recipient}: {found}",
                hint="vouch only for what the old slots hold; grant anything new with "
                "`imagekit key add`",
            )
    report = UpgradeReport()
    for name, slot in review.genuine:
        sid = slot_id(name)
        if slot.mac is None and sid is not None:  # review names every genuine slot so
            repo.backend.write(name, sign_slot(repo.key, sid, slot).encode())
            report.upgraded.append(name)
    for recipient, access in todo:
        report.added.append(repo.add_recipient(recipient, access))
    # Only after every replacement is written: a crash before leaves both, opening alike. Only
    # the access vouched for goes: a writer never removes read slots, and a reader vouching
    # for a writer leaves a read slot naming it for a separate decision.
    for name, slot in legacy:
        if (slot.recipient, slot.access) in vouched:
            repo.backend.delete(name)
            report.removed.append(name)
        else:
            report.left.append(describe(name, slot))
    return report


def _has_genuine(genuine: Sequence[tuple[str, KeySlot]], recipient: str, access: Access) -> bool:
    """Whether a genuine slot of ``recipient`` with ``access`` is there already (a rerun after a
    crash between the new slot and the deletion of the old)."""
    return any(s.recipient == recipient and s.access == access for _, s in genuine)


__all__ = ["UpgradeReport", "upgrade_slots"]
