"""Status precedence: a message's or call's state never moves backwards; and how each
final status counts in delivery rates.

Callbacks arrive late and out of order; a lower-ranked status after a higher one
is history, not a transition. Final statuses share the top rank, so the first
final status a SID reaches is the one it keeps.

Every status is stored, whatever it is. One the ranks below do not name (a new or
misspelt one) ranks `UNKNOWN_RANK`: it never moves a SID's state, and the delivery
report counts its messages apart, as `other`. The README's status table says how
every status of every format counts; tests/test_formats.py holds it to these sets.
"""

from __future__ import annotations

SMS_RANK: dict[str, int] = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 1,
    "initiated": 1,  # SignalWire REST: accepted for sending, as queued
    "sending": 2,
    "sent": 3,
    "receiving": 3,
    "delivered": 4,
    "read": 4,
    "partially_delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "invalid": 4,  # cXML <Message>/<Sms>: refused before sending
    "received": 4,
    "canceled": 4,
}
# Delivery rate = delivered / (delivered + undelivered + failed), over these sets.
# `read` implies delivered; `partially_delivered` reached the handset in part.
SMS_DELIVERED = frozenset({"delivered", "read", "partially_delivered"})
SMS_UNDELIVERED = frozenset({"undelivered"})
SMS_FAILED_ONLY = frozenset({"failed", "invalid"})  # never left the provider
SMS_FAILED = SMS_UNDELIVERED | SMS_FAILED_ONLY  # what failure alerts and enrichment count
# Outside the rate: a canceled (scheduled) message is no failure, an inbound message
# (receiving, received) no delivery.
SMS_NOT_COUNTED = frozenset({"canceled", "receiving", "received"})
SMS_QUEUED = frozenset({"accepted", "scheduled", "queued", "initiated", "sending"})

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


def sms_bucket(status: str) -> str:
    """Where a message whose state is `status` counts in the delivery report (`sent` is
    `unconfirmed` there once its receipt is overdue or it has media)."""
    for bucket, members in (
        ("delivered", SMS_DELIVERED),
        ("undelivered", SMS_UNDELIVERED),
        ("failed", SMS_FAILED_ONLY),
        ("not_counted", SMS_NOT_COUNTED),
        ("pending", SMS_QUEUED),
    ):
        if status in members:
            return bucket
    return "sent" if status == "sent" else "other"


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
