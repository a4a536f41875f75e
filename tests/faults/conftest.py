"""Fault tests run every stage as a child process, as production does, with the sink on
its own embedded store (read back from a subprocess once it has stopped)."""

from __future__ import annotations

from pathlib import Path

import pytest

from contract.settings import Settings
from tests.harness import chdb_rows


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


def sms_callbacks(
    messages: int, statuses: tuple[str, ...] = ("queued", "sent", "delivered")
) -> list[dict[str, str]]:
    return [
        {
            "MessageSid": f"SM{i:032d}",
            "MessageStatus": status,
            "AccountSid": "AC1",
            "From": "+15550001111",
            "To": f"+1555{i:07d}",
            "Body": "hi",
            "NumMedia": "0",
            "NumSegments": "1",
        }
        for i in range(messages)
        for status in statuses
    ]
