"""Processors throughput: raw callbacks per second through ONE worker.

Preloads N raw callbacks (SMS campaigns with receipts, MMS, retries and late
callbacks; voice and inbound calls with MOS; recordings and transcriptions) onto the
raw topics of a LocalBroker of its own, starts one `switchboard process` worker and
counts callbacks per second from its first commit until the intake has committed the
end of every raw topic and the window agent the end of the transitions topic, i.e.
through normalization, per-SID state and windows. The worker's CPU time over that
interval gives the CPU cost per callback, which the shared machine's load does not
inflate the way it does wall time.

Baseline, measured in the same run: a faust agent that only reads the same topics with
`take_events()` and does nothing, i.e. faust's own per-record floor; it is why the
intake reads the raw topics with librdkafka instead.

    python -m bench.process [--events 100000] [--runs 3] [--baseline-events 40000]
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from bench.common import (
    RAW_TOPICS,
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
from contract.envelope import Envelope, SignatureVerdict
from contract.kafka import client_config, ensure_topics, faust_credentials
from contract.kinds import CallbackKind
from contract.settings import Settings, load_settings
from contract.topics import Topic, topic_name
from processors.app import app_id
from processors.intake import intake_group
from switchboard.broker import LocalBroker

NAME = "process"
FLOOR_GROUP = "bench-faust-floor"
ACCOUNT = "AC0000000000000000000000000000bench"
SMS_OUTCOMES = (  # outcome, share, statuses
    ("delivered", 0.85, ("queued", "sent", "delivered")),
    ("undelivered", 0.05, ("queued", "sent", "undelivered")),
    ("failed", 0.03, ("queued", "failed")),
    ("mms", 0.04, ("queued", "sent")),
    ("no_receipt", 0.03, ("queued", "sent")),
)


def traffic(n: int, seed: int = 1) -> list[Envelope]:
    """About `n` raw callbacks of the last ten minutes, each entity's in provider order."""
    rng = random.Random(seed)
    now = time.time()
    streams: list[list[Envelope]] = []
    total = 0

    def env(kind: CallbackKind, params: dict[str, str], at: float, campaign: str = "") -> Envelope:
        return Envelope(
            kind,
            params[kind.spec.sid_param],
            params,
            at,
            SignatureVerdict.UNCHECKED,
            {"campaign": campaign} if campaign else {},
        )

    while total < n:
        i = len(streams)
        at = now - rng.uniform(0, 600)
        roll = rng.random()
        if roll < 0.80:
            outcome, statuses = _pick_sms(rng)
            sid = f"SM{i:032x}"
            campaign = f"campaign-{i % 5}"
            base = {
                "MessageSid": sid,
                "AccountSid": ACCOUNT,
                "From": f"+1555000{i % 20:04d}",
                "To": f"+1555{rng.randrange(10**7):07d}",
                "Body": "Spring sale: 20% off everything this weekend. Reply STOP to opt out",
                "NumMedia": "1" if outcome == "mms" else "0",
                "NumSegments": "1",
                "ErrorCode": "30003" if outcome == "undelivered" else "",
            }
            stream = [
                env(CallbackKind.SMS, base | {"MessageStatus": s}, at + k, campaign)
                for k, s in enumerate(statuses)
            ]
            if rng.random() < 0.05:  # provider retry
                stream.append(stream[-1])
            if rng.random() < 0.05:  # receipt before `sent`
                stream[-1], stream[-2] = stream[-2], stream[-1]
        elif roll < 0.88:
            sid = f"CA{i:032x}"
            stream = [
                env(CallbackKind.VOICE, _call(sid, status, at + k, rng, seq=k), at + k + 1)
                for k, status in enumerate(("initiated", "ringing", "in-progress", "completed"))
            ]
        elif roll < 0.94:
            sid = f"CA{i:032x}"
            status = "completed" if rng.random() < 0.95 else "failed"
            stream = [env(CallbackKind.INBOUND_CALL, _call(sid, status, at, rng), at + 1)]
        elif roll < 0.98:
            sid = f"RE{i:032x}"
            stream = [
                env(CallbackKind.RECORDING, _recording(sid, status), at + k)
                for k, status in enumerate(("in-progress", "completed"))
            ]
        else:
            sid = f"TR{i:032x}"
            stream = [env(CallbackKind.TRANSCRIPTION, _transcription(sid), at)]
        streams.append(stream)
        total += len(stream)
    slots = sorted((rng.random(), s) for s, stream in enumerate(streams) for _ in stream)
    cursors = [0] * len(streams)
    ordered = []
    for _, s in slots:
        ordered.append(streams[s][cursors[s]])
        cursors[s] += 1
    return ordered


def _pick_sms(rng: random.Random) -> tuple[str, tuple[str, ...]]:
    roll = rng.random()
    for outcome, share, statuses in SMS_OUTCOMES:
        if roll < share:
            return outcome, statuses
        roll -= share
    return SMS_OUTCOMES[0][0], SMS_OUTCOMES[0][2]


def _call(sid: str, status: str, at: float, rng: random.Random, seq: int | None = None) -> dict:
    from email.utils import formatdate

    final = status in ("completed", "failed")
    ours, theirs = f"+1555000{rng.randrange(20):04d}", f"+1555100{rng.randrange(10**4):04d}"
    outbound = seq is not None  # voice callbacks of calls we place; inbound-call otherwise
    params = {
        "CallSid": sid,
        "CallStatus": status,
        "AccountSid": ACCOUNT,
        "From": ours if outbound else theirs,
        "To": theirs if outbound else ours,
        "Timestamp": formatdate(at, usegmt=True),
        "CallDuration": str(rng.randrange(10, 600)) if final else "",
        "AudioInMos": f"{rng.uniform(3.0, 4.6):.2f}" if final else "",
    }
    if seq is not None:
        params |= {"SequenceNumber": str(seq), "Direction": "outbound-api"}
    return params


def _recording(sid: str, status: str) -> dict:
    return {
        "RecordingSid": sid,
        "RecordingStatus": status,
        "AccountSid": ACCOUNT,
        "CallSid": "CA" + sid[2:],
        "RecordingUrl": f"https://example.signalwire.com/recordings/{sid}",
        "RecordingDuration": "42",
    }


def _transcription(sid: str) -> dict:
    return {
        "TranscriptionSid": sid,
        "TranscriptionStatus": "completed",
        "TranscriptionText": "Hello, this is a message about my order, please call me back.",
        "AccountSid": ACCOUNT,
        "CallSid": "CA" + sid[2:],
        "From": "+15553334444",
        "To": "+15550000001",
    }


def preload(settings: Settings, envelopes: list[Envelope]) -> None:
    producer = Producer(
        client_config(settings)
        | {
            "linger.ms": 50,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    for e in envelopes:
        producer.produce(
            topic_name(e.kind.spec.raw_topic, settings.topic_prefix),
            key=e.sid.encode(),
            value=e.to_bytes(),
        )
    producer.poll(0)
    assert producer.flush(60) == 0


class Committed:
    """Committed offsets of one consumer group, summed over topics. Through a consumer's
    committed() rather than bench.common.Offsets.committed: the admin API's
    list_consumer_group_offsets crashed this process (SIGSEGV, confluent-kafka 2.16.1) when
    polled before the group had formed."""

    def __init__(self, offsets: Offsets, group: str, topics: tuple[Topic, ...]) -> None:
        self.tps = [
            TopicPartition(offsets.name(t), p) for t in topics for p in offsets.partitions(t)
        ]
        self.consumer = Consumer(
            client_config(offsets.settings) | {"group.id": group}
        )  # asks for the group's offsets; never joins it

    def __call__(self) -> int:
        try:
            return sum(max(tp.offset, 0) for tp in self.consumer.committed(self.tps, timeout=10))
        except KafkaException:  # the group coordinator moving, say: ask again
            return -1

    def close(self) -> None:
        self.consumer.close()


def run_worker(
    broker: LocalBroker, workdir: Path, envelopes: list[Envelope], argv: list[str]
) -> dict[str, float]:
    """Preload, start the worker `argv`, time it until its groups committed everything."""
    settings = bench_settings(broker.bootstrap, workdir)
    ensure_topics(settings)
    preload(settings, envelopes)
    offsets = Offsets(settings)
    raw_end = sum(offsets.ends(RAW_TOPICS).values())
    floor = "--faust-floor" in argv
    group = settings.topic_prefix + FLOOR_GROUP if floor else intake_group(settings)
    intake = Committed(offsets, group, RAW_TOPICS)
    windows = Committed(offsets, app_id(settings), (Topic.TRANSITIONS,))
    # the groups' coordinator answers before the clock starts, or the first commits go unseen
    wait_until(lambda: intake() >= 0 and windows() >= 0, timeout_s=60, what="the coordinator")
    child = Child(
        "worker", argv, workdir / f"{settings.topic_prefix}log", env=settings_env(settings)
    )
    try:
        started = wait_until(
            lambda: (n := intake()) > 0 and n,
            timeout_s=120,
            what=f"the first commit; log:\n{child.log()}",
            interval_s=0.02,
        )
        first = time.monotonic()
        cpu_first = _cpu(child)
        if started >= raw_end:
            raise RuntimeError("the first commit covered everything: preload more --events")
        wait_until(
            lambda: intake() >= raw_end,
            timeout_s=600,
            what=f"the raw topics' end; log:\n{child.log()}",
        )
        if not floor:
            # the window agent, too, has applied every increment the intake sent
            end = sum(offsets.ends([Topic.TRANSITIONS]).values())
            wait_until(
                lambda: windows() >= end,
                timeout_s=600,
                what=f"the transitions' end; log:\n{child.log()}",
            )
        done = time.monotonic()
        cpu = _cpu(child) - cpu_first
    finally:
        child.stop()
        intake.close()
        windows.close()
    events = raw_end - started
    return {"events_per_s": events / (done - first), "cpu_us_per_event": cpu / events * 1e6}


def _cpu(child: Child) -> float:
    sample = proc_sample(child.pid)
    if sample is None:
        raise RuntimeError(f"the worker exited; log:\n{child.log()}")
    return sample[0]


def faust_floor() -> None:
    """The baseline worker: a faust agent that reads the raw topics and does nothing."""
    import faust
    from faust.worker import Worker

    settings = load_settings()
    app = faust.App(
        settings.topic_prefix + FLOOR_GROUP,
        broker=f"kafka://{settings.kafka_bootstrap}",
        broker_credentials=faust_credentials(settings),
        store="memory://",
        datadir=str(settings.data_dir / "faust"),
        topic_partitions=settings.topic_partitions,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        web_host="127.0.0.1",
        web_port=settings.process_web_port,
        stream_buffer_maxsize=8192,
    )
    raw = app.topic(
        *[topic_name(t, settings.topic_prefix) for t in RAW_TOPICS],
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )

    @app.agent(raw, name="floor", concurrency=1)
    async def floor(stream: Any) -> None:
        async for _ in stream.take_events(5000, within=0.1):
            pass

    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    Worker(app, loglevel="warning", redirect_stdouts=False).execute_from_commandline()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--baseline-events", type=int, default=40_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--faust-floor", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.faust_floor:
        faust_floor()
        return
    logging.basicConfig(level=logging.WARNING)
    machine = machine_info()
    envelopes = traffic(args.events)
    worker = [sys.executable, "-m", "switchboard", "process"]
    floor = [sys.executable, "-m", "bench.process", "--faust-floor"]
    with tempfile.TemporaryDirectory(prefix="bench-process-") as tmp:
        workdir = Path(tmp)
        broker = start_broker(workdir)
        try:
            runs, floors = [], []
            for run in range(args.runs):
                runs.append(run_worker(broker, workdir, envelopes, worker))
                floors.append(run_worker(broker, workdir, envelopes[: args.baseline_events], floor))
                print(f"run {run + 1}: {runs[-1]}  faust floor: {floors[-1]}", flush=True)
        finally:
            broker.stop()
    figures = {
        "events_per_s_1w": round(median(r["events_per_s"] for r in runs)),
        "cpu_us_per_event_1w": round(median(r["cpu_us_per_event"] for r in runs), 1),
        "events_per_cpu_s_1w": round(1e6 / median(r["cpu_us_per_event"] for r in runs)),
        "baseline_faust_noop_events_per_s": round(median(f["events_per_s"] for f in floors)),
        "baseline_faust_noop_cpu_us_per_event": round(
            median(f["cpu_us_per_event"] for f in floors), 1
        ),
        "events": len(envelopes),
        "runs": args.runs,
    }
    config = {"events_per_s_runs": [round(r["events_per_s"]) for r in runs]}
    write_results(NAME, figures, markdown(figures, machine), machine=machine, config=config)
    print(figures)


def markdown(f: dict[str, Any], machine: dict[str, Any]) -> str:
    rows = "\n".join(
        f"| {label} | {rate:,} | {cpu} | {per_cpu_s:,} |"
        for label, rate, cpu, per_cpu_s in (
            (
                "intake + window agent (normalize, state, windows)",
                f["events_per_s_1w"],
                f["cpu_us_per_event_1w"],
                f["events_per_cpu_s_1w"],
            ),
            (
                "baseline: faust no-op `take_events()` agent",
                f["baseline_faust_noop_events_per_s"],
                f["baseline_faust_noop_cpu_us_per_event"],
                round(1e6 / f["baseline_faust_noop_cpu_us_per_event"]),
            ),
        )
    )
    return f"""## Processors: raw callbacks through one worker (`bench/process.py`)

{f["events"]:,} raw callbacks preloaded (80% SMS with receipts, MMS, retries and late
callbacks; voice and inbound calls; recordings and transcriptions), one
`switchboard process` worker; median of {f["runs"]} runs, from its first commit until
the intake and the window agent have committed everything. Machine: {machine["cores"]}
cores ({machine["cpu_model"]}), shared; load {machine["load_avg_1m_at_start"]:.1f} at start.

| worker | callbacks/s | CPU µs per callback | callbacks per CPU-second |
|---|---:|---:|---:|
{rows}

The bar is 10,000 callbacks/s on one worker. The baseline reads the same topics with a
faust agent that does nothing: faust's per-record cost alone, which is why the intake
reads the raw topics with librdkafka in batches and leaves faust the low-rate window
agent (one record per scope partition per intake batch).
"""


if __name__ == "__main__":
    main()
