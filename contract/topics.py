"""Every Kafka topic Switchboard uses, named once.

`Topic.X.value` is the logical name; `topic_name(Topic.X, prefix)` is the name on
the cluster, so two deployments can share one cluster with different prefixes.
"""

from __future__ import annotations

from enum import StrEnum


class Topic(StrEnum):
    # raw callbacks, exactly as the edge received them, keyed by the kind's SID
    CALLBACKS_SMS = "callbacks.sms"
    CALLBACKS_VOICE = "callbacks.voice"
    CALLBACKS_RECORDING = "callbacks.recording"
    CALLBACKS_TRANSCRIPTION = "callbacks.transcription"
    CALLBACKS_INBOUND_CALL = "callbacks.inbound-call"
    # raw callbacks that could not be normalized, with the reason
    CALLBACKS_DEAD_LETTER = "callbacks.dead-letter"
    # normalized events, one per callback, keyed by SID; the ClickHouse writer reads these
    EVENTS = "events"
    # rolling window figures per scope
    METRICS_DELIVERY = "metrics.delivery"
    METRICS_CALLS = "metrics.calls"
    # alerts for any subscriber
    ALERTS = "alerts"
    # silences of alerts (compacted, keyed by silence id; a tombstone removes one)
    SILENCES = "alerts.silences"
    # SMS to send (recording and transcription forwards), keyed by the forward id
    FORWARDS = "forwards"
    FORWARDS_DEAD_LETTER = "forwards.dead-letter"
    # internal to the processors: per-SID state changelog (compacted; one record per real
    # status change, keyed by kind prefix + SID), and window increments partitioned by scope
    SID_STATE = "processors.sid-state"
    TRANSITIONS = "processors.transitions"
    # internal to reconcile/: when each stuck SID was last fetched from the REST API
    # (compacted; keyed and partitioned as processors.sid-state), so a restart does not
    # fetch them all again
    RECONCILE_CHECKS = "reconcile.checks"


def topic_name(topic: Topic, prefix: str = "") -> str:
    return f"{prefix}{topic.value}"
