"""`switchboard tail`: the live status-change stream, like the seed apps' console log.

It reads the `events` topic from its end (assigned partitions, no consumer group to
join or commit), prints one coloured line per real status change (a repeat or a
late, lower-ranked callback is not a change), and keeps the failed table updating
below the stream.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict, deque
from datetime import UTC, datetime

from confluent_kafka import Consumer, KafkaError, TopicPartition
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from contract.error_codes import meaning
from contract.errors import BadCallback, ServiceUnavailable
from contract.events import Event
from contract.kafka import consumer_config, wait_for_kafka
from contract.settings import Settings
from contract.statuses import advances
from contract.topics import Topic, topic_name

FAILED = frozenset({"failed", "undelivered"})
GOOD = frozenset({"delivered", "completed", "received", "read"})
ENDED_OTHERWISE = frozenset({"busy", "no-answer", "canceled", "absent"})


def status_style(status: str) -> str:
    if status in FAILED:
        return "bold red"
    if status in GOOD:
        return "green"
    if status in ENDED_OTHERWISE:
        return "yellow"
    return "cyan"


class TailView:
    """What `tail` shows: a line per status change, and the latest failures."""

    def __init__(self, *, failed_rows: int = 15, remembered_sids: int = 200_000) -> None:
        self._last: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._remembered = remembered_sids
        self.failed: deque[Event] = deque(maxlen=failed_rows)
        self.failed_total = 0
        self.changes = 0

    def accept(self, event: Event) -> Text | None:
        """The line for this event if it changes its SID's status, else None."""
        status = event.status or ""
        key = (event.kind.value, event.sid)
        previous = self._last.get(key)
        if not advances(event.kind.spec.ranks, previous, status):
            return None
        self._last[key] = status
        self._last.move_to_end(key)
        if len(self._last) > self._remembered:
            self._last.popitem(last=False)
        self.changes += 1
        if status in FAILED:
            self.failed.append(event)
            self.failed_total += 1
        return self.line(event)

    @staticmethod
    def line(event: Event) -> Text:
        status = event.status or "-"
        code = event.get("error_code")
        when = datetime.fromtimestamp(event.received_at, UTC).strftime("%H:%M:%S")
        text = Text.assemble(
            (when, "dim"),
            "  ",
            (f"{event.kind.value:<13}", "magenta"),
            f" SID: {event.sid}  Status: ",
            (f"{status:<11}", status_style(status)),
        )
        if code:
            text.append("  ErrorCode: ")
            text.append(str(code), "bold red")
            text.append(f" ({meaning(code)})", "red")
        duration, mos = event.get("call_duration"), event.get("audio_in_mos")
        if duration is not None:
            text.append(f"  duration: {duration} s")
        if mos is not None:
            text.append(f"  MOS: {mos:.2f}", "green" if mos >= 3.5 else "yellow")
        if event.campaign:
            text.append(f"  campaign: {event.campaign}", "dim")
        return text

    def failed_table(self) -> Table:
        table = Table(
            title=f"Failed and undelivered: {self.failed_total}"
            + (f" (latest {len(self.failed)})" if self.failed_total > len(self.failed) else ""),
            title_style="bold red",
            expand=False,
        )
        for column in ("Kind", "SID", "Status", "Error Code", "Meaning", "To", "From", "Campaign"):
            table.add_column(column)
        for event in self.failed:
            code = event.get("error_code")
            table.add_row(
                event.kind.value,
                event.sid,
                Text(event.status or "", "bold red"),
                str(code or ""),
                meaning(code),
                str(event.get("to") or ""),
                str(event.get("from") or ""),
                event.campaign,
            )
        return table


def _consumer_at_end(settings: Settings) -> Consumer:
    topic = topic_name(Topic.EVENTS, settings.topic_prefix)
    consumer = Consumer(
        consumer_config(settings, f"switchboard-tail-{uuid.uuid4().hex[:12]}")
        | {"enable.partition.eof": False}
    )
    metadata = consumer.list_topics(topic, timeout=10)
    partitions = metadata.topics[topic].partitions if topic in metadata.topics else {}
    if not partitions:
        consumer.close()
        raise ServiceUnavailable(f"topic {topic} does not exist yet: start the pipeline first")
    # The end offsets now, rather than OFFSET_END: assign() resolves that lazily, and
    # what arrives between "tailing" and that resolution would be skipped.
    ends = [
        consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions
    ]
    consumer.assign(
        [TopicPartition(topic, p, end) for p, end in zip(partitions, ends, strict=True)]
    )
    return consumer


def run_tail(
    settings: Settings, console: Console, *, stop: threading.Event | None = None
) -> TailView:
    """Stream until `stop` is set (or Ctrl-C); returns the view, for its counts."""
    stop = stop or threading.Event()
    wait_for_kafka(settings, attempts=5)
    consumer = _consumer_at_end(settings)
    view = TailView()
    topic = topic_name(Topic.EVENTS, settings.topic_prefix)
    console.print(f"[bold]tailing {topic}[/bold] from its end on {settings.kafka_bootstrap}")
    try:
        with Live(
            Group(view.failed_table()), console=console, refresh_per_second=8, transient=False
        ) as live:
            while not stop.is_set():
                changed = False
                for msg in consumer.consume(num_messages=500, timeout=0.2):
                    err = msg.error()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:
                            console.print(f"[yellow]consumer: {err}[/yellow]")
                        continue
                    try:
                        event = Event.from_bytes(msg.value() or b"")
                    except BadCallback as exc:
                        console.print(f"[yellow]unreadable event skipped: {exc}[/yellow]")
                        continue
                    line = view.accept(event)
                    if line is not None:
                        live.console.print(line)
                        changed = True
                if changed:
                    live.update(Group(view.failed_table()))
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    console.print(
        f"[dim]{view.changes} status changes, {view.failed_total} failed or undelivered[/dim]"
    )
    return view
