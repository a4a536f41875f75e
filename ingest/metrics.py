"""Prometheus metrics of the edge.

With several uvicorn workers, prometheus_client's multiprocess mode collects
them across processes (see `ingest.server`); `registry()` is what /metrics serves.
"""

from __future__ import annotations

import os

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector

from contract.formats import Format
from contract.kinds import CallbackKind

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"

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

FORMATS = Counter(
    "switchboard_ingest_accepted_by_format_total",
    "Callbacks accepted, by the provider format they came in (contract.formats)",
    ["format"],
)

# The hot path's counters, looked up once: `labels()` takes a lock and a dict lookup.
ACCEPTED = {kind: REQUESTS.labels(kind.value, "204") for kind in CallbackKind}
ACCEPTED_FORMAT = {fmt: FORMATS.labels(fmt.value) for fmt in Format}


def rejected(kind: str, reason: str, status: int) -> None:
    REJECTED.labels(kind, reason).inc()
    REQUESTS.labels(kind, str(status)).inc()


def registry() -> CollectorRegistry:
    """Every worker's metrics when several share the multiprocess dir, else this process's."""
    if MULTIPROC_DIR not in os.environ:
        return REGISTRY
    collected = CollectorRegistry()
    MultiProcessCollector(collected)
    return collected
