"""Normalized events and sink settings for the sink tests, built as the processors would."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from contract.events import Event
from contract.kinds import CallbackKind
from contract.settings import Settings

PROJECT = "PJ0123456789abcdef0123456789abcdef"
T0 = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC, on a minute boundary


def event(
    kind: CallbackKind,
    sid: str,
    status: str,
    received_at: float,
    *,
    campaign: str = "",
    **values: Any,
) -> Event:
    spec = kind.spec
    row: dict[str, Any] = {p.column: None for p in spec.params}
    row[spec.sid_column] = sid
    if spec.status_column:
        row[spec.status_column] = status
    row.update(values)
    return Event(
        kind=kind,
        sid=sid,
        status=status,
        received_at=received_at,
        event_time=row.get("timestamp") or received_at,
        campaign=campaign,
        values=row,
        tags={"campaign": campaign} if campaign else {},
    )


def sms(sid: str, status: str, at: float, *, campaign: str = "", **values: Any) -> Event:
    fields = {"from": "+15550001111", "to": "+15550002222", "body": "Spring sale"} | values
    return event(CallbackKind.SMS, sid, status, at, campaign=campaign, **fields)


def records(events: list[Event]) -> list[tuple[str | None, bytes]]:
    return [(e.sid, e.to_bytes()) for e in events]


def with_signalwire(settings: Settings, api_base: str, **extra: Any) -> Settings:
    """`settings` pointed at the fake SignalWire with credentials, and quick retries."""
    return settings.model_copy(
        update={
            "signalwire_project_id": PROJECT,
            "signalwire_token": SecretStr("tok"),
            "signalwire_space_url": "example.signalwire.com",
            "signalwire_api_base": api_base,
            "rest_retry_base_s": 0.05,
            "sink_retry_max_s": 0.5,
        }
        | extra
    )
