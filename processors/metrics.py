"""Prometheus metrics of the processors."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter("switchboard_process_events_total", "Callbacks read by the intake", ["kind"])
TRANSITIONS = Counter("switchboard_process_transitions_total", "Real per-SID status changes")
UNCHANGED = Counter(
    "switchboard_process_unchanged_total", "Duplicate or late lower-status callbacks"
)
BATCH_SECONDS = Histogram(
    "switchboard_process_batch_seconds",
    "Intake batch time, from read to published (acknowledgements overlap the next batch)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
WINDOW_ITEMS_SKIPPED = Counter(
    "switchboard_process_window_items_skipped_total",
    "Window increments skipped: already applied (replay) or for an expired bucket",
    ["reason"],
)
WINDOWS_PUBLISHED = Counter(
    "switchboard_process_windows_published_total", "Window records published", ["family"]
)
ALERTS = Counter(
    "switchboard_process_alerts_total", "Alert notifications published", ["type", "state"]
)
# What the processors' memory is proportional to: read these next to the RSS.
SID_STATES = Gauge(
    "switchboard_process_sid_states",
    "Per-SID states held in memory, by whether the status is final (forgotten after "
    "final_state_ttl_s) or not (after state_ttl_s)",
    ["final"],
)
WINDOW_SCOPES = Gauge(
    "switchboard_process_window_scopes", "Scopes (campaign, number, account) in the window table"
)
