"""Reconcile: 10,000 stuck messages fetched at the configured rate, and its cost to the
processors running beside it.

Publishes 10,000 per-SID states at `sent` (an hour old, as the intake leaves a message
whose receipt was lost) onto the state topic of a LocalBroker of its own, tells the fake
SignalWire (`tests/fake_signalwire.py`, in this process) that each was delivered, and
starts `switchboard reconcile --follow` at `--rate` requests/s. Its time and the
request rate it held come from the fake's own request log; every SID must come back
as a synthetic callback on the raw topic.

Beside it, the processors' sustained rate: `bench.process`'s measurement (a preloaded
backlog of raw callbacks through one `switchboard process` worker, from its first
commit until the intake and the window agent have committed everything) while the
reconcile pass runs, against the same measurement with the stage paused (SIGSTOP), in
pairs. This host is shared: the figures are medians, and
only the same-run comparison means much.

    python -m bench.reconcile [--stuck 10000] [--rate 100] [--events 60000] [--runs 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from bench.common import (
    Child,
    Offsets,
    bench_settings,
    machine_info,
    median,
    proc_sample,
    settings_env,
    start_broker,
    wait_until,
    write_results,
)
from bench.process import run_worker, traffic
from contract.kafka import ensure_topics, producer_config
from contract.kinds import CallbackKind
from contract.settings import Settings
from contract.topics import Topic, topic_name
from processors.state import SidState, Transition
from tests.fake_signalwire import FakeSignalWire

NAME = "reconcile"
OURS = "+15550100001"


def stuck_states(settings: Settings, fake: FakeSignalWire, n: int) -> None:
    """n messages at `sent` for an hour in the state topic; delivered at the provider."""
    at = time.time() - 3600
    producer = Producer(producer_config(settings) | {"linger.ms": 50})
    name = topic_name(Topic.SID_STATE, settings.topic_prefix)
    for i in range(n):
        sid = f"SM{i:032x}"
        record = Transition(
            CallbackKind.SMS,
            sid,
            "sending",
            SidState("sent", at),
            at,
            tags={"campaign": "bench"},
            number=OURS,
        ).record()
        producer.produce(name, key=f"m:{sid}".encode(), value=record)
        producer.poll(0)
        fake.set_message(sid, status="delivered", from_=OURS)
    assert producer.flush(60) == 0


def _cpu_s(pid: int) -> float:
    sample = proc_sample(pid)
    return sample[0] if sample is not None else 0.0


def most_in_any_second(times: list[float], window_s: float = 1.0) -> int:
    most, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window_s:
            start += 1
        most = max(most, end - start + 1)
    return most


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stuck", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=100.0, help="reconcile_rate, requests/s")
    parser.add_argument("--events", type=int, default=60_000, help="processors' backlog per run")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    machine = machine_info()
    envelopes = traffic(args.events)
    worker = [sys.executable, "-m", "switchboard", "process"]
    with tempfile.TemporaryDirectory(prefix="bench-reconcile-") as tmp, FakeSignalWire() as fake:
        workdir = Path(tmp)
        broker = start_broker(workdir)
        try:
            settings = bench_settings(
                broker.bootstrap,
                workdir,
                signalwire_project_id="PJbench",
                signalwire_token="token",
                signalwire_space_url="bench.signalwire.com",
                signalwire_api_base=fake.base_url,
                reconcile_rate=args.rate,
                reconcile_sms_after_s=0.0,
                reconcile_interval_s=1.0,
                # enough in flight that the bucket, not the fake's latency, sets the pace
                reconcile_concurrency=8,
            )
            ensure_topics(settings)
            stuck_states(settings, fake, args.stuck)

            def fetched() -> int:
                return sum(1 for r in fake.requests if r.method == "GET")

            stage = Child(
                "reconcile",
                [sys.executable, "-m", "switchboard", "reconcile", "--follow"],
                workdir / "reconcile.log",
                env=settings_env(settings),
            )
            paused = 0.0
            pairs: list[tuple[dict[str, float], dict[str, float]]] = []
            try:
                wait_until(lambda: fetched() > 0, timeout_s=120, what=f"a fetch; {stage.log()}")
                stage_cpu = _cpu_s(stage.pid)
                # pairs of runs while the pass runs and while it is paused (SIGSTOP), so
                # that each comparison is of two runs minutes apart at most
                while len(pairs) < args.runs and fetched() < args.stuck:
                    cpu = time.process_time()  # this process serves the fake
                    during = run_worker(broker, workdir, envelopes, worker)
                    during["bench_cpu_s"] = time.process_time() - cpu
                    if fetched() >= args.stuck:
                        break  # the pass ended during the run: not a run beside it
                    os.killpg(stage.pid, signal.SIGSTOP)
                    stopped = time.monotonic()
                    try:
                        cpu = time.process_time()
                        alone = run_worker(broker, workdir, envelopes, worker)
                        alone["bench_cpu_s"] = time.process_time() - cpu
                    finally:
                        os.killpg(stage.pid, signal.SIGCONT)
                        paused += time.monotonic() - stopped
                    pairs.append((during, alone))
                    print(f"processors during the pass: {during}, paused: {alone}", flush=True)
                offsets = Offsets(settings)
                wait_until(
                    lambda: sum(offsets.ends([Topic.CALLBACKS_SMS]).values()) >= args.stuck,
                    timeout_s=args.stuck / args.rate * 3 + 60,
                    interval_s=1.0,
                    what=f"{args.stuck} synthetic callbacks; {stage.log()}",
                )
                published = sum(offsets.ends([Topic.CALLBACKS_SMS]).values())
                stage_cpu = _cpu_s(stage.pid) - stage_cpu
            finally:
                stage.stop()
            times = sorted(r.at for r in fake.requests if r.method == "GET")
        finally:
            broker.stop()
    taken = times[-1] - times[0] - paused
    drops = [100 * (1 - d["events_per_s"] / a["events_per_s"]) for d, a in pairs]
    rate_during = median(d["events_per_s"] for d, _ in pairs) if pairs else None
    rate_alone = median(a["events_per_s"] for _, a in pairs) if pairs else None
    figures: dict[str, Any] = {
        "stuck": args.stuck,
        "reconcile_rate_setting": args.rate,
        "fetches": len(times),
        "published": published,
        "reconcile_s": round(taken, 1),
        "requests_per_s_held": round((len(times) - 1) / taken, 1),
        "requests_most_in_any_second": most_in_any_second(times),
        "requests_most_in_any_5s": most_in_any_second(times, 5.0),
        "processors_per_s_without": round(rate_alone) if rate_alone else None,
        "processors_per_s_during": round(rate_during) if rate_during else None,
        "processors_drop_pct": round(median(drops), 1) if drops else None,
        "processors_cpu_us_without": (
            round(median(a["cpu_us_per_event"] for _, a in pairs), 1) if pairs else None
        ),
        "processors_cpu_us_during": (
            round(median(d["cpu_us_per_event"] for d, _ in pairs), 1) if pairs else None
        ),
        "reconcile_cpu_ms_per_request": round(1000 * stage_cpu / len(times), 2),
        # this process's CPU (the fake SignalWire, mostly) per run, during vs paused
        "fake_cpu_s_per_run_during": (
            round(median(d["bench_cpu_s"] for d, _ in pairs), 1) if pairs else None
        ),
        "fake_cpu_s_per_run_paused": (
            round(median(a["bench_cpu_s"] for _, a in pairs), 1) if pairs else None
        ),
        "pairs": len(pairs),
    }
    config = {
        "without_per_s": [round(a["events_per_s"]) for _, a in pairs],
        "during_per_s": [round(d["events_per_s"]) for d, _ in pairs],
        "drop_pct": [round(x, 1) for x in drops],
    }
    write_results(NAME, figures, markdown(figures, machine), machine=machine, config=config)
    print(figures)


def markdown(f: dict[str, Any], machine: dict[str, Any]) -> str:
    without = f"{f['processors_per_s_without']:,}"
    during = f"{f['processors_per_s_during']:,}" if f["processors_per_s_during"] else "n/a"
    cpu = f"{f['processors_cpu_us_during']} / {f['processors_cpu_us_without']}"
    most = f"{f['requests_most_in_any_second']}, {f['requests_most_in_any_5s']}"
    fake = f"{f['fake_cpu_s_per_run_during']} / {f['fake_cpu_s_per_run_paused']}"
    return f"""## Reconcile: {f["stuck"]:,} stuck messages (`bench/reconcile.py`)

{f["stuck"]:,} messages at `sent` for an hour on the state topic, delivered at the fake
SignalWire; `switchboard reconcile --follow` at
`SWITCHBOARD_RECONCILE_RATE={f["reconcile_rate_setting"]:g}`.
Time and rate from the fake's request log. Machine: {machine["cores"]} cores
({machine["cpu_model"]}), shared with other engineers' tests (load
{machine["load_avg_1m_at_start"]:.1f} at start, reference loop
{machine["cpu_reference_ms_at_start"]} ms): medians, and same-run comparisons only.

| figure | value |
|---|---:|
| fetches (one per stuck SID) | {f["fetches"]:,} |
| synthetic callbacks published | {f["published"]:,} |
| time taken, first to last fetch | {f["reconcile_s"]} s |
| requests/s held (setting {f["reconcile_rate_setting"]:g}) | {f["requests_per_s_held"]} |
| most requests in any one second, and in any 5 s, at the fake | {most} |
| processors, callbacks/s during the pass (median of {f["pairs"]}) | {during} |
| processors, callbacks/s with the pass paused (median of {f["pairs"]}) | {without} |
| drop, median of the pairs | {f["processors_drop_pct"]}% (the bar: at most 5%) |
| processors, CPU µs per callback during / paused | {cpu} |
| reconcile stage, CPU ms per request | {f["reconcile_cpu_ms_per_request"]} |
| this process (the fake SignalWire), CPU s per run during / paused | {fake} |

The processors' rate is `bench/process.py`'s measurement (a preloaded backlog through one
worker). Each pair is a run while the pass runs, then one with the reconcile stage
stopped (SIGSTOP; its time is left out of the time taken), so the two are minutes apart
at most; the drop is the median of the pairs'. The fake SignalWire answers in this
benchmark's process, on the same two cores: a real provider's side of the cost is not on
the host, so the drop here is an upper bound. The client's token bucket starts requests
at least 1/rate apart; the fake logs each when its handler runs, which on a loaded host
can bunch a few arrivals into one second (hence the 5 s window too).
"""


if __name__ == "__main__":
    main()
