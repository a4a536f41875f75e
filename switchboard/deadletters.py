"""`switchboard dead-letters replay`: dead letters sent back where they came from.

Each letter's original record is produced again, byte for byte, to its original topic
and partition with its key (a callback keeps its receipt time and SID, and lands where
its SID's state lives), with a header naming the letter (`REPLAY_HEADER`). It then goes
through the same consumer as the first time: a callback through the intake, a forward
request through the forwards dispatcher, an alert through the alert dispatch. What
succeeds counts once however often it is replayed (the per-SID state and ClickHouse's
keys take a repeated callback as a duplicate; the forwards table a sent SMS); what
fails again is the same letter again (`contract.deadletters.letter_id`), dead once more.

Once Kafka has acknowledged a page of replayed records, a marker per letter (state
`replayed`, at the time the replay started) goes to the letter's dead-letter topic, so
that the sink records the letter as replayed; a record dead-lettered again after that
is later, and the letter is dead again. A replay cut short leaves the letters it did
not mark dead: run it again.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from contract.deadletters import REPLAY_HEADER, DeadLetter, dead_letter_topic
from contract.errors import SwitchboardError
from contract.kafka import producer_config
from contract.settings import Settings
from contract.topics import Topic, topic_name
from query.client import fetch_letters
from query.deadletters import LetterFilter

logger = logging.getLogger(__name__)

PAGE = 1000  # letters per request, and per flush


def pages(settings: Settings, wanted: LetterFilter) -> Iterator[list[DeadLetter]]:
    """Every letter `wanted` selects, by letter id, a page at a time."""
    after = ""
    while True:
        page = fetch_letters(settings, dataclasses.replace(wanted, after=after, limit=PAGE))
        if not page:
            return
        yield page
        after = page[-1].letter_id


def replay(
    settings: Settings,
    wanted: LetterFilter,
    *,
    dry_run: bool = False,
    progress: Callable[[int], None] = lambda _: None,
) -> Counter[tuple[str, str]]:
    """Replays the letters `wanted` selects; how many, by (reason, topic). `dry_run`:
    only counts them."""
    counted: Counter[tuple[str, str]] = Counter()
    producer = None if dry_run else Producer(producer_config(settings))
    started = time.time()
    for page in pages(settings, wanted):
        if producer is not None:
            _send(producer, [_replayed_record(settings, letter) for letter in page])
            _send(producer, [_marker(settings, letter.replayed(started)) for letter in page])
        for letter in page:
            counted[(letter.reason, letter.topic)] += 1
            logger.info(
                "%s dead letter %s (%s) sid=%s to %s[%d]",
                "would replay" if dry_run else "replayed",
                letter.letter_id,
                letter.reason,
                letter.sid or "-",
                letter.topic,
                letter.partition,
            )
        progress(sum(counted.values()))
    return counted


def _replayed_record(settings: Settings, letter: DeadLetter) -> dict[str, Any]:
    try:
        topic = Topic(letter.topic)
    except ValueError:
        raise SwitchboardError(
            f"dead letter {letter.letter_id} came from {letter.topic!r}, which this version "
            "of Switchboard does not know; not replayed"
        ) from None
    record: dict[str, Any] = {
        "topic": topic_name(topic, settings.topic_prefix),
        "key": letter.key.encode() if letter.key is not None else None,
        "value": letter.body(),
        "headers": [(REPLAY_HEADER, letter.letter_id.encode())],
    }
    if letter.partition >= 0:  # where it was read: a callback's SID keeps its state there
        record["partition"] = letter.partition
    return record


def _marker(settings: Settings, letter: DeadLetter) -> dict[str, Any]:
    return {
        "topic": topic_name(dead_letter_topic(letter.stage), settings.topic_prefix),
        "key": letter.letter_id.encode(),
        "value": letter.to_bytes(),
    }


def _send(producer: Producer, records: list[dict[str, Any]]) -> None:
    """Produce `records` and wait until Kafka acknowledged every one; raise otherwise."""
    failed: list[KafkaError] = []

    def delivered(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            failed.append(error)

    for record in records:
        while True:
            try:
                producer.produce(**record, on_delivery=delivered)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.05)
    left = producer.flush(60)
    if left or failed:
        raise SwitchboardError(
            f"Kafka did not acknowledge {left + len(failed)} of {len(records)} records "
            f"({failed[0] if failed else 'timed out'}); the letters not marked replayed are "
            "still dead: run the replay again"
        )
