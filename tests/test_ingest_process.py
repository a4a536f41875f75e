"""`switchboard ingest` as the process operators run: SIGTERM stops it cleanly with every
acknowledged callback on Kafka, and with several workers /metrics counts all of them."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from contract.envelope import Envelope
from contract.settings import Settings
from contract.topics import Topic
from tests.harness import Stage, post_form, read_topic, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def sms(i: int) -> dict[str, str]:
    return {"MessageSid": f"SM{i:032d}", "MessageStatus": "delivered", "To": f"+1555{i:07d}"}


def test_sigterm_mid_traffic_exits_0_and_keeps_every_acknowledged_callback(
    topics: Settings, tmp_path: Path
) -> None:
    edge = Stage("ingest", topics, tmp_path).start()
    url = f"http://127.0.0.1:{topics.ingest_port}/callbacks/sms"
    try:
        wait_for(lambda: post_form(url, sms(0)) == 204, timeout=60, what="the edge")
        answers = {0: 204}

        def send(i: int) -> None:
            answers[i] = post_form(url, sms(i), timeout=10)

        with ThreadPoolExecutor(8) as pool:
            for i in range(1, 600):
                pool.submit(send, i)
            # 150 acknowledged, not merely answered: a slow host may refuse a few meanwhile
            # (counted over a copy: the senders add to `answers` all the while)
            wait_for(
                lambda: sum(code == 204 for code in list(answers.values())) > 150,
                timeout=60,
                what="traffic to flow",
            )
            assert edge.terminate() == 0, edge.log()[-3000:]
    finally:
        if edge.alive():
            edge.kill()

    assert set(answers.values()) <= {204, 0}, set(answers.values())  # 0: no answer, refused
    acknowledged = {sms(i)["MessageSid"] for i, code in answers.items() if code == 204}
    assert len(acknowledged) > 150
    records = read_topic(topics, Topic.CALLBACKS_SMS, expect=len(acknowledged))
    landed = {Envelope.from_bytes(r.value()).sid for r in records}
    assert acknowledged <= landed
    assert "edge stopped" in edge.log()


def _requests_204(text: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "switchboard_ingest_requests_total"
        and sample.labels == {"kind": "sms", "status": "204"}
    )


def test_two_workers_report_their_metrics_together_and_stop_cleanly(
    topics: Settings, tmp_path: Path
) -> None:
    settings = topics.model_copy(update={"ingest_workers": 2})
    metrics_dir = settings.data_dir / "prometheus" / f"ingest-{settings.ingest_port}"
    metrics_dir.mkdir(parents=True)
    (metrics_dir / "counter_1.db").write_bytes(b"a previous run's file")
    edge = Stage("ingest", settings, tmp_path).start()
    base = f"http://127.0.0.1:{settings.ingest_port}"
    try:
        url = f"{base}/callbacks/sms"
        wait_for(lambda: post_form(url, sms(0)) == 204, timeout=60, what="the edge")
        sent = 1

        def both_workers_served() -> bool:
            # which worker accepts a connection is the kernel's choice: post until both did
            nonlocal sent
            with ThreadPoolExecutor(8) as pool:
                codes = list(pool.map(lambda i: post_form(url, sms(i)), range(sent, sent + 40)))
            assert codes == [204] * 40
            sent += 40
            found = re.findall(r"(SpawnProcess-\d+) ingest.callbacks: accepted", edge.log())
            return len(set(found)) == 2

        wait_for(both_workers_served, timeout=90, what="both workers to serve callbacks")
        # each scrape lands on either worker; every one must count every callback
        for _ in range(6):
            with httpx2.Client() as client:  # a fresh connection each time
                assert _requests_204(client.get(f"{base}/metrics").text) == sent
        assert not (metrics_dir / "counter_1.db").exists()
        assert edge.terminate() == 0, edge.log()[-3000:]
    finally:
        if edge.alive():
            edge.kill()
    assert not metrics_dir.exists()
