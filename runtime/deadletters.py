"""Dead letters counted the same way by every stage that writes them (`contract.deadletters`
holds their shape)."""

from __future__ import annotations

from prometheus_client import Counter

DEAD_LETTERS = Counter(
    "switchboard_dead_letters_total",
    "Records put on a dead-letter topic, by the stage that could not handle them and why",
    ["stage", "reason"],
)
