"""The shared fixtures of real callbacks (`../shared/fixtures/callbacks/*.json`), and how
a provider sends each one: as a form, as JSON, or by GET (the file's notes say so).

Each file is `{source, provider, kind, content_type, params, notes}`. `expected_row`
says, from the file's own values, what its row in the kind's table holds: the
Compatibility fixtures column by column from their parameters, the JSON formats
through the field each column comes from, written out here independently of
`contract.formats`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from contract.kinds import CallbackKind, ParamType

DIR = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "callbacks"
if not DIR.is_dir():  # a worktree sits beside main, both under /work
    DIR = Path("/work/shared/fixtures/callbacks")


@dataclass(frozen=True)
class Fixture:
    name: str
    provider: str
    kind: CallbackKind
    content_type: str  # "form" or "json"
    params: dict[str, Any]
    notes: str

    @property
    def by_get(self) -> bool:
        """Sent with StatusCallbackMethod=GET: the notes say it arrived as a query string."""
        return self.content_type == "form" and "StatusCallbackMethod=GET" in self.notes

    def request(self, base: str = "") -> dict[str, Any]:
        """`method`, `url` and body arguments for an HTTP client (starlette's TestClient)."""
        url = f"{base}/callbacks/{self.kind.value}"
        if self.by_get:
            return {"method": "GET", "url": f"{url}?{urlencode(self.params)}"}
        if self.content_type == "form":
            return {"method": "POST", "url": url, "data": self.params}
        return {
            "method": "POST",
            "url": url,
            "content": json.dumps(self.params).encode(),
            "headers": {"content-type": "application/json"},
        }


def load() -> list[Fixture]:
    fixtures = []
    for path in sorted(DIR.glob("*.json")):
        data = json.loads(path.read_text())
        fixtures.append(
            Fixture(
                name=path.stem,
                provider=data["provider"],
                kind=CallbackKind(data["kind"]),
                content_type=data["content_type"],
                params=data["params"],
                notes=data["notes"],
            )
        )
    return fixtures


def _typed(kind: ParamType, value: Any) -> Any:
    if value is None or value == "":
        return None
    text = str(value)
    match kind:
        case ParamType.INT:
            return int(float(text))
        case ParamType.FLOAT:
            return float(text)
        case ParamType.TIMESTAMP:
            if text.replace(".", "").isdigit():
                return datetime.fromtimestamp(float(text), UTC)
            if text[0].isdigit():
                return datetime.fromisoformat(text)
            return parsedate_to_datetime(text)
    return text


def _at(data: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


# Where each column of a JSON-format fixture comes from (a path in the file's params),
# or a literal ("=value") for the status vocabulary the issue fixes.
_JSON_SOURCES: dict[str, dict[str, str]] = {
    "signalwire-sms-rest-message-status": {
        "message_sid": "id",
        "message_status": "status",
        "account_sid": "project_id",
        "from": "from",
        "to": "to",
        "body": "body",
        "num_segments": "number_of_segments",
        "timestamp": "timestamp",
    },
    "twilio-sms-eventstreams-delivered": {
        "message_sid": "data.messageSid",
        "message_status": "=queued",  # data.messageStatus "QUEUED", lower-cased
        "account_sid": "data.accountSid",
        "from": "data.from",
        "to": "data.to",
        "body": "data.body",
        "num_segments": "data.numberOfSegments",
        "timestamp": "data.timestamp",
    },
    "signalwire-voice-swml-call-state-answered": {
        "call_sid": "params.call_id",
        "call_status": "params.call_state",  # "answered" is already the vocabulary's
        "account_sid": "project_id",
        "from": "params.device.params.from_number",
        "to": "params.device.params.to_number",
        "direction": "params.direction",
        "timestamp": "timestamp",
    },
    "signalwire-recording-swml-record-finished": {
        "recording_sid": "params.recording_id",
        "recording_status": "=completed",  # state "finished"
        "account_sid": "project_id",
        "call_sid": "params.call_id",
        "recording_url": "params.url",
        "recording_duration": "params.duration",
        "recording_channels": "=1",  # params.record.audio.stereo false
    },
}


def expected_row(fixture: Fixture) -> dict[str, Any]:
    """Every column of the kind's table that comes from the callback, as the row must
    hold it: typed, None where the callback has no value."""
    spec = fixture.kind.spec
    sources = _JSON_SOURCES.get(fixture.name)
    if fixture.content_type == "json" and sources is None and spec.sid_param not in fixture.params:
        raise AssertionError(f"{fixture.name}: a JSON fixture with no expected mapping here")
    row: dict[str, Any] = {}
    for param in spec.params:
        if sources is None:
            raw = fixture.params.get(param.name)
        else:
            source = sources.get(param.column)
            if source is None:
                raw = None
            elif source.startswith("="):
                raw = source[1:]
            else:
                raw = _at(fixture.params, source)
        row[param.column] = _typed(param.type, raw)
    return row
