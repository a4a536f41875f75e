"""Prometheus metrics of the edge."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "switchboard_ingest_requests_total",
    "Callbacks received, by kind and answer",
    ["kind", "status"],
)
REJECTED = Counter(
    "switchboard_ingest_rejected_total", "Callbacks refused, by reason", ["kind", "reason"]
)
IN_FLIGHT = Gauge(
    "switchboard_ingest_in_flight",
    "Callbacks waiting for Kafka's acknowledgement",
    multiprocess_mode="livesum",
)
PRODUCE_SECONDS = Histogram(
    "switchboard_ingest_produce_seconds",
    "Time from produce to Kafka's acknowledgement",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
