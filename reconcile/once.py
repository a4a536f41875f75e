"""`switchboard reconcile`: one pass over every partition, from the command line.

It reads the two compacted topics whole (no consumer group: it takes no partitions from
a running stage), fetches what is due, and, with `discover`, lists what a campaign's
numbers sent since `since` to publish what Switchboard never heard of. Discovery reaches
back no further than `final_state_ttl_s`: within it, a SID missing from the state topic
was never heard of; beyond it, a finished one may have been forgotten, and publishing it
would count it twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from confluent_kafka import Producer

from contract.errors import ConfigurationError
from contract.kafka import ensure_topics, producer_config
from contract.settings import Settings
from reconcile.provider import Provider
from reconcile.stage import Outcome, Reconciler, Tally, recover
from reconcile.stuck import StuckIndex


def reconcile_once(
    settings: Settings,
    *,
    since_s: float | None = None,
    campaign: str | None = None,
    discover: bool = False,
    numbers: list[str] | None = None,
    dry_run: bool = False,
    on_due: Callable[[int], None] | None = None,
    progress: Callable[[Outcome], None] | None = None,
) -> Tally:
    now = time.time()
    if discover and (since_s is None or since_s > settings.final_state_ttl_s):
        raise ConfigurationError(
            "--discover reaches back at most SWITCHBOARD_FINAL_STATE_TTL_S "
            f"({settings.final_state_ttl_s} s): give --since no longer than that"
        )
    ensure_topics(settings)
    index = StuckIndex()
    recover(settings, index)
    reconciler = Reconciler(
        settings, Provider(settings), Producer(producer_config(settings)), index, dry_run=dry_run
    )
    since = now - since_s if since_s is not None else None
    due = index.due(settings, now, since=since, campaign=campaign)
    if on_due is not None:
        on_due(len(due))
    tally = reconciler.run(due, progress=progress)
    if discover:
        assert since is not None
        wanted = set(numbers or ())
        if campaign:
            wanted |= index.numbers(campaign)
        found = reconciler.discover(wanted, since, {"campaign": campaign} if campaign else {})
        tally.checked += found.checked
        for outcome, n in found.counts.items():
            tally.counts[outcome] += n
        tally.changes += found.changes
    reconciler.tombstone_stale_checks()
    reconciler.flush()
    return tally
