"""Reconcile and the provider: paced, told to wait, failing, paging; and its index."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from contract.envelope import Envelope, Source
from contract.kinds import CallbackKind
from contract.settings import Settings
from contract.topics import Topic
from processors.state import SidState, Transition
from reconcile.once import reconcile_once
from reconcile.provider import Provider, TokenBucket
from reconcile.stage import Outcome
from reconcile.stuck import StuckIndex
from tests.fake_signalwire import FakeSignalWire
from tests.harness import Stage, produce, wait_for
from tests.proc_traffic import read_all
from tests.sink_data import with_signalwire

RATE = 10.0
OURS = "+15550100001"


def _state(kind: CallbackKind, sid: str, status: str, at: float, campaign: str = "spring") -> bytes:
    return Transition(
        kind, sid, None, SidState(status, at), at, tags={"campaign": campaign}, number=OURS
    ).record()


def _stuck_messages(settings: Settings, fake: FakeSignalWire, n: int) -> list[str]:
    """n messages at `sent` in the state topic, an hour old; delivered at the provider."""
    at = time.time() - 3600
    sids = [f"SM{i:032x}" for i in range(n)]
    produce(
        settings,
        Topic.SID_STATE,
        [(f"m:{sid}", _state(CallbackKind.SMS, sid, "sent", at)) for sid in sids],
    )
    for sid in sids:
        fake.set_message(sid, status="delivered", from_=OURS)
    return sids


def _most_in_any_second(times: list[float]) -> int:
    times = sorted(times)
    most, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


@pytest.mark.kafka
def test_429_and_5xx_are_waited_out_at_the_set_rate_and_nothing_is_lost(
    topics: Settings, fake: FakeSignalWire
) -> None:
    settings = with_signalwire(topics, fake.base_url, reconcile_rate=RATE, reconcile_concurrency=4)
    sids = _stuck_messages(settings, fake, 40)
    fake.fail_next(2, 500)
    fake.fail_next(1, 429, retry_after=1.5)
    fake.fail_next(1, 503)
    fake.fail_next(1, 429, retry_after=1.0)

    tally = reconcile_once(settings)

    assert tally.counts[Outcome.CHANGED] == 40 and tally.counts[Outcome.ERROR] == 0
    published = [
        Envelope.from_bytes(m.value() or b"") for m in read_all(settings, Topic.CALLBACKS_SMS)
    ]
    assert sorted(e.sid for e in published) == sids
    assert {(e.params["MessageStatus"], e.source, e.tags["campaign"]) for e in published} == {
        ("delivered", Source.RECONCILE, "spring")
    }
    gets = [r for r in fake.requests if r.method == "GET"]
    assert len(gets) == 40 + 5  # every failure tried again, once each
    times = [r.at for r in gets]
    # never faster than the setting, from the fake's own log (a token bucket of one)
    assert _most_in_any_second(times) <= RATE + 1
    assert (len(times) - 1) / (times[-1] - times[0]) <= RATE
    # after each 429, nothing until its Retry-After has passed, on any thread
    for i in (2, 4):
        told = 1.5 if i == 2 else 1.0
        assert times[i + 1] - times[i] >= told - 0.05, (i, times[i + 1] - times[i])


@pytest.mark.kafka
def test_a_second_pass_within_the_refetch_interval_fetches_nothing_and_missing_sids_are_told(
    topics: Settings, fake: FakeSignalWire
) -> None:
    settings = with_signalwire(topics, fake.base_url, reconcile_rate=100.0)
    sids = _stuck_messages(settings, fake, 5)
    produce(
        settings,
        Topic.SID_STATE,
        [("c:CA404", _state(CallbackKind.VOICE, "CA404", "ringing", time.time() - 5 * 3600))],
    )
    first = reconcile_once(settings)
    assert (first.counts[Outcome.CHANGED], first.counts[Outcome.NOT_FOUND]) == (5, 1)
    # the fetches were recorded: a restarted run leaves them be for the refetch interval
    fake.requests.clear()
    second = reconcile_once(settings)
    assert second.checked == 0 and not fake.requests
    assert len(read_all(settings, Topic.RECONCILE_CHECKS)) >= 6
    assert sorted(sids) == sorted(
        Envelope.from_bytes(m.value() or b"").sid for m in read_all(settings, Topic.CALLBACKS_SMS)
    )


@pytest.mark.kafka
def test_discovery_pages_through_the_list_and_publishes_only_unknown_sids(
    topics: Settings, fake: FakeSignalWire
) -> None:
    settings = with_signalwire(topics, fake.base_url, reconcile_rate=100.0)
    known = _stuck_messages(settings, fake, 1)[0]
    now = datetime.now(UTC)
    unheard = [f"SMnew{i:029x}" for i in range(5)]
    for sid in unheard:
        fake.set_message(sid, status="undelivered", error_code=30003, from_=OURS, date_sent=now)
    fake.set_message("SMold", status="delivered", from_=OURS, date_sent=now - timedelta(hours=3))
    fake.set_message("SMother", status="delivered", from_="+15550999999", date_sent=now)

    provider = Provider(settings)
    listed = list(provider.list_messages(OURS, now - timedelta(minutes=30), page_size=2))
    assert sorted(r["sid"] for r in listed) == sorted([known, *unheard])
    assert sum(1 for r in fake.requests if r.path.endswith("/Messages.json")) == 3  # 2+2+2

    fake.requests.clear()
    tally = reconcile_once(
        settings, since_s=1800, campaign="spring", discover=True, numbers=[]
    )  # the campaign's number comes from its stuck SID
    published = {
        e.sid: e
        for e in (
            Envelope.from_bytes(m.value() or b"") for m in read_all(settings, Topic.CALLBACKS_SMS)
        )
    }
    # the known one is left to the pass (its last change is older than --since)
    assert set(published) == set(unheard)
    assert all(published[s].tags == {"campaign": "spring"} for s in unheard)
    assert published[unheard[0]].params["ErrorCode"] == "30003"
    assert tally.counts[Outcome.ERROR] == 0
    with pytest.raises(Exception, match="FINAL_STATE_TTL_S"):
        reconcile_once(settings, since_s=7200, discover=True)


def test_the_index_follows_the_state_and_picks_what_is_due() -> None:
    settings = Settings(_env_file=None, reconcile_sms_after_s=600, reconcile_call_after_s=3600)  # type: ignore[call-arg]
    now = 1_800_000_000.0
    index = StuckIndex()
    index.apply_state(0, "m:A", _state(CallbackKind.SMS, "A", "sent", now - 700))
    index.apply_state(0, "m:B", _state(CallbackKind.SMS, "B", "sent", now - 100))  # too young
    index.apply_state(1, "c:C", _state(CallbackKind.VOICE, "C", "ringing", now - 4000))
    index.apply_state(1, "c:D", _state(CallbackKind.VOICE, "D", "ringing", now - 4000))
    index.apply_state(1, "c:D", _state(CallbackKind.VOICE, "D", "completed", now - 10))  # final
    index.apply_state(0, "m:E", _state(CallbackKind.SMS, "E", "sent", now - 2 * 86400))  # given up
    index.apply_state(0, "m:F", _state(CallbackKind.SMS, "F", "sent", now - 900))
    index.apply_state(0, "m:F", None)  # forgotten
    index.apply_check(1, "c:C", orjson.dumps({"checked_at": now - 60, "status": "ringing"}))
    assert [c.key for c in index.due(settings, now)] == ["m:A"]
    assert [c.key for c in index.due(settings, now + 3600)] == ["c:C", "m:A", "m:B"]
    assert index.due(settings, now, campaign="other") == []
    assert index.is_known(CallbackKind.VOICE, "D") and not index.is_known(CallbackKind.SMS, "F")
    assert index.stale_checks() == []
    index.apply_state(1, "c:C", _state(CallbackKind.VOICE, "C", "busy", now))
    assert index.stale_checks() == [(1, "c:C")]


def test_the_token_bucket_holds_its_rate_and_a_hold() -> None:
    bucket = TokenBucket(rate=50.0)
    stopped = threading.Event()
    started = time.monotonic()
    for _ in range(26):
        assert bucket.take(stopped)
    assert time.monotonic() - started >= 0.48  # 25 intervals of 20 ms after the first
    bucket.hold(0.3)
    held = time.monotonic()
    assert bucket.take(stopped)
    assert time.monotonic() - held >= 0.29
    stopped.set()
    bucket.hold(10)
    assert not bucket.take(stopped)


@pytest.mark.kafka
def test_two_workers_split_the_stuck_sids_and_a_restart_fetches_nothing_again(
    topics: Settings, fake: FakeSignalWire, tmp_path: Path
) -> None:
    settings = with_signalwire(topics, fake.base_url, reconcile_rate=20.0, reconcile_interval_s=1.0)
    workers = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        env = {"SWITCHBOARD_INSTANCE_ID": name}
        workers.append(Stage("reconcile", settings, tmp_path / name, "--follow", env=env))

    def one_partition_each() -> bool:
        for w in workers:
            assigned = [line for line in w.log().splitlines() if "reconcile assigned" in line]
            if not assigned or assigned[-1].count("sid-state[") != 1:
                return False
        return True

    try:
        for w in workers:
            w.start()
        wait_for(one_partition_each, timeout=60, what="a partition for each worker")
        sids = _stuck_messages(settings, fake, 40)
        wait_for(
            lambda: len([r for r in fake.requests if r.method == "GET"]) >= 40,
            timeout=60,
            what="40 fetches",
        )
        time.sleep(2.5)  # a pass or two more: nothing is fetched twice
        fetched = [r.path.rsplit("/", 1)[-1].removesuffix(".json") for r in fake.requests]
        assert sorted(fetched) == sids  # each once, by one worker or the other
        assert all("source=reconcile" in w.log() for w in workers)  # both did a share

        # a restarted worker reads the fetch records back: nothing fetched again
        assert workers[0].terminate() == 0
        workers[0].start()
        wait_for(lambda: workers[0].log().count("reconcile consuming") == 2, timeout=60)
        time.sleep(5)
        assert len(fake.requests) == 40
    finally:
        for w in workers:
            if w.alive():
                w.terminate()
