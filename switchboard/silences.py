"""`switchboard silence`, `silences` and `unsilence`: records on the alerts.silences topic."""

from __future__ import annotations

import re

from confluent_kafka import Producer

from contract.errors import ConfigurationError
from contract.kafka import ensure_topics, producer_config
from contract.settings import Settings
from contract.silences import Silence
from contract.topics import Topic, topic_name
from processors.silences import load

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_s(text: str) -> int:
    """`90s`, `30m`, `2h`, `1d`, or a combination such as `1h30m`."""
    parts = re.findall(r"(\d+)([smhd])", text.strip().lower())
    if not parts or "".join(n + u for n, u in parts) != text.strip().lower():
        raise ConfigurationError(f"not a duration: {text!r} (for example 2h, 30m, 1h30m)")
    return sum(int(n) * _UNITS[u] for n, u in parts)


def _write(settings: Settings, key: str, value: bytes | None) -> None:
    ensure_topics(settings, [Topic.SILENCES])
    producer = Producer(producer_config(settings))
    producer.produce(topic_name(Topic.SILENCES, settings.topic_prefix), key=key, value=value)
    if producer.flush(30):
        raise ConfigurationError(f"Kafka at {settings.kafka_bootstrap} did not take the silence")


def add(settings: Settings, silence: Silence) -> None:
    _write(settings, silence.silence_id, silence.to_bytes())


def remove(settings: Settings, silence_id: str) -> bool:
    """False if no such silence is on record."""
    if silence_id not in load(settings).by_id:
        return False
    _write(settings, silence_id, None)  # a tombstone: compaction forgets the silence
    return True


def active(settings: Settings, now: float) -> list[Silence]:
    ensure_topics(settings, [Topic.SILENCES])
    return load(settings).active(now)
