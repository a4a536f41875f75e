"""Scripted traffic with known ground truth, and reading what the processors published.

`campaign_traffic` is two SMS campaigns with a chosen mix of outcomes, some callbacks
duplicated (provider retries) and some messages' callbacks out of order. Every
callback falls in one minute (the last whole one), so every window that holds that
minute has the same figures, which `expected_windows` computes from the outcomes.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from jsonschema import Draft202012Validator

from contract.envelope import Envelope
from contract.kafka import client_config
from contract.published import BY_TOPIC, record_schema
from contract.settings import Settings
from contract.topics import Topic, topic_name
from processors.windows import WindowPlan
from tests.callbacks import ACCOUNT, sms
from tests.harness import wait_for

# outcome -> the statuses its callbacks carry, in the provider's order
SEQUENCES = {
    "delivered": ("queued", "sent", "delivered"),
    "undelivered": ("queued", "sent", "undelivered"),
    "failed": ("queued", "failed"),
    "mms": ("queued", "sent"),
    "no_receipt": ("queued", "sent"),
}


@dataclass(frozen=True)
class Sms:
    sid: str
    campaign: str
    number: str
    outcome: str


@dataclass
class Traffic:
    bucket: int  # the minute every callback falls in
    messages: list[Sms]
    envelopes: list[Envelope]  # in the order they are produced
    shuffled: int = 0
    duplicated: int = 0
    final: dict[str, str] = field(default_factory=dict)  # sid -> final status


def last_whole_minute() -> int:
    return (math.floor(time.time() / 60) - 1) * 60


def campaign_traffic(
    mix: dict[str, dict[str, int]],
    numbers: Mapping[str, tuple[str, ...]],
    *,
    seed: int = 7,
    duplicate_share: float = 0.1,
    reorder_share: float = 0.1,
) -> Traffic:
    """`mix`: campaign -> outcome -> messages; `numbers`: campaign -> From numbers (round robin)."""
    rng = random.Random(seed)
    bucket = last_whole_minute()
    messages: list[Sms] = []
    for campaign, outcomes in mix.items():
        pool = numbers[campaign]
        n = 0
        for outcome, count in outcomes.items():
            for _ in range(count):
                sid = f"SM{campaign[:4]}{len(messages):028d}"
                messages.append(Sms(sid, campaign, pool[n % len(pool)], outcome))
                n += 1
    rng.shuffle(messages)
    traffic = Traffic(bucket, messages, [])
    streams: list[list[Envelope]] = []
    for i, m in enumerate(messages):
        media = 1 if m.outcome == "mms" else 0
        statuses = list(SEQUENCES[m.outcome])
        traffic.final[m.sid] = statuses[-1]
        if i % round(1 / reorder_share) == 0:
            statuses.reverse()  # the final status first: late `sent`, late `queued`
            traffic.shuffled += 1
        if i % round(1 / duplicate_share) == 1:
            statuses.insert(rng.randrange(1, len(statuses) + 1), rng.choice(statuses))
            traffic.duplicated += 1
        error = {"undelivered": "30003", "failed": "30008"}.get(m.outcome, "")
        streams.append(
            [
                sms(
                    m.sid,
                    status,
                    at=bucket + rng.uniform(0, 55),
                    campaign=m.campaign,
                    from_=m.number,
                    media=media,
                    error=error if status == statuses[-1] else "",
                )
                for status in statuses
            ]
        )
    # interleave the messages, keeping each message's own order
    slots = [(rng.random(), i) for i, s in enumerate(streams) for _ in s]
    slots.sort()
    cursors = [0] * len(streams)
    for _, i in slots:
        traffic.envelopes.append(streams[i][cursors[i]])
        cursors[i] += 1
    return traffic


def expected_figures(traffic: Traffic) -> dict[str, dict[str, float | None]]:
    """Scope -> the ground-truth figures of every window that holds the traffic's minute."""
    by_scope: dict[str, Counter[str]] = {}
    for m in traffic.messages:
        for scope in (f"account:{ACCOUNT}", f"number:{m.number}", f"campaign:{m.campaign}"):
            by_scope.setdefault(scope, Counter())[m.outcome] += 1
    figures = {}
    for scope, c in by_scope.items():
        receipts = c["delivered"] + c["undelivered"] + c["failed"]
        figures[scope] = {
            "sent": sum(c.values()) - c["failed"],
            "delivered": c["delivered"],
            "undelivered": c["undelivered"],
            "failed": c["failed"],
            "unconfirmed": c["mms"] + c["no_receipt"],
            "delivery_rate": c["delivered"] / receipts if receipts else None,
        }
    return figures


def expected_window_keys(bucket: int, plan: WindowPlan) -> set[tuple[int, float]]:
    return {
        (spec.size_s, float(start))
        for spec, starts in plan.windows_containing({bucket})
        for start in starts
    }


def produce(settings: Settings, envelopes: list[Envelope]) -> None:
    producer = Producer(client_config(settings) | {"linger.ms": 5})
    for env in envelopes:
        topic = topic_name(env.kind.spec.raw_topic, settings.topic_prefix)
        producer.produce(topic, key=env.sid.encode(), value=env.to_bytes())
        producer.poll(0)
    assert producer.flush(30) == 0


def read_all(settings: Settings, topic: Topic) -> list[Message]:
    """Every record on the topic now, partition by partition in offset order."""
    name = topic_name(topic, settings.topic_prefix)
    consumer = Consumer(
        client_config(settings)
        | {
            "group.id": f"test-reader-{time.monotonic_ns()}",
            "enable.auto.commit": False,
        }
    )
    records: list[Message] = []
    try:
        partitions = consumer.list_topics(name, timeout=10).topics[name].partitions
        ends = {}
        for p in partitions:
            low, high = wait_for(
                partial(_watermarks, consumer, TopicPartition(name, p)),
                timeout=30,
                what=f"the end of {name} [{p}]",
            )
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(name, p, 0) for p in ends])
        deadline = time.monotonic() + 30
        while ends and time.monotonic() < deadline:
            for m in consumer.consume(1000, 0.5):
                if m.error() is None:
                    records.append(m)
                    if _offset(m) + 1 >= ends.get(m.partition(), math.inf):
                        del ends[m.partition()]
        assert not ends, f"could not read {name} to its end"
    finally:
        consumer.close()
    records.sort(key=lambda m: (m.partition(), m.offset()))
    return records


def value(m: Message) -> bytes:
    """A record's value: no topic read here has tombstones."""
    v = m.value()
    assert v is not None, f"a record without a value at offset {m.offset()}"
    return v


def _offset(m: Message) -> int:
    offset = m.offset()
    assert offset is not None, "a consumed record has an offset"
    return offset


def _watermarks(consumer: Consumer, tp: TopicPartition) -> tuple[int, int] | None:
    try:
        return consumer.get_watermark_offsets(tp, timeout=10)
    except KafkaException:  # e.g. the leader of a new topic is still being elected
        return None


def latest_by(records: list[Message], key: Any) -> dict[Any, Any]:
    """The last record for each key (records of one key share a partition, so offset order)."""
    latest: dict[Any, Any] = {}
    for m in records:
        latest[key(m)] = m
    return latest


def assert_published(settings: Settings, topic: Topic) -> int:
    """Every record on a published topic matches its schema in the published document
    (`contract/published.py`); how many there were (at least one)."""
    validator = Draft202012Validator(record_schema(BY_TOPIC[topic]))
    records = read_all(settings, topic)
    assert records, f"nothing on {topic} to check"
    for m in records:
        problems = [e.message for e in validator.iter_errors(orjson.loads(value(m)))]
        assert not problems, f"a record on {topic} does not match its schema: {problems}"
    return len(records)
