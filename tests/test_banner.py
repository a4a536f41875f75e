"""The `switchboard run` banner's example command, as a newcomer pastes it: one shell
command in 80 columns that the edge answers 204, with the `+` of the number kept, and
signed when the edge checks signatures."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from pydantic import SecretStr

from contract.envelope import Envelope, SignatureVerdict
from contract.settings import Settings
from contract.topics import Topic
from switchboard.supervisor import EXAMPLE_PARAMS, example_curl
from tests.harness import Stage, read_topic, wait_for

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_the_banner_curl_line_pastes_whole_and_lands_the_number_with_its_plus(
    topics: Settings, tmp_path: Path, signed: bool
) -> None:
    settings = topics.model_copy(update={"signing_key": SecretStr("demo-key")} if signed else {})
    command = example_curl(settings)
    assert all(len(line) <= 80 for line in command.splitlines()), command
    edge = Stage("ingest", settings, tmp_path).start()
    try:
        health = ["curl", "-sf", f"http://127.0.0.1:{settings.ingest_port}/healthz"]
        wait_for(lambda: subprocess.run(health, capture_output=True).returncode == 0, what="edge")
        pasted = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30)
    finally:
        assert edge.terminate() == 0
    assert pasted.returncode == 0, pasted.stderr
    assert pasted.stdout.splitlines()[0].split()[1] == "204", pasted.stdout
    [record] = read_topic(settings, Topic.CALLBACKS_SMS, expect=1)
    envelope = Envelope.from_bytes(record.value())
    assert envelope.params["From"] == EXAMPLE_PARAMS["From"] == "+15550001111"
    assert envelope.tags == {"campaign": "demo"}
    expected = SignatureVerdict.VALID if signed else SignatureVerdict.UNCHECKED
    assert envelope.signature is expected
