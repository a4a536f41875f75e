"""The published topic contracts: the document is the models', the query API serves it
to programs without the token, and the example subscriber reads alerts off the real
broker, ignoring fields it does not know. (The records on every published topic are
checked against the document where the pipeline tests make them: tests/test_proc_pipeline.py,
tests/test_forwards.py.)"""

from __future__ import annotations

import json
import subprocess
import sys

import orjson
import pytest
from jsonschema import Draft202012Validator
from starlette.testclient import TestClient

from contract import published
from contract.alerts import Alert, AlertType, ScopeType, fingerprint, make_alert_id, scope_key
from contract.settings import Settings
from contract.topics import Topic
from query.api import create_api
from sinks.clickhouse.store import Store
from tests.harness import ROOT, produce


def test_the_committed_document_is_made_from_the_models() -> None:
    assert published.DOCUMENT.read_text() == published.render(), (
        "run `python -m contract.published` and commit docs/asyncapi.json"
    )
    document = json.loads(published.render())
    assert document["asyncapi"] == "3.0.0"
    for p in published.PUBLISHED:
        Draft202012Validator.check_schema(published.record_schema(p))
        payload = document["components"]["messages"][p.name]["payload"]
        assert p.version_field in payload["required"]


def test_the_query_api_serves_the_document_without_the_token(store: Store) -> None:
    client = TestClient(create_api(store, "secret-token", topic_prefix="prod."))
    answer = client.get("/asyncapi.json")
    assert answer.status_code == 200
    addresses = {c["address"] for c in answer.json()["channels"].values()}
    assert {"prod.alerts", "prod.events", "prod.metrics.delivery"} <= addresses
    assert client.get("/api/reports/summary").status_code == 401  # data still needs it


def test_an_unknown_field_is_valid_and_a_missing_one_is_not() -> None:
    validator = Draft202012Validator(published.record_schema(published.BY_TOPIC[Topic.ALERTS]))
    record = orjson.loads(_alert("spring", 120).to_bytes())
    assert validator.is_valid(record | {"from_a_newer_version": [1, 2]})
    assert not validator.is_valid({k: v for k, v in record.items() if k != "scope"})


def _alert(campaign: str, count: int) -> Alert:
    scope = scope_key(ScopeType.CAMPAIGN, campaign)
    return Alert(
        make_alert_id(fingerprint(AlertType.SMS_FAILURES, scope, "900s"), 1.8e9),
        AlertType.SMS_FAILURES, scope, 1.8e9, 1.8e9 + 900, count, 100, count, 1.8e9 + 600,
    )  # fmt: skip


@pytest.mark.kafka
def test_the_example_subscriber_prints_each_alert_once(topics: Settings) -> None:
    """One alert delivered twice, with a field of a newer version, then another: two
    lines, in order."""
    first, second = _alert("spring", 120), _alert("fall", 150)
    newer = orjson.dumps(orjson.loads(first.to_bytes()) | {"from_a_newer_version": True})
    produce(
        topics,
        Topic.ALERTS,
        [("one-partition", newer), ("one-partition", newer), ("one-partition", second.to_bytes())],
    )
    printed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "docs" / "examples" / "subscribe_alerts.py"),
            "--bootstrap",
            topics.kafka_bootstrap,
            "--prefix",
            topics.topic_prefix,
            "--max",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert printed.stdout.splitlines() == [
        "FIRING sms_failures campaign:spring: 120 (threshold 100)",
        "FIRING sms_failures campaign:fall: 150 (threshold 100)",
    ]
