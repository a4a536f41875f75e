"""Fault tests run every stage as a child process, as production does, with the sink on
its own embedded store (read back from a subprocess once it has stopped).

Every fault test ends with `assert_none_lost`: each callback the edge answered 204 is in
ClickHouse, or in its dead-letter table. Their campaigns carry callbacks of both kinds
that used to be lost: some with an unreadable value (stored, the value NULL), some with
no status (dead-lettered)."""

from __future__ import annotations

from pathlib import Path

import pytest

from contract.settings import Settings
from tests.harness import chdb_rows

# One message in this many sends an unreadable NumMedia; one in STATUSLESS_EVERY also
# posts a callback without a status.
UNREADABLE_EVERY, STATUSLESS_EVERY = 20, 50


@pytest.fixture
def child_settings(topics: Settings, tmp_path: Path) -> Settings:
    return topics.model_copy(
        update={"clickhouse_url": f"chdb://{tmp_path / 'ch'}", "clickhouse_database": "switchboard"}
    )


def stored_sms(settings: Settings) -> set[tuple[str, str]]:
    rows = chdb_rows(
        settings.clickhouse_dsn,
        settings.clickhouse_database,
        "SELECT message_sid, message_status FROM {db}.sms_events FINAL",
    )
    return {(r["message_sid"], r["message_status"]) for r in rows}


def dead_lettered_sms(settings: Settings) -> set[tuple[str, str]]:
    """(MessageSid, MessageStatus) of the SMS callbacks in the dead-letter table."""
    rows = chdb_rows(
        settings.clickhouse_dsn,
        settings.clickhouse_database,
        "SELECT JSONExtractString(raw, 'params', 'MessageSid') AS sid, "
        "JSONExtractString(raw, 'params', 'MessageStatus') AS status "
        "FROM {db}.dead_letters FINAL WHERE topic = 'callbacks.sms'",
    )
    return {(r["sid"], r["status"]) for r in rows}


def assert_none_lost(settings: Settings, accepted: set[tuple[str, str]]) -> None:
    """Every callback answered 204 (as (MessageSid, MessageStatus)) is in ClickHouse or in
    the dead-letter table; the statusless ones are dead letters."""
    stored, dead = stored_sms(settings), dead_lettered_sms(settings)
    missing = accepted - stored - dead
    assert not missing, f"{len(missing)} acknowledged callbacks lost, e.g. {sorted(missing)[:3]}"
    statusless = {(sid, status) for sid, status in accepted if not status}
    assert statusless <= dead, f"not dead-lettered: {sorted(statusless - dead)[:3]}"


def sms_callbacks(
    messages: int, statuses: tuple[str, ...] = ("queued", "sent", "delivered")
) -> list[dict[str, str]]:
    callbacks: list[dict[str, str]] = []
    for i in range(messages):
        callbacks.extend(
            {
                "MessageSid": f"SM{i:032d}",
                "MessageStatus": status,
                "AccountSid": "AC1",
                "From": "+15550001111",
                "To": f"+1555{i:07d}",
                "Body": "hi",
                "NumMedia": "N/A" if i % UNREADABLE_EVERY == 1 else "0",
                "NumSegments": "1",
            }
            for status in statuses
        )
        if i % STATUSLESS_EVERY == 2:
            callbacks.append({"MessageSid": f"SM{i:032d}", "AccountSid": "AC1", "Body": "hi"})
    return callbacks


def callback_key(callback: dict[str, str]) -> tuple[str, str]:
    return callback["MessageSid"], callback.get("MessageStatus", "")
