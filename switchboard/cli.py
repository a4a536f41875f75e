"""The `switchboard` command line: run the pipeline, one stage, or look at its data."""

from __future__ import annotations

import os
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from contract.errors import SwitchboardError
from contract.settings import Settings, load_settings
from switchboard import logs

app = typer.Typer(
    help="Switchboard: SignalWire status callbacks through Kafka into ClickHouse.",
    no_args_is_help=True,
    add_completion=False,
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


@app.command()
def report(
    name: Annotated[str, typer.Argument(help="delivery, calls, failures or mos")],
    since: Annotated[datetime | None, typer.Option(help="from this time (UTC)")] = None,
    until: Annotated[datetime | None, typer.Option(help="until this time (UTC)")] = None,
    campaign: Annotated[str | None, typer.Option(help="only this campaign tag")] = None,
    number: Annotated[
        str | None, typer.Option(help="only messages or calls from/to this number")
    ] = None,
    output: Annotated[Format, typer.Option("--format", help="table, csv or json")] = Format.table,
) -> None:
    """Show a report from ClickHouse (through the running sink, or directly)."""
    from sinks.clickhouse.reports import REPORTS, Filters
    from switchboard.output import render
    from switchboard.query import fetch_report

    if name not in REPORTS:
        raise typer.BadParameter(f"choose one of {', '.join(sorted(REPORTS))}", param_hint="NAME")
    settings = _settings()
    rows = fetch_report(
        settings, name, Filters(since=since, until=until, campaign=campaign, number=number)
    )
    render(rows, output.value, title=f"{name} report")


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
