"""A REST resource as the callback the provider would have posted: a pure function.

The envelope is the edge's (`contract.envelope`), parameters named as the provider
posts them, marked `source=reconcile`, with the tags the SID's earlier callbacks carried
(its campaign), so every stage after the edge treats it as one more callback.

Its time: the provider's last change of the resource (`date_updated`, a call's
`end_time`), but never before the change Switchboard already saw nor in the future. For
an SMS that is the receipt time (an SMS callback has no timestamp; its event time is its
receipt), for a call its `Timestamp`, so the status counts in the window it happened in,
not the one the reconcile ran in.
"""

from __future__ import annotations

from email.utils import formatdate
from typing import Any

from contract.envelope import Envelope, SignatureVerdict, Source
from contract.kinds import CallbackKind
from contract.statuses import advances
from reconcile.provider import Resource


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def changed_at(resource: Resource, known_at: float, now: float) -> float:
    at = resource.get("end_time") or resource.get("date_updated") or now
    return float(min(max(at, known_at), now))


def advances_on(kind: CallbackKind, known: str | None, resource: Resource) -> bool:
    status = _text(resource.get("status"))
    return status is not None and advances(kind.spec.ranks, known, status)


def callback(
    kind: CallbackKind,
    resource: Resource,
    *,
    tags: dict[str, str],
    known_at: float,
    now: float,
) -> Envelope:
    at = changed_at(resource, known_at, now)
    if kind is CallbackKind.SMS:
        params = {
            "MessageSid": resource["sid"],
            "MessageStatus": resource["status"],
            "AccountSid": _text(resource.get("account_sid")),
            "From": _text(resource.get("from")),
            "To": _text(resource.get("to")),
            "Body": _text(resource.get("body")),
            "NumMedia": _text(resource.get("num_media")),
            "NumSegments": _text(resource.get("num_segments")),
            "ErrorCode": _text(resource.get("error_code")),
        }
    else:
        completed = resource.get("status") == "completed"
        params = {
            "CallSid": resource["sid"],
            "CallStatus": resource["status"],
            "AccountSid": _text(resource.get("account_sid")),
            "From": _text(resource.get("from")),
            "To": _text(resource.get("to")),
            "Timestamp": formatdate(at, usegmt=True),
            "CallDuration": _text(resource.get("duration")) if completed else None,
        }
        if kind is CallbackKind.VOICE:
            params["Direction"] = _text(resource.get("direction"))
            params["ApiVersion"] = _text(resource.get("api_version"))
    return Envelope(
        kind=kind,
        sid=str(resource["sid"]),
        params={k: v for k, v in params.items() if v is not None},
        received_at=at,
        signature=SignatureVerdict.UNCHECKED,
        tags=dict(tags),
        source=Source.RECONCILE,
    )
