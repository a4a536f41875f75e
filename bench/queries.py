"""How long the operators' reads take on a campaign of a given size, embedded chDB:
each report, one dashboard poll (every panel), and a paged CSV export.

    python -m bench queries [--messages 100000] [--runs 5]

A campaign of N messages (sent, then delivered or undelivered with 30003, half each,
in five campaigns) and N/10 calls is written straight into a fresh chDB store with the
writer's row mapping; every figure is the median of `--runs` runs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import fmt, machine_info, median, write_results
from contract.events import Event
from contract.kinds import CallbackKind
from contract.settings import Settings
from query import exports
from query.api import DASHBOARD_PANELS
from query.reports import REPORTS, Filters, run_report
from sinks.clickhouse.schema import migrate
from sinks.clickhouse.store import Store
from tests.scenario import insert_events


def campaign(messages: int, start: float) -> list[Event]:
    events = []
    for i in range(messages):
        sid, at, name = f"SM{i:09d}", start + i * 0.01, f"campaign-{i % 5}"
        final, code = ("undelivered", "30003") if i % 2 else ("delivered", None)
        for status, offset, error in (("sent", 0.0, None), (final, 1.0, code)):
            values: dict[str, Any] = {
                "message_sid": sid, "message_status": status, "error_code": error,
                "from": "+15550000001", "to": f"+1555{i:07d}", "body": "hello",
                "num_media": 0, "num_segments": 1}  # fmt: skip
            events.append(Event(CallbackKind.SMS, sid, status, at + offset, at + offset, name,
                                values))  # fmt: skip
    for i in range(messages // 10):
        sid, at = f"CA{i:09d}", start + i * 0.1
        values = {"call_sid": sid, "call_status": "completed", "from": "+15550000001",
                  "to": f"+1555{i:07d}", "direction": "outbound-api", "sequence_number": 3,
                  "call_duration": 60 + i % 120, "audio_in_mos": 3.0 + (i % 20) / 10,
                  "timestamp": at}  # fmt: skip
        events.append(Event(CallbackKind.VOICE, sid, "completed", at, at, "", values))
    return events


def timed(work: Any) -> float:
    started = time.perf_counter()
    work()
    return (time.perf_counter() - started) * 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench queries", description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    machine = machine_info()
    with tempfile.TemporaryDirectory(prefix="bench-queries-") as tmp:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            clickhouse_url=f"chdb://{Path(tmp) / 'chdb'}",
            clickhouse_database="bench",
        )
        store = Store.connect(settings)
        migrate(store)
        insert_events(store, campaign(args.messages, time.time() - 3600))
        filters = Filters(bucket_s=60)
        figures: dict[str, float] = {}
        for name in REPORTS:
            ms = median(
                timed(lambda n=name: run_report(store, n, filters)) for _ in range(args.runs)
            )
            figures[f"report_{name.replace('-', '_')}_ms"] = ms
        figures["dashboard_poll_ms"] = median(
            timed(lambda: [run_report(store, n, filters) for n in DASHBOARD_PANELS])
            for _ in range(args.runs)
        )
        rows = exports.count_rows(store, "failed-messages", filters)
        export_ms = median(
            timed(lambda: sum(1 for _ in exports.iter_rows(store, "failed-messages", filters)))
            for _ in range(args.runs)
        )
        figures["export_failed_messages_rows"] = rows
        figures["export_failed_messages_rows_per_s"] = rows / (export_ms / 1000)
        store.close()
    lines = [
        "## Operators' queries",
        "",
        f"`python -m bench queries --messages {args.messages} --runs {args.runs}`: "
        f"{args.messages:,} messages ({2 * args.messages:,} SMS events) and "
        f"{args.messages // 10:,} calls in embedded chDB; medians of {args.runs} runs.",
        "",
        "| figure | value |",
        "|---|---|",
        *(f"| {name} | {fmt(value, 1)} |" for name, value in figures.items()),
    ]
    write_results(
        "queries", figures, "\n".join(lines), machine=machine,
        config={"messages": args.messages, "runs": args.runs},
    )  # fmt: skip
    print("\n".join(lines))


if __name__ == "__main__":
    main()
