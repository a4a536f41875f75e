"""The `switchboard` command line: run the pipeline, one stage, or look at its data."""

from __future__ import annotations

import csv
import os
import sys
from contextlib import nullcontext
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from contract.errors import SwitchboardError
from contract.settings import Settings, load_settings
from sinks.clickhouse.reports import DESCRIPTIONS as REPORT_DESCRIPTIONS
from sinks.clickhouse.reports import REPORTS, Filters
from switchboard import logs

app = typer.Typer(
    help="Switchboard: SignalWire status callbacks through Kafka into ClickHouse.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",  # docstrings' paragraphs reflow to the terminal's width
)
broker_app = typer.Typer(
    help="The local Kafka broker (Apache Kafka from Maven Central).", no_args_is_help=True
)
app.add_typer(broker_app, name="broker")
console = Console(stderr=True)

Host = Annotated[str | None, typer.Option(help="address to listen on (default from settings)")]
Port = Annotated[int | None, typer.Option(help="port to listen on (default from settings)")]


def _settings(**overrides: object) -> Settings:
    """Flags win over the environment; they are exported too, for worker processes."""
    given = {k: v for k, v in overrides.items() if v is not None}
    for key, value in given.items():
        os.environ[f"SWITCHBOARD_{key.upper()}"] = str(value)
    return load_settings(**given)


@app.command()
def ingest(
    host: Host = None,
    port: Port = None,
    workers: Annotated[int | None, typer.Option(help="uvicorn worker processes")] = None,
) -> None:
    """Run the HTTP edge: POST /callbacks/{kind} to Kafka."""
    from ingest.server import serve

    serve(_settings(ingest_host=host, ingest_port=port, ingest_workers=workers))


@app.command()
def process(
    metrics_port: Annotated[
        int | None, typer.Option(help="serve Prometheus metrics on 127.0.0.1:PORT")
    ] = None,
) -> None:
    """Run the stream processors (a faust worker): normalize, state, windows, alerts."""
    from processors.worker import run

    run(_settings(), metrics_port)


@app.command()
def sink(
    host: Host = None,
    port: Port = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="serve Prometheus metrics on 127.0.0.1:PORT")
    ] = None,
) -> None:
    """Run the sinks: ClickHouse writers, SMS forwards and alerts, and the query API."""
    from sinks.service import run

    run(_settings(api_host=host, api_port=port), metrics_port)


@app.command()
def run(
    host: Host = None,
    port: Port = None,
    external_kafka: Annotated[
        bool,
        typer.Option(help="use the broker at SWITCHBOARD_KAFKA_BOOTSTRAP instead of starting one"),
    ] = False,
) -> None:
    """Run the whole pipeline locally on embedded defaults (Kafka, edge, processors, sinks)."""
    from switchboard.supervisor import run_pipeline

    run_pipeline(_settings(ingest_host=host, ingest_port=port), start_broker=not external_kafka)


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


ReportName = StrEnum("ReportName", {name: name for name in REPORTS})  # type: ignore[misc]
_TIMES = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"]
Since = Annotated[
    datetime | None,
    typer.Option(
        formats=_TIMES,
        metavar="TIME",
        help="from this time: UTC, or with an offset, e.g. 2024-05-01T12:00:00+02:00",
    ),
]
Until = Annotated[
    datetime | None,
    typer.Option(formats=_TIMES, metavar="TIME", help="until this time (exclusive)"),
]
Campaign = Annotated[str | None, typer.Option(help="only this campaign tag")]
Number = Annotated[
    str | None, typer.Option(help="only messages or calls from or to this number (E.164)")
]


@app.command(
    help="Show a report from ClickHouse (through the running sink's query API, or directly).\n\n"
    + "\n".join(f"- **{name}**: {text}" for name, text in REPORT_DESCRIPTIONS.items())
)
def report(
    name: Annotated[ReportName, typer.Argument(help="which report", show_default=False)],
    since: Since = None,
    until: Until = None,
    campaign: Campaign = None,
    number: Number = None,
    bucket: Annotated[
        int, typer.Option(min=1, help="seconds per time bucket (delivery-rate, mos)")
    ] = 300,
    limit: Annotated[int, typer.Option(min=1, help="rows of the top-N and latest-N reports")] = 100,
    output: Annotated[Format, typer.Option("--format", help="table, csv or json")] = Format.table,
) -> None:
    from switchboard.output import render
    from switchboard.query import fetch_report

    settings = _settings()
    filters = Filters(
        since=since,
        until=until,
        campaign=campaign,
        number=number,
        unconfirmed_after_s=settings.unconfirmed_after_s,
        mos_floor=settings.mos_floor,
        bucket_s=bucket,
        limit=limit,
    )
    rows = fetch_report(settings, name.value, filters)
    render(rows, output.value, title=f"{name.value} report")


export_app = typer.Typer(
    help="Write a CSV with the seed apps' columns, to a file or stdout.", no_args_is_help=True
)
app.add_typer(export_app, name="export")
Output = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="write the CSV to this file (default: stdout)"),
]


def _export(name: str, output: Path | None, filters: Filters) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from switchboard.query import open_export

    settings = _settings()
    with (
        open_export(settings, name, filters) as stream,
        (
            output.open("w", newline="", encoding="utf-8") if output else nullcontext(sys.stdout)
        ) as sink,
        Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        ) as progress,
    ):
        writer = csv.writer(sink, lineterminator="\n")
        writer.writerow(stream.columns)
        task = progress.add_task(f"export {name}", total=stream.total)
        written = 0
        for row in stream.rows:
            writer.writerow(row)
            written += 1
            if written % 500 == 0:
                progress.update(task, completed=written)
        progress.update(task, completed=written)
    if output:
        console.print(f"wrote {written} rows to {output}")


@export_app.command("failed-messages")
def export_failed_messages(
    output: Output = None,
    since: Since = None,
    until: Until = None,
    campaign: Campaign = None,
    number: Number = None,
) -> None:
    """Failed and undelivered messages, as the seed's SMS error tracker wrote them.

    Columns: Message Sid, Message Status, Error Code, Error Message, Date Sent, To, From,
    Body. Error Message and Date Sent are what the REST API said, for the messages that
    the sink has enriched so far."""
    _export("failed-messages", output, Filters(since, until, campaign, number))


@export_app.command("failed-calls")
def export_failed_calls(
    output: Output = None,
    since: Since = None,
    until: Until = None,
    campaign: Campaign = None,
    number: Number = None,
) -> None:
    """Voice calls that failed, as the seed's call tracker wrote them.

    Columns: Call SID, Call Status, Event Timestamp, Call Direction, To Number,
    From Number, Recording URL (if present)."""
    _export("failed-calls", output, Filters(since, until, campaign, number))


@export_app.command("calls")
def export_calls(
    output: Output = None,
    since: Since = None,
    until: Until = None,
    campaign: Campaign = None,
    number: Number = None,
) -> None:
    """Voice calls that ended: completed, canceled, no-answer or busy.

    The failed-calls columns; failed calls are in `export failed-calls`, as the seed's
    call tracker kept them apart."""
    _export("calls", output, Filters(since, until, campaign, number))


@app.command()
def tail() -> None:
    """Stream status changes live, with the failed table updating below.

    One coloured line per status change (kind, SID, status, error code and its meaning),
    like the seed apps' console log; a repeated or late callback is not a change.
    Reads the events topic from its end and joins no consumer group, so any number of
    operators can tail at once. Ctrl-C stops."""
    from rich.console import Console

    from switchboard.tail import run_tail

    run_tail(_settings(), Console())


@broker_app.command("start")
def broker_start(
    port: Annotated[int, typer.Option(help="Kafka listener port")] = 9092,
    data: Annotated[Path | None, typer.Option(help="broker data dir")] = None,
) -> None:
    """Fetch Kafka's jars (once) and start a single-node KRaft broker on 127.0.0.1."""
    from switchboard.broker import LocalBroker, kafka_version

    settings = _settings()
    broker = LocalBroker(data or settings.data_dir / "kafka", port=port)
    broker.start()
    console.print(f"Kafka {kafka_version()} on {broker.bootstrap} (pid {broker.pid()})")


@broker_app.command("stop")
def broker_stop(data: Annotated[Path | None, typer.Option(help="broker data dir")] = None) -> None:
    """Stop the broker started by `switchboard broker start`."""
    from switchboard.broker import LocalBroker

    settings = _settings()
    LocalBroker(data or settings.data_dir / "kafka").stop()
    console.print("Kafka stopped")


@broker_app.command("fetch")
def broker_fetch() -> None:
    """Fetch Kafka's jars with Maven into kafka/libs (no broker started)."""
    from switchboard.broker import fetch_jars, kafka_version

    fetch_jars()
    console.print(f"Kafka {kafka_version()} jars ready")


def main() -> None:
    logs.configure()
    try:
        app()
    except SwitchboardError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise SystemExit(2) from None
