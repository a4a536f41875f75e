"""Status precedence: a message's or call's state never moves backwards.

Callbacks arrive late and out of order; a lower-ranked status after a higher one
is history, not a transition. Final statuses share the top rank, so the first
final status a SID reaches is the one it keeps.
"""

from __future__ import annotations

SMS_RANK: dict[str, int] = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "receiving": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "received": 4,
    "canceled": 4,
    "read": 4,
}
SMS_FAILED = frozenset({"undelivered", "failed"})

CALL_RANK: dict[str, int] = {
    "queued": 0,
    "initiated": 1,
    "ringing": 2,
    "answered": 3,
    "in-progress": 3,
    "completed": 4,
    "busy": 4,
    "no-answer": 4,
    "canceled": 4,
    "failed": 4,
}
# The seed's split: end states go in the calls log, failures in the failed-calls log.
CALL_ENDED = frozenset({"completed", "canceled", "no-answer", "busy"})
CALL_FAILED = frozenset({"failed"})

RECORDING_RANK: dict[str, int] = {"in-progress": 0, "completed": 1, "absent": 1, "failed": 1}
TRANSCRIPTION_RANK: dict[str, int] = {"in-progress": 0, "completed": 1, "failed": 1}

UNKNOWN_RANK = -1


def final(rank: dict[str, int]) -> frozenset[str]:
    """The statuses of the top rank: after one, only a provider's retry or a late
    straggler of the same SID can still arrive."""
    top = max(rank.values())
    return frozenset(status for status, r in rank.items() if r == top)


SMS_FINAL = final(SMS_RANK)


def advances(rank: dict[str, int], previous: str | None, new: str) -> bool:
    """True when `new` is a real transition from `previous` (not a repeat, not backwards)."""
    if previous is None:
        return True
    old_rank = rank.get(previous, UNKNOWN_RANK)
    new_rank = rank.get(new, UNKNOWN_RANK)
    if old_rank == max(rank.values()):
        return False  # final is final, even if a different final status arrives later
    return new_rank > old_rank
