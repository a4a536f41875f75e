"""Exports with the seed's columns (exact CSV rows), and the CLI's report and export
commands reading through the sink's query API, or ClickHouse directly."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from contract.settings import Settings
from query.api import create_api
from query.exports import EXPORTS, iter_rows
from query.reports import Filters
from sinks.clickhouse.store import Store
from switchboard.cli import app
from tests import scenario
from tests.harness import serve_in_thread, settings_env

RECORDING = "https://example.signalwire.com/recordings/RE001.wav"
CENTRE, SENDER = scenario.CALL_CENTRE, scenario.SENDER


@pytest.fixture
def base(store: Store) -> float:
    base = scenario.minute_base()
    scenario.insert_campaign(store, base)
    return base


def _rfc2822(epoch: float) -> str:
    return format_datetime(datetime.fromtimestamp(epoch, UTC))


def failed_messages(base: float) -> list[list[str]]:
    date_sent = str(datetime.fromtimestamp(base + 2, UTC))  # as pandas wrote it
    assert date_sent.endswith("+00:00")
    n = scenario.to_number
    return [
        ["Message Sid", "Message Status", "Error Code", "Error Message", "Date Sent", "To",
         "From", "Body"],
        ["SM003", "undelivered", "30003", "Unreachable destination handset", date_sent,
         n("SM003"), SENDER, "Hello from spring-sale (SM003)"],
        ["SM004", "failed", "30007", "", "", n("SM004"), SENDER, "Hello from spring-sale (SM004)"],
        ["SM010", "undelivered", "30003", "", "", n("SM010"), SENDER,
         "Hello from spring-sale (SM010)"],
        ["SM102", "failed", "21610", "", "", n("SM102"), SENDER, "Hello from fall-promo (SM102)"],
        ["SM103", "undelivered", "30006", "", "", n("SM103"), SENDER,
         "Hello from fall-promo (SM103)"],
    ]  # fmt: skip


CALL_HEADER = ["Call SID", "Call Status", "Event Timestamp", "Call Direction", "To Number",
               "From Number", "Recording URL (if present)"]  # fmt: skip


def failed_calls(base: float) -> list[list[str]]:
    n = scenario.to_number
    return [
        CALL_HEADER,
        ["CA003", "failed", _rfc2822(base + 10), "outbound-api", n("CA003"), CENTRE, ""],
        ["CA007", "failed", _rfc2822(base + 50), "outbound-api", n("CA007"), CENTRE, ""],
    ]


def calls(base: float) -> list[list[str]]:
    n = scenario.to_number
    return [
        CALL_HEADER,
        ["CA001", "completed", _rfc2822(base + 65), "outbound-api", n("CA001"), CENTRE, RECORDING],
        ["CA002", "completed", _rfc2822(base + 70), "outbound-api", n("CA002"), CENTRE, ""],
        ["CA004", "busy", _rfc2822(base + 20), "outbound-api", n("CA004"), CENTRE, ""],
        ["CA005", "no-answer", _rfc2822(base + 30), "outbound-api", n("CA005"), CENTRE, ""],
    ]


def inbound_calls(base: float) -> list[list[str]]:
    n = scenario.to_number
    return [
        ["Call SID", "Call Status", "Event Timestamp", "To Number", "From Number",
         "Call Duration(s)", "Audio in MOS"],
        ["CA101", "completed", _rfc2822(base + 15), CENTRE, n("CA101"), "30", "4.0"],
        ["CA102", "completed", _rfc2822(base + 75), CENTRE, n("CA102"), "90", "2.5"],
        ["CA103", "failed", _rfc2822(base + 80), CENTRE, n("CA103"), "", ""],
    ]  # fmt: skip


EXPECTED = {
    "failed-messages": failed_messages,
    "failed-calls": failed_calls,
    "calls": calls,
    "inbound-calls": inbound_calls,
}


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_export_rows_are_the_seeds_columns(store: Store, base: float, name: str) -> None:
    header, *rows = EXPECTED[name](base)
    assert list(EXPORTS[name].columns) == header
    assert list(iter_rows(store, name, Filters())) == rows
    # paging by SID gives the same rows, however small the pages
    assert list(iter_rows(store, name, Filters(), page=2)) == rows


def test_exports_take_the_report_filters(store: Store, base: float) -> None:
    fall = list(iter_rows(store, "failed-messages", Filters(campaign="fall-promo")))
    assert [r[0] for r in fall] == ["SM102", "SM103"]
    one = list(iter_rows(store, "failed-calls", Filters(number=scenario.to_number("CA007"))))
    assert [r[0] for r in one] == ["CA007"]


@pytest.fixture
def running_api(settings: Settings, store: Store, base: float) -> Iterator[str]:
    """The sink's query API, as `switchboard sink` serves it, on the settings' port."""
    with serve_in_thread(create_api(store, "test-token"), settings.api_port) as url:
        yield url


def _cli(settings: Settings, *args: str) -> str:
    env = settings_env(settings) | {"COLUMNS": "200"}
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_export_cli_writes_the_csv_file(
    settings: Settings, running_api: str, base: float, tmp_path: Path, name: str
) -> None:
    out = tmp_path / f"{name}.csv"
    _cli(settings, "export", name, "--output", str(out))
    with out.open(newline="", encoding="utf-8") as fh:
        assert list(csv.reader(fh)) == EXPECTED[name](base)


def test_export_cli_writes_to_stdout_with_filters(
    settings: Settings, running_api: str, base: float
) -> None:
    text = _cli(settings, "export", "failed-messages", "--campaign", "spring-sale")
    assert [r[0] for r in csv.reader(io.StringIO(text))] == [
        "Message Sid",
        "SM003",
        "SM004",
        "SM010",
    ]


def test_report_cli_formats_through_the_api(
    settings: Settings, running_api: str, base: float
) -> None:
    rows = json.loads(_cli(settings, "report", "delivery", "--format", "json"))
    assert [(r["campaign"], r["messages"], r["delivery_rate"]) for r in rows] == [
        ("fall-promo", 3, 0.3333),
        ("spring-sale", 10, 0.5),
    ]
    text = _cli(settings, "report", "failures", "--format", "csv", "--limit", "2")
    assert list(csv.reader(io.StringIO(text))) == [
        ["kind", "error_code", "meaning", "failures", "failed", "undelivered", "share_pct"],
        ["sms", "30003", "unreachable handset", "2", "0", "2", "25.0"],
        ["inbound-call", "", "", "1", "1", "0", "12.5"],
    ]
    table = _cli(settings, "report", "calls")
    assert "calls report" in table
    lines = [line for line in table.splitlines() if "│ voice" in line]
    assert len(lines) == 1 and "│ 3.0 " in lines[0] and "│ 3.75 " in lines[0], table


def test_report_cli_reads_clickhouse_directly_without_the_api(
    settings: Settings, base: float
) -> None:
    [summary] = json.loads(_cli(settings, "report", "summary", "--format", "json"))
    assert (summary["messages"], summary["delivery_rate"], summary["alerts"]) == (13, 0.4444, 2)
    text = _cli(settings, "export", "calls")
    assert list(csv.reader(io.StringIO(text))) == calls(base)
