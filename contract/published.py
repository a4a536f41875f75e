"""The topics other programs may subscribe to, and their records, as one AsyncAPI 3
document made from the models in `contract/` (served by the query API at
`/asyncapi.json`; committed as docs/asyncapi.json by `python -m contract.published`).

Every record is a JSON object with a version field (`v` or `version`, named per
message). Versions only add fields: a reader takes the fields it knows and ignores the
rest, as every reader in Switchboard does, so an old subscriber keeps working.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from contract.alerts import VERSION as ALERT_VERSION
from contract.alerts import Alert
from contract.deadletters import DEAD_LETTER_VERSION, DeadLetter
from contract.events import EVENT_VERSION, EventRecord
from contract.topics import Topic, topic_name
from contract.windows import WINDOW_VERSION, CallWindow, DeliveryWindow

DOCUMENT = Path(__file__).resolve().parents[1] / "docs" / "asyncapi.json"


@dataclass(frozen=True)
class Published:
    topic: Topic
    name: str  # the message's name in the document
    model: Any  # the dataclass or TypedDict its JSON is made from
    version_field: str
    version: int
    key: str  # what the record is keyed by
    summary: str


PUBLISHED: tuple[Published, ...] = (
    Published(
        Topic.EVENTS,
        "Event",
        EventRecord,
        "v",
        EVENT_VERSION,
        "the SID",
        "One normalized callback of any kind: every one the edge accepted, duplicates too "
        "(count by SID and status, or read ClickHouse, which de-duplicates).",
    ),
    Published(
        Topic.METRICS_DELIVERY,
        "DeliveryWindow",
        DeliveryWindow,
        "version",
        WINDOW_VERSION,
        "the scope",
        "A scope's delivery counts in one window, published again as they change; the "
        "latest by `updated_at` per (scope, window_s, window_start) holds.",
    ),
    Published(
        Topic.METRICS_CALLS,
        "CallWindow",
        CallWindow,
        "version",
        WINDOW_VERSION,
        "the scope",
        "A scope's call counts, minutes and MOS in one window, published again as they change.",
    ),
    Published(
        Topic.ALERTS,
        "Alert",
        Alert,
        "version",
        ALERT_VERSION,
        "the alert id",
        "One notification: an alert firing, repeating while it fires, or resolved. "
        "`fingerprint` names the trouble; `alert_id` the notification (de-duplicate by it).",
    ),
    Published(
        Topic.CALLBACKS_DEAD_LETTER,
        "CallbackDeadLetter",
        DeadLetter,
        "v",
        DEAD_LETTER_VERSION,
        "the letter id",
        "A callback the intake could not keep (no SID, no status, an unreadable envelope), "
        "whole, with why; `switchboard dead-letters replay` sends it back.",
    ),
    Published(
        Topic.FORWARDS_DEAD_LETTER,
        "ForwardDeadLetter",
        DeadLetter,
        "v",
        DEAD_LETTER_VERSION,
        "the letter id",
        "A forward or alert that could not be sent (refused, or failing every try), whole, "
        "with why.",
    ),
)
BY_TOPIC = {p.topic: p for p in PUBLISHED}


def record_schema(published: Published, ref: str = "#/$defs/{model}") -> dict[str, Any]:
    """The JSON Schema of one topic's records. Every field is always written, so every
    one is required; fields not named are allowed (a newer version's)."""
    schema: dict[str, Any] = TypeAdapter(published.model).json_schema(ref_template=ref)
    properties = schema.setdefault("properties", {})
    properties[published.version_field] = {
        "type": "integer",
        "minimum": 1,
        "description": f"the record's version; {published.version} now. Versions only add fields.",
    }
    schema["required"] = list(properties)
    schema["title"] = published.name
    schema["description"] = published.summary
    return schema


def asyncapi(prefix: str = "") -> dict[str, Any]:
    """The AsyncAPI 3 document of the published topics, under the topic `prefix`."""
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for p in PUBLISHED:
        payload = record_schema(p, ref="#/components/schemas/{model}")
        schemas.update(payload.pop("$defs", {}))
        messages[p.name] = {
            "name": p.name,
            "title": p.name,
            "summary": p.summary,
            "contentType": "application/json",
            "payload": payload,
        }
        channel = p.topic.name.lower()
        channels[channel] = {
            "address": topic_name(p.topic, prefix),
            "description": f"Keyed by {p.key}.",
            "messages": {p.name: {"$ref": f"#/components/messages/{p.name}"}},
        }
        operations[f"receive{p.name}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel}"},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Switchboard topics",
            "version": "1",
            "description": __doc__.split("\n\n")[1].replace("\n", " "),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def render(prefix: str = "") -> str:
    return json.dumps(asyncapi(prefix), indent=2, sort_keys=False) + "\n"


if __name__ == "__main__":
    DOCUMENT.parent.mkdir(exist_ok=True)
    DOCUMENT.write_text(render())
    print(f"wrote {DOCUMENT}", file=sys.stderr)
