"""Start-up reads ride out Kafka's passing errors (a topic created a moment ago has no
leader yet) and give up at once on the others."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from processors import replay


def test_a_passing_error_is_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("processors.replay.time.sleep", lambda _s: None)
    answers: list[object] = [
        KafkaException(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION)),
        KafkaException(KafkaError(KafkaError.LEADER_NOT_AVAILABLE)),
        (0, 42),
    ]
    calls = []

    def call() -> object:
        calls.append(1)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert replay._retried(call, "test") == (0, 42)
    assert len(calls) == 3


def test_any_other_error_is_raised_at_once() -> None:
    calls = []

    def call() -> None:
        calls.append(1)
        raise KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))

    with pytest.raises(KafkaException):
        replay._retried(call, "test")
    assert len(calls) == 1
