"""The `switchboard` command line: run the pipeline, one stage, or look at its data."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import sys
from contextlib import nullcontext
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from contract.alerts import AlertType
from contract.deadletters import Reason
from contract.errors import SwitchboardError
from contract.settings import Settings, load_settings
from query.exports import DESCRIPTIONS as EXPORT_DESCRIPTIONS
from query.exports import EXPORTS
from query.reports import DESCRIPTIONS as REPORT_DESCRIPTIONS
from query.reports import REPORTS, Filters
from runtime import logs
from runtime.signals import stop_cleanly_while_starting
from simulate.formats import SimFormat

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


def _progress(*, shown: bool = True) -> Progress:
    """A progress bar on standard error, for a terminal only (a pipe or log gets none)."""
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not (shown and console.is_terminal),
    )


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
AlertTypeName = StrEnum("AlertTypeName", {t.value: t.value for t in AlertType})  # type: ignore[misc]
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
Account = Annotated[
    str | None, typer.Option(help="only this account's (AccountSid, a SignalWire project id)")
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
    account: Account = None,
    bucket: Annotated[
        int, typer.Option(min=1, help="seconds per time bucket (delivery-rate, mos)")
    ] = Filters.bucket_s,
    limit: Annotated[
        int, typer.Option(min=1, help="rows of the top-N and latest-N reports")
    ] = Filters.limit,
    output: Annotated[Format, typer.Option("--format", help="table, csv or json")] = Format.table,
) -> None:
    from query.client import fetch_report
    from switchboard.output import render

    settings = _settings()
    filters = Filters.from_settings(
        settings,
        since=since,
        until=until,
        campaign=campaign,
        number=number,
        account=account,
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
    from query.client import open_export

    settings = _settings()
    with (
        open_export(settings, name, filters) as stream,
        (
            output.open("w", newline="", encoding="utf-8") if output else nullcontext(sys.stdout)
        ) as sink,
        _progress() as progress,
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


def _export_command(name: str) -> None:
    """`switchboard export NAME`, one for each export in `query/exports.py`."""

    def export(
        output: Output = None,
        since: Since = None,
        until: Until = None,
        campaign: Campaign = None,
        number: Number = None,
        account: Account = None,
    ) -> None:
        _export(name, output, Filters(since, until, campaign, number, account))

    summary = EXPORT_DESCRIPTIONS[name]
    export.__doc__ = (
        f"{summary[0].upper()}{summary[1:]}.\n\nColumns: {', '.join(EXPORTS[name].columns)}."
    )
    export_app.command(name)(export)


for _name in EXPORTS:
    _export_command(_name)


dead_letters_app = typer.Typer(
    help="Callbacks and SMS that could not be handled, kept whole: list them, and send them "
    "back through the same path once the cause is fixed.\n\n"
    "Reasons: "
    + ", ".join(f"`{r.value}`" for r in Reason)
    + ". A callback is dead-lettered only when it has no SID or no status (or its "
    "envelope cannot be read); an unreadable value costs only itself (see `report params`).",
    no_args_is_help=True,
)
app.add_typer(dead_letters_app, name="dead-letters")
ReasonOption = Annotated[
    str | None, typer.Option("--reason", help="only letters of this reason (e.g. no_status)")
]


class LetterStateChoice(StrEnum):
    dead = "dead"
    replayed = "replayed"
    all = "all"


@dead_letters_app.command("list")
def dead_letters_list(
    since: Since = None,
    until: Until = None,
    reason: ReasonOption = None,
    state: Annotated[
        LetterStateChoice,
        typer.Option(help="dead (waiting for a replay), replayed, or all"),
    ] = LetterStateChoice.dead,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="the newest this many")] = 100,
    output: Annotated[
        Format,
        typer.Option("--format", help="table, or csv or json with every field and the raw record"),
    ] = Format.table,
) -> None:
    """The dead letters, newest first: when, why, from which stage and topic, the SID, and
    what exactly was wrong. The letter id names each one."""
    from query.client import fetch_letters
    from query.deadletters import LetterFilter
    from switchboard.output import render

    wanted = LetterFilter(
        since=since,
        until=until,
        reason=reason,
        state=None if state is LetterStateChoice.all else state.value,
        limit=limit,
    )
    letters = fetch_letters(_settings(), wanted)
    rows: list[dict[str, object]] = []
    for letter in letters:
        when = datetime.fromtimestamp(letter.dead_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        if output is not Format.table:
            rows.append(dataclasses.asdict(letter) | {"dead_at": when})
            continue
        row: dict[str, object] = {"dead_at": when, "reason": letter.reason}  # for people
        row |= {"topic": letter.topic, "sid": letter.sid, "message": letter.message}
        if state is LetterStateChoice.all:
            row["state"] = letter.state
        rows.append(row)
    render(rows, output.value, title=f"{len(rows)} dead letters, state {state.value} (UTC)")


@dead_letters_app.command("replay")
def dead_letters_replay(
    reason: ReasonOption = None,
    since: Since = None,
    until: Until = None,
    include_replayed: Annotated[
        bool, typer.Option(help="also letters replayed before (they count once all the same)")
    ] = False,
    dry_run: Annotated[bool, typer.Option(help="say what would be replayed, send nothing")] = False,
) -> None:
    """Send dead letters back through the same path, once their cause is fixed.

    Each original record goes back to its topic and partition with its key, as it was (a
    callback keeps its receipt time), through the same stage as the first time. What
    succeeds counts once however often it is replayed; what fails again is dead again,
    the same letter."""
    from query.deadletters import LetterFilter
    from switchboard.deadletters import replay
    from switchboard.output import render

    wanted = LetterFilter(
        since=since,
        until=until,
        reason=reason,
        state=None if include_replayed else "dead",
    )
    with console.status("replaying dead letters", spinner="dots") as status:
        counted = replay(
            _settings(),
            wanted,
            dry_run=dry_run,
            progress=lambda n: status.update(f"replayed {n} dead letters"),
        )
    total = sum(counted.values())
    rows = [
        {"reason": reason, "topic": topic, "letters": n}
        for (reason, topic), n in sorted(counted.items())
    ]
    verb = "would replay" if dry_run else "replayed"
    render(rows, "table", title=f"{verb} {total} dead letters")


@app.command()
def reconcile(
    since: Annotated[
        str | None,
        typer.Option(help="only SIDs whose last change is this recent: 2h, 30m, 1d (default: all)"),
    ] = None,
    campaign: Annotated[str | None, typer.Option(help="only this campaign's SIDs")] = None,
    discover: Annotated[
        bool,
        typer.Option(
            help="also list the messages and calls sent since --since from the campaign's "
            "numbers (and --number) and publish those Switchboard never heard of"
        ),
    ] = False,
    number: Annotated[
        list[str] | None, typer.Option(help="a number of ours to discover from (repeat)")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="fetch and report, publish nothing")] = False,
    follow: Annotated[
        bool, typer.Option(help="run as a stage: a pass every SWITCHBOARD_RECONCILE_INTERVAL_S")
    ] = False,
    metrics_port: Annotated[
        int | None, typer.Option(help="with --follow: Prometheus metrics on 127.0.0.1:PORT")
    ] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Fetch messages and calls stuck short of a final status from SignalWire's REST API
    and publish what the provider knows as callbacks marked source=reconcile (they then
    count like any callback, once). Exit code 1 if any fetch failed."""
    from reconcile.once import reconcile_once
    from reconcile.stage import Outcome
    from switchboard.output import render
    from switchboard.silences import duration_s

    settings = _settings()
    if follow:
        from reconcile.service import run as run_stage

        run_stage(settings, metrics_port)
        return
    bar = _progress(shown=progress)
    task = bar.add_task("reconcile", total=None)
    with bar:
        tally = reconcile_once(
            settings,
            since_s=duration_s(since) if since else None,
            campaign=campaign,
            discover=discover,
            numbers=number,
            dry_run=dry_run,
            on_due=lambda n: bar.update(task, total=n),
            progress=lambda _outcome: bar.advance(task),
        )
    counts = tally.counts
    render(
        [
            {
                "checked": tally.checked,
                "changed": counts[Outcome.CHANGED],
                "unchanged": counts[Outcome.UNCHANGED],
                "not found at the provider": counts[Outcome.NOT_FOUND],
                "errors": counts[Outcome.ERROR],
            }
        ],
        "table",
        title="reconcile" + (" (dry run: nothing published)" if dry_run else ""),
    )
    if counts[Outcome.ERROR]:
        raise typer.Exit(1)


@app.command()
def forget(
    number: Annotated[str, typer.Argument(help="the phone number, e.g. +15551000003")],
    dry_run: Annotated[
        bool, typer.Option(help="say what would be removed, remove nothing")
    ] = False,
    output: Annotated[Format, typer.Option("--format", help="table or json")] = Format.table,
) -> None:
    """Remove a phone number from everywhere Switchboard keeps it, and say what went.

    Kafka: records holding it are deleted with every record before them once the stages
    have handled them (compacted topics and the per-SID state get tombstones);
    ClickHouse: every row that holds it, and the rows of the same messages and calls,
    waited for; exports: the CSV rows that hold it. An audit row in `erasures` records
    the erasure without the number. Running it again removes nothing more."""
    from query.client import request_forget
    from switchboard.output import render

    settings = _settings()
    with _progress() as bar:
        tasks: dict[str, object] = {}

        def progress(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=total)
            bar.update(tasks[what], completed=done, total=total)  # type: ignore[arg-type]

        try:
            result = request_forget(settings, number, dry_run=dry_run, progress=progress)
        except SwitchboardError as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from None
    if output is Format.json:
        typer.echo(json.dumps(result, indent=2))
        return
    verb = "would remove" if dry_run else "removed"
    rows: list[dict[str, object]] = []
    for table, n in sorted(result["clickhouse"].items()):
        rows.append({"store": "ClickHouse", "where": table, verb: f"{n} rows"})
    for topic, t in sorted(result["kafka"].items()):
        what = f"{t['holding']} records held it"
        if t["tombstones"]:
            what += f"; {t['tombstones']} tombstones"
        elif not dry_run:
            what += f"; {t['deleted']} records deleted up to the last one"
        rows.append({"store": "Kafka", "where": topic, verb: what})
    for name, n in sorted(result["exports"].items()):
        rows.append({"store": "exports", "where": name, verb: f"{n} CSV rows"})
    if not rows:
        rows.append({"store": "-", "where": "-", verb: "nothing: the number is nowhere"})
    render(
        rows, "table", title=f"erasure {result['erasure_id']}: {verb} (the number is not logged)"
    )


@app.command()
def retention(
    output: Annotated[Format, typer.Option("--format", help="table, csv or json")] = Format.table,
) -> None:
    """What Switchboard keeps where, and for how long (as configured; the topics' own
    retention as the broker reports it when it answers)."""
    from contract.kafka import retention_ms, topic_retentions
    from contract.topics import Topic, topic_name
    from sinks.clickhouse.schema import RETENTION, TEXT_COLUMNS
    from switchboard.output import render

    settings = _settings()
    try:
        actual = topic_retentions(settings, list(Topic))
    except Exception:  # noqa: BLE001 - the broker is optional here
        actual = {}
    rows: list[dict[str, object]] = []
    for topic in Topic:
        wanted = retention_ms(settings, topic)
        kept = "latest per key (compacted)" if wanted is None else _duration(wanted / 1000)
        on_broker = actual.get(topic, "-") if topic in actual else "-"
        if isinstance(on_broker, int):
            on_broker = _duration(on_broker / 1000)
        rows.append({
            "store": "Kafka", "what": topic_name(topic, settings.topic_prefix),
            "kept": kept, "on the broker": on_broker or "unlimited",
        })  # fmt: skip
    for table, (column, setting) in RETENTION.items():
        days = getattr(settings, setting)
        texts = ", ".join(TEXT_COLUMNS.get(table, ()))
        kept = f"{days} days after {column}"
        if texts:
            kept += (
                f"; {texts}: not stored"
                if not settings.retention_texts_days
                else f"; {texts}: {settings.retention_texts_days} days"
            )
        rows.append({"store": "ClickHouse", "what": table, "kept": kept, "on the broker": ""})
    rows.append({
        "store": "files", "what": str(settings.exports_path),
        "kept": f"{settings.retention_exports_days} days", "on the broker": "",
    })  # fmt: skip
    numbers = "HMAC + last 4 digits" if settings.hash_numbers else "in clear"
    render(rows, output.value, title=f"retention (phone numbers in ClickHouse: {numbers})")


def _duration(seconds: float) -> str:
    if seconds % 86400 == 0:
        return f"{seconds / 86400:.0f} days"
    if seconds % 3600 == 0:
        return f"{seconds / 3600:.0f} hours"
    return f"{seconds:.0f} s"


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


@app.command()
def silence(
    scope: Annotated[
        str, typer.Argument(help="what to silence: campaign:NAME, number:+1555..., account:AC...")
    ],
    for_: Annotated[str, typer.Option("--for", help="how long: 2h, 30m, 1h30m, 1d")] = "2h",
    type_: Annotated[
        AlertTypeName | None, typer.Option("--type", help="only this alert type (default: all)")
    ] = None,
    comment: Annotated[str, typer.Option(help="why, for the next person")] = "",
) -> None:
    """Silence a scope's alerts for a while: they still go to the alerts topic and
    ClickHouse, marked silenced, but no SMS, webhook or Slack message is sent."""
    import time

    from contract.alerts import AlertType
    from contract.silences import Silence
    from switchboard import silences

    settings = _settings()
    made = Silence.new(
        scope,
        silences.duration_s(for_),
        time.time(),
        AlertType(type_.value) if type_ else None,
        comment,
    )
    silences.add(settings, made)
    console.print(f"{made.silence_id}: {scope} silenced until {_utc(made.ends_at)} UTC")


@app.command("silences")
def list_silences(
    output: Annotated[Format, typer.Option("--format", help="table, csv or json")] = Format.table,
) -> None:
    """List the silences in force or still to come."""
    import time

    from switchboard import silences
    from switchboard.output import render

    rows = [
        {
            "silence_id": s.silence_id,
            "scope": s.scope,
            "type": s.type.value if s.type else "all",
            "from": _utc(s.starts_at),
            "until": _utc(s.ends_at),
            "comment": s.comment,
        }
        for s in silences.active(_settings(), time.time())
    ]
    render(rows, output.value, title="silences")


@app.command()
def unsilence(silence_id: Annotated[str, typer.Argument(help="the id `silences` lists")]) -> None:
    """Remove a silence: the scope's alerts notify again from now on."""
    from switchboard import silences

    if not silences.remove(_settings(), silence_id):
        console.print(f"no silence {silence_id}")
        raise typer.Exit(1)
    console.print(f"{silence_id} removed")


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


Secure = Annotated[
    bool,
    typer.Option(
        help="SASL_SSL (PLAIN, SCRAM-SHA-256/512) with a CA of its own; data under "
        "SWITCHBOARD_DATA_DIR/kafka-secure, client settings written to its client.env"
    ),
]


Nodes = Annotated[
    int,
    typer.Option(
        min=1,
        help="nodes of one KRaft cluster, on ports PORT, PORT+1, ...; data under "
        "SWITCHBOARD_DATA_DIR/kafka-cluster (set SWITCHBOARD_TOPIC_REPLICATION=3 and "
        "SWITCHBOARD_TOPIC_MIN_INSYNC_REPLICAS=2 to use it as production would)",
    ),
]


def _broker_data(data: Path | None, secure: bool, nodes: int = 1) -> Path:
    # apart: SCRAM users are made when the storage is formatted, once; a cluster's nodes
    # are formatted with its id
    name = "kafka-secure" if secure else "kafka-cluster" if nodes > 1 else "kafka"
    return data or _settings().data_dir / name


@broker_app.command("start")
def broker_start(
    port: Annotated[int, typer.Option(help="Kafka listener port")] = 9092,
    data: Annotated[Path | None, typer.Option(help="broker data dir")] = None,
    secure: Secure = False,
    nodes: Nodes = 1,
) -> None:
    """Fetch Kafka's jars (once) and start a single-node KRaft broker on 127.0.0.1, or a
    cluster of `--nodes` brokers."""
    from switchboard.broker import LocalBroker, LocalCluster, kafka_version

    if nodes > 1:
        if secure:
            raise typer.BadParameter("--secure starts one broker; leave out --nodes")
        cluster = LocalCluster(_broker_data(data, secure, nodes), nodes=nodes, port=port)
        cluster.start()
        console.print(f"Kafka {kafka_version()} cluster of {len(cluster.nodes)} nodes")
        print(f"SWITCHBOARD_KAFKA_BOOTSTRAP={cluster.bootstrap}")
        print(f"SWITCHBOARD_TOPIC_REPLICATION={cluster.quorum.replicas}")
        print(f"SWITCHBOARD_TOPIC_MIN_INSYNC_REPLICAS={max(1, cluster.quorum.replicas - 1)}")
        return
    broker = LocalBroker(_broker_data(data, secure), port=port, secure=secure)
    broker.start()
    console.print(f"Kafka {kafka_version()} on {broker.bootstrap} (pid {broker.pid()})")
    if secure:
        env = broker.data_dir / "client.env"
        env.touch(mode=0o600)
        env.write_text("".join(f"{k}={v}\n" for k, v in broker.client_env().items()))
        console.print(f"SASL_SSL; client settings (with the password) in {env}: copy them to .env")


@broker_app.command("stop")
def broker_stop(
    data: Annotated[Path | None, typer.Option(help="broker data dir")] = None,
    secure: Annotated[bool, typer.Option(help="the one started with --secure")] = False,
    cluster: Annotated[bool, typer.Option(help="the cluster started with --nodes")] = False,
) -> None:
    """Stop the broker (or cluster) started by `switchboard broker start`."""
    from switchboard.broker import LocalBroker, LocalCluster

    if cluster:
        where = _broker_data(data, secure, nodes=2)
        if not (where / "cluster.json").exists():
            raise typer.BadParameter(f"no cluster was started with its data in {where}")
        LocalCluster(where).stop()
    else:
        LocalBroker(_broker_data(data, secure)).stop()
    console.print("Kafka stopped")


@broker_app.command("fetch")
def broker_fetch() -> None:
    """Fetch Kafka's jars with Maven into kafka/libs (no broker started)."""
    from switchboard.broker import fetch_jars, kafka_version

    fetch_jars()
    console.print(f"Kafka {kafka_version()} jars ready")


def main() -> None:
    stop_cleanly_while_starting()
    logs.configure()
    try:
        app()
    except SwitchboardError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise SystemExit(2) from None


@app.command(
    help="Send a realistic campaign to an edge and write the ground truth it must report.\n\n"
    "Messages go queued, sending, sent, then delivered, undelivered or failed (with realistic "
    "error codes); MMS stop at sent; calls send progress events with durations and MOS; "
    "completed calls leave recordings and transcriptions; inbound calls end completed or "
    "failed. Provider retries and late callbacks are injected at the given rates. The alert "
    "thresholds in the truth are the configured ones (SWITCHBOARD_*)."
)
def simulate(
    url: Annotated[
        str | None, typer.Argument(help="the edge's base URL (default: the configured edge)")
    ] = None,
    callbacks: Annotated[int, typer.Option(help="callbacks to send, duplicates included")] = 10_000,
    seed: Annotated[int, typer.Option(help="same seed, same callbacks")] = 0,
    rate: Annotated[float, typer.Option(help="callbacks per second; 0 runs open loop")] = 0.0,
    concurrency: Annotated[int, typer.Option(help="requests in flight at most")] = 64,
    duplicates: Annotated[
        float, typer.Option(help="share of callbacks the provider retries")
    ] = 0.0,
    reorder: Annotated[float, typer.Option(help="share of callbacks that arrive late")] = 0.0,
    unreadable: Annotated[
        float,
        typer.Option(
            help="share of callbacks with one typed value that is not one (AudioInMos N/A, "
            "a Timestamp of a 13th month, a CallDuration of 12s); the truth counts without them"
        ),
    ] = 0.0,
    drop_final: Annotated[
        float,
        typer.Option(
            help="percent of messages' and calls' final callbacks the provider never delivers "
            "(the truth keeps them: `switchboard reconcile` must restore them)",
            min=0,
            max=100,
        ),
    ] = 0.0,
    campaign: Annotated[
        list[str] | None, typer.Option(help="campaign tag (repeat for several)")
    ] = None,
    sequential: Annotated[bool, typer.Option(help="campaigns one after another")] = False,
    sms: Annotated[float, typer.Option(help="share of messages among entities")] = 0.80,
    voice: Annotated[float, typer.Option(help="share of outbound calls among entities")] = 0.10,
    inbound: Annotated[float, typer.Option(help="share of inbound calls among entities")] = 0.10,
    mms: Annotated[float, typer.Option(help="share of messages that are MMS")] = 0.05,
    delivered: Annotated[float, typer.Option(help="SMS outcome mix: delivered")] = 0.86,
    undelivered: Annotated[float, typer.Option(help="SMS outcome mix: undelivered")] = 0.05,
    failed: Annotated[float, typer.Option(help="SMS outcome mix: failed")] = 0.03,
    no_receipt: Annotated[
        float, typer.Option(help="SMS outcome mix: carrier sends no receipt (stays sent)")
    ] = 0.06,
    signing_key: Annotated[
        str | None, typer.Option(help="sign requests with this key (default: the edge's key)")
    ] = None,
    sign: Annotated[bool, typer.Option(help="sign requests when a key is known")] = True,
    public_url: Annotated[
        str | None, typer.Option(help="base URL to sign against (default: the edge's)")
    ] = None,
    truth: Annotated[Path, typer.Option(help="where to write the ground truth (JSON)")] = Path(
        "simulate-truth.json"
    ),
    callback_format: Annotated[
        SimFormat,
        typer.Option(
            "--format",
            help="the providers' format: compat (Compatibility form posts), signalwire-json "
            "(REST messaging JSON, SWML record events, Compatibility JSON), event-streams "
            "(Twilio Event Streams for messages, form posts otherwise), or mix (each SID in "
            "one of them); the ground truth is the same",
        ),
    ] = SimFormat.COMPAT,
    dry_run: Annotated[bool, typer.Option(help="write the ground truth, send nothing")] = False,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    import json

    from simulate.alerts import Thresholds
    from simulate.campaign import Scenario, SmsMix, generate
    from simulate.sender import Signer, edge_targets, send
    from switchboard.output import render

    settings = _settings()
    scenario = Scenario(
        callbacks=callbacks,
        seed=seed,
        campaigns=tuple(campaign or Scenario().campaigns),
        sequential_campaigns=sequential,
        sms_share=sms,
        voice_share=voice,
        inbound_share=inbound,
        mms_rate=mms,
        sms_mix=SmsMix(delivered, undelivered, failed, no_receipt),
        duplicate_rate=duplicates,
        reorder_rate=reorder,
        unreadable_rate=unreadable,
        drop_final_rate=drop_final / 100,
    )
    traffic = generate(scenario, Thresholds.from_settings(settings))
    truth.parent.mkdir(parents=True, exist_ok=True)
    truth.write_text(json.dumps(traffic.truth.to_json(), indent=2) + "\n")
    console.print(f"ground truth of {callbacks} callbacks (seed {seed}) written to {truth}")
    if traffic.truth.withheld:
        console.print(f"final callbacks withheld (--drop-final): {traffic.truth.withheld}")
    if dry_run:
        return
    key = signing_key or (
        settings.signing_key.get_secret_value() if settings.signing_key is not None else None
    )
    signer = Signer(key, public_url or settings.public_url) if key and sign else None
    base = url or f"http://{settings.ingest_host}:{settings.ingest_port}"
    report = send(
        traffic.callbacks,
        edge_targets(base),
        rate=rate or None,
        concurrency=concurrency,
        signer=signer,
        progress=progress,
        fmt=callback_format,
    )
    render(
        [
            {"status": status or "no answer", "callbacks": n}
            for status, n in report.statuses.items()
        ],
        "table",
        title=f"{report.callbacks} callbacks to {base} in {report.elapsed_s:.1f} s "
        f"({report.per_s:,.0f}/s, {callback_format}, {'signed' if signer else 'unsigned'})",
    )
    if not report.all_acknowledged:
        console.print(
            f"[red]{report.callbacks - report.acknowledged} callbacks were not acknowledged[/red]"
        )
        raise typer.Exit(1)
