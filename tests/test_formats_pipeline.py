"""Every shared fixture of a real callback lands: posted to its kind's URL as its provider
sends it (form, JSON or GET), through the edge, Kafka, the processors and the event
writer into ClickHouse, where its row holds the file's own values, field by field.

One pipeline start for all of them (the processors are a child process)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from contract.kinds import CallbackKind
from contract.settings import Settings
from ingest.app import create_app
from sinks.clickhouse.store import Store
from tests.callback_fixtures import Fixture, expected_row, load
from tests.harness import Stage, event_writer, wait_for, warm_idempotence

pytestmark = pytest.mark.kafka

FIXTURES = load()


def _comparable(value: Any) -> Any:
    if isinstance(value, datetime):
        return round(value.timestamp(), 3)
    if isinstance(value, float):
        return round(value, 6)
    return value


def test_there_are_fixtures_of_every_kind_and_format() -> None:
    assert len(FIXTURES) >= 19
    assert {f.kind for f in FIXTURES} == set(CallbackKind)
    assert any(f.by_get for f in FIXTURES)
    assert {f.name for f in FIXTURES if f.content_type == "json"} >= {
        "signalwire-sms-rest-message-status",
        "signalwire-voice-swml-call-state-answered",
        "signalwire-recording-swml-record-finished",
        "twilio-sms-eventstreams-delivered",
    }


@pytest.fixture
def keeping(topics: Settings) -> Settings:
    """Texts kept (for a month), so every value of a file, its body too, has its column;
    that they are dropped by default is tests/test_privacy.py's."""
    return topics.model_copy(update={"retention_texts_days": 30})


@pytest.fixture
def processors(keeping: Settings, tmp_path: Path) -> Iterator[Stage]:
    stage = Stage("process", keeping, tmp_path).start()
    yield stage
    stage.terminate()


def test_every_fixture_lands_as_its_row(keeping: Settings, store: Store, processors: Stage) -> None:
    topics = keeping
    warm_idempotence(topics)
    with TestClient(create_app(topics)) as edge:
        for fixture in FIXTURES:
            request = fixture.request()
            url = request.pop("url")
            if "?" in url:
                url += "&campaign=fixtures"
            else:
                url += "?campaign=fixtures"
            response = edge.request(url=url, **request)
            assert response.status_code == 204, f"{fixture.name}: {response.text}"

    by_kind: dict[CallbackKind, list[Fixture]] = {}
    for fixture in FIXTURES:
        by_kind.setdefault(fixture.kind, []).append(fixture)

    with event_writer(topics, store):
        for kind, fixtures in by_kind.items():
            spec = kind.spec
            table = store.table(spec.table)

            def rows(table: str = table, n: int = len(fixtures)) -> list[dict[str, Any]] | None:
                found = store.query_dicts(f"SELECT * FROM {table} FINAL")
                return found if len(found) >= n else None

            found = wait_for(
                rows,
                timeout=90,
                what=f"{len(fixtures)} rows in {spec.table}: {processors.log()[-3000:]}",
            )
            assert len(found) == len(fixtures), found
            by_sid = {row[spec.sid_column]: row for row in found}
            for fixture in fixtures:
                expected = expected_row(fixture)
                row = by_sid[expected[spec.sid_column]]
                for column, value in expected.items():
                    assert _comparable(row[column]) == _comparable(value), (
                        f"{fixture.name}: {column} is {row[column]!r}, expected {value!r}"
                    )
                assert row["campaign"] == "fixtures", fixture.name
                assert row["parse_errors"] == {}, fixture.name
