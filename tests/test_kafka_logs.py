"""librdkafka's repeated lines (a broker down: a reconnect failure 20 times a second)
reach the log once per client and facility per interval, with a count of the rest."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from contract.kafka import RepeatFilter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


Logged = tuple[logging.Logger, Clock, pytest.LogCaptureFixture]


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> Iterator[Logged]:
    clock = Clock()
    log = logging.getLogger("test.rdkafka")
    repeats = RepeatFilter(every_s=10.0, clock=clock)
    log.addFilter(repeats)
    caplog.set_level(logging.INFO, logger="test.rdkafka")
    yield log, clock, caplog
    log.removeFilter(repeats)


def test_a_reconnect_storm_is_one_line_per_interval(logged: Logged) -> None:
    log, clock, caplog = logged
    for _ in range(200):  # ten seconds of a broker down, as librdkafka reports it
        log.error("%s [%s] %s", "FAIL", "rdkafka#consumer-4", "Connect to ... failed")
        clock.now += 0.05
    clock.now += 0.01
    log.error("%s [%s] %s", "FAIL", "rdkafka#consumer-4", "Connect to ... failed")
    assert caplog.messages == [
        "FAIL [rdkafka#consumer-4] Connect to ... failed",
        "FAIL [rdkafka#consumer-4] Connect to ... failed (199 more like it held back)",
    ]


def test_other_clients_and_facilities_are_not_held_back(logged: Logged) -> None:
    log, _clock, caplog = logged
    log.error("%s [%s] %s", "FAIL", "rdkafka#consumer-4", "down")
    log.error("%s [%s] %s", "FAIL", "rdkafka#producer-5", "down")
    log.warning("%s [%s] %s", "REQTMOUT", "rdkafka#consumer-4", "timed out")
    log.error("%s [%s] %s", "FAIL", "rdkafka#consumer-4", "down")  # held back
    assert len(caplog.messages) == 3
