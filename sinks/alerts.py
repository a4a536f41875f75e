"""Alert dispatch, as in the seed's call tracker: each firing alert on `alerts` becomes
a CSV report of the failures in its window, written to the exports directory with the
alert's id in the file name, and one SMS to SWITCHBOARD_ALERT_TO (a resolved one, an
SMS of `alert_resolved_template`). The webhook and Slack channels are consumers of
their own (`alert_channel_consumer`), so a receiver that is down delays only its
channel. Each channel sends each notification once: by its `forward_id` (the
alert_id, plus the channel's suffix), recorded in `forwards` like any SMS. A
silenced notification is sent to no channel.

The SMS goes through the forwards dispatcher with the alert_id as its forward_id, so a
re-delivered or replayed alert sends nothing twice; the report is written once per id.
The processors raise an alert as the failures stream in, possibly before the event
writer's latest batch is in ClickHouse, so the report waits (a bounded time) until
ClickHouse holds as many rows as the alert counted.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import orjson
from confluent_kafka import Message, Producer
from prometheus_client import Counter

from contract.alerts import Alert, AlertState, ScopeType
from contract.deadletters import Reason, Stage
from contract.forwards import ForwardKind, ForwardRequest
from contract.kafka import sink_consumer_config
from contract.privacy import masked_scope
from contract.settings import Settings
from contract.topics import Topic, topic_name
from runtime.consumer import ConsumerRuntime
from runtime.strategies import Wait, describe, per_record
from sinks import webhooks
from sinks.clickhouse.failures import ALERT_REPORTS, in_window, write_csv
from sinks.clickhouse.store import Store
from sinks.signalwire.dispatch import Dispatcher

logger = logging.getLogger(__name__)

REPORTS = Counter(
    "switchboard_sink_alert_reports_total", "Alert CSV reports written", ["type", "complete"]
)


def report_path(settings: Settings, alert: Alert) -> Path:
    return settings.exports_path / f"alert-{alert.type.value}-{alert.alert_id}.csv"


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


class AlertDispatch:
    def __init__(self, settings: Settings, store: Store, producer: Producer) -> None:
        self.settings = settings
        self.store = store
        self.dispatcher = Dispatcher(settings, store, producer, Stage.ALERT_DISPATCH)
        if not (settings.alert_to and settings.forward_from):
            logger.warning(
                "SWITCHBOARD_ALERT_TO or SWITCHBOARD_FORWARD_FROM unset: alerts get CSV "
                "reports but no SMS"
            )

    def handle(self, msg: Message, wait: Wait) -> bool:
        alert = read_alert(msg)
        if isinstance(alert, str):  # this consumer dead-letters it; the channels skip it
            return self.dispatcher.dead_letter_record(msg, alert, wait, Reason.UNREADABLE_RECORD)
        report = ""
        if alert.state is AlertState.FIRING:
            path = self.write_report(alert, wait)
            if path is None:
                return False
            report = path.name
        if alert.silenced:
            logger.info("alert %s is silenced: no SMS", alert.alert_id)
            return True
        account = alert_account(alert)
        settings = self.settings.for_account(account)
        if not (settings.alert_to and settings.forward_from):
            return True
        request = ForwardRequest(
            forward_id=alert.alert_id,
            kind=ForwardKind.ALERT,
            to=settings.alert_to,
            from_=settings.forward_from,
            body=text(settings, alert, report),
            call_sid=None,
            requested_at=alert.raised_at,
            account=account,
        )
        return self.dispatcher.dispatch(request, wait, source=msg) is not None

    def write_report(self, alert: Alert, wait: Wait) -> Path | None:
        """The alert's CSV (written once per alert id); None if stopping first."""
        path = report_path(self.settings, alert)
        if path.exists():
            logger.info("alert %s: report %s already written", alert.alert_id, path.name)
            return path
        report = ALERT_REPORTS[alert.type]
        deadline = time.monotonic() + self.settings.alert_report_wait_s
        backoff = self.settings.rest_retry_base_s
        while True:
            try:
                rows = in_window(
                    self.store,
                    report,
                    scope=alert.scope,
                    start=alert.window_start,
                    end=alert.window_end,
                )
            except Exception as exc:  # noqa: BLE001 - ClickHouse down: wait, keep the offset
                logger.error("alert %s: report query failed (%s)", alert.alert_id, exc)
                rows = None
            if rows is not None and (len(rows) >= alert.count or time.monotonic() >= deadline):
                break
            if not wait(min(backoff, max(0.1, deadline - time.monotonic()))):
                return None
            backoff = min(backoff * 2, 2.0)
        write_csv(path, report, rows)
        complete = len(rows) >= alert.count
        REPORTS.labels(alert.type.value, str(complete).lower()).inc()
        log = logger.info if complete else logger.warning
        log(
            "alert %s (%s %s): wrote %s with %d rows for a count of %d",
            alert.alert_id,
            alert.type.value,
            masked_scope(alert.scope),
            path,
            len(rows),
            alert.count,
        )
        return path


def alert_account(alert: Alert) -> str | None:
    """The account an account-scoped alert is about: its SMS goes to that account's
    SWITCHBOARD_ACCOUNTS alert_to, sent with its credentials; other scopes (a campaign, a
    number) belong to no one account and go to the default."""
    scope_type, _, value = alert.scope.partition(":")
    return value if scope_type == ScopeType.ACCOUNT else None


def text(settings: Settings, alert: Alert, report: str = "") -> str:
    """The notification's words: SMS and Slack."""
    template = (
        settings.alert_template
        if alert.state is AlertState.FIRING
        else settings.alert_resolved_template
    )
    return template.format(
        type=alert.type.value,
        scope=alert.scope,
        value=alert.value,
        threshold=alert.threshold,
        count=alert.count,
        window_start=_utc(alert.window_start),
        window_end=_utc(alert.window_end),
        report=report or "-",
    )


def read_alert(msg: Message) -> Alert | str:
    """The alert of a record, or what is wrong with it (logged)."""
    try:
        return Alert.from_bytes(msg.value() or b"")
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        key = (msg.key() or b"-").decode(errors="replace")
        logger.error("unreadable alert %s at %s: %s", key, describe(msg), exc)
        return f"unreadable alert: {exc}"


class Channel(StrEnum):
    WEBHOOK = "webhook"
    SLACK = "slack"


class ChannelDispatch:
    """One HTTP channel: each notification POSTed once, recorded in `forwards`."""

    def __init__(
        self, settings: Settings, store: Store, producer: Producer, channel: Channel
    ) -> None:
        self.settings = settings
        self.channel = channel
        self.dispatcher = Dispatcher(settings, store, producer, Stage.ALERT_DISPATCH)

    def handle(self, msg: Message, wait: Wait) -> bool:
        alert = read_alert(msg)
        if isinstance(alert, str) or alert.silenced:
            return True  # an unreadable one is the alert dispatch's to dead-letter
        s = self.settings
        if self.channel is Channel.WEBHOOK:
            assert s.alert_webhook_url is not None  # the consumer runs only when it is set
            url, to = s.alert_webhook_url, s.alert_webhook_url
            secret = s.alert_webhook_secret.get_secret_value() if s.alert_webhook_secret else None
            body = alert.to_bytes()
            kind = ForwardKind.ALERT_WEBHOOK
        else:
            assert s.alert_slack_url is not None
            url, to, secret = s.alert_slack_url.get_secret_value(), "slack", None  # a secret URL
            body = orjson.dumps({"text": text(s, alert)})
            kind = ForwardKind.ALERT_SLACK
        request = ForwardRequest(
            forward_id=f"{alert.alert_id}-{self.channel.value}",
            kind=kind,
            to=to,
            from_="switchboard",
            body=body.decode(),
            call_sid=None,
            requested_at=alert.raised_at,
        )
        sent = self.dispatcher.dispatch(
            request,
            wait,
            send=lambda: webhooks.post(url, body, msg_id=alert.alert_id, secret=secret),
            source=msg,
        )
        return sent is not None


def alert_channel_consumer(
    settings: Settings, store: Store, producer: Producer, channel: Channel, *, group: str
) -> ConsumerRuntime:
    dispatch = ChannelDispatch(settings, store, producer, channel)
    return per_record(
        settings,
        name=f"alert-{channel.value}",
        group=group,
        topic=topic_name(Topic.ALERTS, settings.topic_prefix),
        handler=dispatch.handle,
        dead_letter=dispatch.dispatcher.dead_letter_record,
        config=sink_consumer_config(settings),
    )


def alert_dispatch_consumer(
    settings: Settings, store: Store, producer: Producer, *, group: str
) -> ConsumerRuntime:
    dispatch = AlertDispatch(settings, store, producer)
    return per_record(
        settings,
        name=Stage.ALERT_DISPATCH,
        group=group,
        topic=topic_name(Topic.ALERTS, settings.topic_prefix),
        handler=dispatch.handle,
        dead_letter=dispatch.dispatcher.dead_letter_record,
        config=sink_consumer_config(settings),
    )
