"""Per-SID state: precedence, duplicates, late callbacks, and what a transition counts."""

from __future__ import annotations

import tracemalloc

from contract.kinds import CallbackKind
from processors.sidstore import SidStore
from processors.state import SidState, Transition, scopes, state_from_record, state_key, step
from tests.callbacks import ACCOUNT, call, event, recording, sms

T = 1_800_000_000.0


def run(*envelopes: object) -> list[Transition]:
    """Feed callbacks of one SID in order; return the transitions they made."""
    state: SidState | None = None
    found = []
    for env in envelopes:
        transition = step(state, event(env))  # type: ignore[arg-type]
        if transition is not None:
            state = transition.state
            found.append(transition)
    return found


def totals(transitions: list[Transition]) -> dict[str, float]:
    out: dict[str, float] = {}
    for t in transitions:
        for count in t.counts:
            for name, delta in count.deltas.items():
                out[name] = out.get(name, 0) + delta
    return out


def test_each_real_sms_transition_is_returned_once() -> None:
    found = run(
        sms("SM1", "queued", at=T),
        sms("SM1", "queued", at=T + 1),  # provider retry
        sms("SM1", "sending", at=T + 2),
        sms("SM1", "sent", at=T + 3),
        sms("SM1", "sent", at=T + 4),
        sms("SM1", "delivered", at=T + 5),
        sms("SM1", "delivered", at=T + 6),
    )
    assert [(t.previous, t.status) for t in found] == [
        (None, "queued"),
        ("queued", "sending"),
        ("sending", "sent"),
        ("sent", "delivered"),
    ]
    assert totals(found) == {"sent": 1, "pending": 0, "delivered": 1}


def test_a_late_lower_status_changes_and_counts_nothing() -> None:
    found = run(
        sms("SM1", "delivered", at=T + 5),
        sms("SM1", "sent", at=T + 3),
        sms("SM1", "queued", at=T),
    )
    assert [t.status for t in found] == ["delivered"]
    # its `sent` was late: the receipt alone says it left SignalWire
    assert totals(found) == {"sent": 1, "delivered": 1}
    assert found[0].counts[0].at == T + 5


def test_final_is_final_even_for_another_final_status() -> None:
    found = run(sms("SM1", "undelivered", at=T), sms("SM1", "delivered", at=T + 9))
    assert [t.status for t in found] == ["undelivered"]
    assert totals(found) == {"sent": 1, "undelivered": 1}


def test_failed_never_counts_as_sent_but_takes_back_its_pending() -> None:
    assert totals(run(sms("SM1", "queued", at=T), sms("SM1", "failed", at=T + 1))) == {"failed": 1}
    found = run(sms("SM2", "sent", at=T), sms("SM2", "failed", at=T + 30))
    assert totals(found) == {"sent": 1, "pending": 0, "failed": 1}
    # the pending count is taken back where it was counted: at the sent time
    assert found[1].counts[-1].at == T and found[1].counts[-1].deltas == {"pending": -1}


def test_mms_is_unconfirmed_at_sent() -> None:
    found = run(sms("MM1", "queued", at=T, media=1), sms("MM1", "sent", at=T + 1, media=1))
    assert totals(found) == {"sent": 1, "mms": 1}
    assert found[-1].state.mms and found[-1].state.sent_at == T + 1


def test_an_sms_left_at_sent_stays_pending() -> None:
    found = run(sms("SM1", "sent", at=T))
    assert totals(found) == {"sent": 1, "pending": 1}


def test_call_counts_its_first_final_status_with_duration_and_mos() -> None:
    found = run(
        call("CA1", "ringing", at=T, sequence=1),
        call("CA1", "completed", at=T + 60, duration=58, mos=4.25, sequence=3),
        call("CA1", "in-progress", at=T + 2, sequence=2),  # late
        call("CA1", "completed", at=T + 60, duration=58, mos=4.25, sequence=3),  # retry
    )
    assert [t.status for t in found] == ["ringing", "completed"]
    assert totals(found) == {
        "calls": 1,
        "completed": 1,
        "duration_s": 58,
        "mos_count": 1,
        "mos_sum": 4.25,
    }
    assert found[-1].counts[0].at == T + 60  # the provider's Timestamp, not receipt time


def test_voice_and_inbound_callbacks_of_one_call_share_its_state() -> None:
    voice = call("CA2", "completed", at=T, direction="inbound", duration=30)
    inbound = call("CA2", "completed", at=T, kind=CallbackKind.INBOUND_CALL, duration=30)
    found = run(voice, inbound)
    assert len(found) == 1 and found[0].key == "c:CA2"


def test_busy_and_no_answer_are_ended_calls_failed_is_failed() -> None:
    assert totals(run(call("CA3", "busy", at=T))) == {"calls": 1, "busy": 1}
    assert totals(run(call("CA4", "no-answer", at=T))) == {"calls": 1, "no_answer": 1}
    assert totals(run(call("CA5", "failed", at=T))) == {"calls": 1, "failed": 1}


def test_scopes_are_account_our_number_and_campaign() -> None:
    assert scopes(event(sms("SM1", "sent", campaign="spring"))) == (
        f"account:{ACCOUNT}",
        "number:+15550001111",
        "campaign:spring",
    )
    # an inbound call is about the number that was called
    inbound = call("CA1", "completed", at=T, kind=CallbackKind.INBOUND_CALL, to="+15550009999")
    assert scopes(event(inbound))[1] == "number:+15550009999"
    dialled = call("CA1", "completed", at=T, from_="+15550002222", direction="outbound-dial")
    assert scopes(event(dialled))[1] == "number:+15550002222"


def test_recording_completes_once_and_counts_nothing() -> None:
    found = run(
        recording("RE1", "in-progress"),
        recording("RE1", "completed"),
        recording("RE1", "completed"),
        recording("RE1", "in-progress"),
    )
    assert [t.status for t in found] == ["in-progress", "completed"]
    assert totals(found) == {}


def test_status_change_record_round_trips_the_state() -> None:
    [transition] = run(sms("SM1", "sent", at=T, media=2))
    assert state_from_record(transition.record()) == transition.state


def test_final_states_are_forgotten_sooner_than_the_others() -> None:
    store = SidStore()
    store.load(0, {})
    now = 10_000.0
    keys = {
        "delivered": state_key(CallbackKind.SMS, "SM1"),
        "sent": state_key(CallbackKind.SMS, "SM2"),
        "completed": state_key(CallbackKind.VOICE, "CA1"),
        "in-progress": state_key(CallbackKind.VOICE, "CA2"),
        "fresh": state_key(CallbackKind.SMS, "SM3"),
    }
    store.put(0, keys["delivered"], SidState("delivered", received_at=now - 100))
    store.put(0, keys["sent"], SidState("sent", received_at=now - 100))
    store.put(0, keys["completed"], SidState("completed", received_at=now - 100))
    store.put(0, keys["in-progress"], SidState("in-progress", received_at=now - 100))
    store.put(0, keys["fresh"], SidState("delivered", received_at=now - 10))

    gone, final_kept = store.expire(before=now - 1_000, final_before=now - 50)

    assert sorted(gone) == sorted([(0, keys["delivered"]), (0, keys["completed"])])
    assert final_kept == 1 and len(store) == 3  # "fresh" is final; sent and in-progress not
    assert store.get(0, keys["sent"]) is not None
    assert store.get(0, keys["in-progress"]) is not None
    assert store.get(0, keys["fresh"]) is not None


def test_a_state_record_held_in_memory_costs_about_its_length() -> None:
    """Batches hold their state records until Kafka acknowledges them: each must cost
    its own length, not the 4 KiB buffer orjson returns its output in."""
    [transition] = run(sms("SM" + "0" * 32, "delivered", at=T))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        records = [transition.record() for _ in range(1000)]
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert state_from_record(records[0]) == transition.state
    assert held / len(records) < 2 * len(records[0])
