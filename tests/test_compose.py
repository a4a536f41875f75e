"""Both docker-compose files are Compose files, and the cluster's parts agree.

No Docker runs where these tests run, so `docker compose config` cannot check them:
they are validated against the Compose Specification's JSON schema instead, vendored as
tests/vendor/compose-spec.json from github.com/compose-spec/compose-spec (Apache-2.0),
schema/compose-spec.json at commit 170098ba07d9f53c383a41bfd4c5166b0a4529a6.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from contract.settings import load_settings
from tests.harness import ROOT

SCHEMA = json.loads((Path(__file__).parent / "vendor" / "compose-spec.json").read_text())


def _compose(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / name).read_text())
    return loaded


@pytest.mark.parametrize("name", ["docker-compose.yml", "docker-compose.cluster.yml"])
def test_the_compose_files_follow_the_compose_specification(name: str) -> None:
    compose = _compose(name)
    jsonschema.Draft7Validator(SCHEMA).validate(compose)
    # what the schema leaves open: services start after services that exist, and mount
    # files that exist
    services = compose["services"]
    for service in services.values():
        depends = service.get("depends_on", {})
        assert set(depends) <= set(services)
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source
            else:
                assert source in compose["volumes"], source


def test_an_invalid_compose_file_is_refused() -> None:
    compose = _compose("docker-compose.cluster.yml")
    compose["services"]["kafka-1"]["restart"] = ["always"]  # a list where a string goes
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(SCHEMA).validate(compose)


def test_the_cluster_files_agree_with_each_other_and_with_the_settings() -> None:
    services = _compose("docker-compose.cluster.yml")["services"]
    brokers = {name: s for name, s in services.items() if name.startswith("kafka-")}
    assert len(brokers) == 3
    voters = {s["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"] for s in brokers.values()}
    assert voters == {"1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"}
    assert sorted(s["environment"]["KAFKA_NODE_ID"] for s in brokers.values()) == [1, 2, 3]
    assert len({s["environment"]["CLUSTER_ID"] for s in brokers.values()}) == 1

    env = {k: str(v) for k, v in services["sink"]["environment"].items()}
    settings = load_settings(
        _env_file=None, **{k.removeprefix("SWITCHBOARD_").lower(): v for k, v in env.items()}
    )  # the stages' settings are valid settings
    assert settings.kafka_bootstrap == ",".join(f"{n}:9092" for n in sorted(brokers))
    assert (settings.topic_replication, settings.topic_min_insync_replicas) == (3, 2)

    cluster = ET.parse(ROOT / "deploy" / "clickhouse" / "cluster.xml").getroot()
    [named] = cluster.findall("remote_servers/*")
    assert named.tag == settings.clickhouse_cluster
    replicas = [r.findtext("host", "") for r in named.iter("replica")]
    servers = sorted(
        name for name in services if name.startswith("clickhouse-") and name[-1].isdigit()
    )
    assert sorted(replicas) == servers == ["clickhouse-1", "clickhouse-2"]
    for server in servers:
        assert services[server]["hostname"] == server
        [macros] = [
            v.split(":")[0] for v in services[server]["volumes"] if v.endswith("macros.xml:ro")
        ]
        root = ET.parse(ROOT / macros).getroot()
        assert root.findtext("macros/replica") == server
        assert root.findtext("macros/shard") == "1"
    keeper = cluster.find("zookeeper/node")
    assert keeper is not None and keeper.findtext("host") in services
    assert settings.clickhouse_dsn.split("@")[1].split(":")[0] in servers
