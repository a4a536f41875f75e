"""Reconcile: statuses whose callbacks never arrived, read from the provider's REST API.

Status callbacks are best-effort: the provider retries a failed one twice, then drops
it. A message left at `sent` (or a call with no final status) is looked up with the
`signalwire` SDK (`messages(sid).fetch()`, `calls(sid).fetch()`); where the provider
knows more, a synthetic callback marked `source=reconcile` is published onto the same
raw topic (`callbacks.<kind>`, keyed by the SID, in the envelope the edge writes), so
the intake's per-SID state, the windows, alerts, enrichment, forwards and ClickHouse
follow by the same code path as for a real callback.

Where stuck SIDs come from, and why. The intake's per-SID state changelog,
`processors.sid-state`: compacted, one record per real status change, keyed by
`m:`/`c:` + SID, partition p holding raw partition p's SIDs. Its records carry the
status, the time of the change and the callback's tags (campaign). A SID in a final
status is tombstoned `final_state_ttl_s` (1 hour) after its change, any other after
`state_ttl_s`, so the topic holds the SIDs in flight, not everything ever seen: the
index built from it (`reconcile.stuck`) costs memory and time in the stuck SIDs and the
last hour's finished ones, and a pass fetches only SIDs that are due. The other
candidates were weighed: ClickHouse holds every status ever (a scan grows with
history, and the embedded chDB store belongs to the sink process); the intake's memory
would tie REST latency to the hot path.

The stage (`reconcile.stage`) is a strategy on the one consumer runtime, in its own
consumer group on the state topic: the group gives each worker its partitions, so two
workers never fetch the same SID, and a worker that dies has its partitions (and their
SIDs) moved to another. It commits nothing: on assignment it reads its partitions of
the compacted topic from the start (as the intake rebuilds its state), which is bounded
as above. What would be costly to repeat after a restart is a fetch: each one is
recorded on `reconcile.checks` (compacted, keyed and partitioned like the state topic),
read back on assignment, so a SID is fetched no more often than `reconcile_refetch_s`
across restarts. A SID still not final `reconcile_give_up_s` after its last change is
left be (an MMS, or a carrier that never sends a receipt, stays at `sent` for good).

Exactly once holds by the intake's rules, not ours: a synthetic callback is one more
callback for its SID, so reconciling twice is a duplicate (the state has that status
already), a real callback arriving after it is a duplicate too, and precedence decides
whatever the order. In ClickHouse the row's `source` column says where it came from.

Talking to the provider (`reconcile.provider`): a token bucket holds requests to
`reconcile_rate` per second (retries included), a 429's `Retry-After` holds every
request of the worker for that long, 5xx and transport errors back off exponentially.

`switchboard reconcile` runs one pass from the command line (all partitions, no group),
with `--discover` listing the account's messages and calls sent since `--since` from a
campaign's numbers to publish those Switchboard never heard of (within
`final_state_ttl_s`, where "not in the state topic" means exactly that).
"""
