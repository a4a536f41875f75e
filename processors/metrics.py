"""Prometheus metrics of the processors."""

from __future__ import annotations

from prometheus_client import Counter

EVENTS = Counter("switchboard_process_events_total", "Callbacks normalized", ["kind"])
DEAD_LETTERED = Counter(
    "switchboard_process_dead_letter_total", "Callbacks that could not be normalized", ["kind"]
)
