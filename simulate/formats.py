"""The same simulated callback in each provider format, as the provider would send it:
body, content type, and how it is signed. The reading side is `contract.formats`.

- `compat`: a form post with the Compatibility parameters, Twilio-scheme signature.
- `signalwire-json`: what SignalWire's JSON webhooks send. Messages as the REST
  messaging status callback, recordings as SWML `calling.call.record` events, the
  other kinds as Compatibility JSON (numbers as JSON numbers, as SignalWire's docs
  render them); hex HMAC-SHA1 over the URL and the raw body. Calls are not sent as
  SWML call-state events: those carry no duration and no MOS, which the campaign's
  truth counts.
- `event-streams`: what Twilio sends. Messages as Event Streams CloudEvents (a batch
  of one), signed with `bodySHA256`; the other kinds as Compatibility form posts.
- `mix`: each message, call or recording in one of the three, chosen by its SID.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson

from simulate.callbacks import LATE_S, RECORDING, SMS, Callback
from simulate.http_client import form_body

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


class SimFormat(StrEnum):
    COMPAT = "compat"
    SIGNALWIRE_JSON = "signalwire-json"
    EVENT_STREAMS = "event-streams"
    MIX = "mix"


class Scheme(StrEnum):
    FORM = "form"  # base64 HMAC-SHA1 of the URL and the sorted parameters
    HEX = "hex"  # hex HMAC-SHA1 of the URL and the raw body
    BODY_SHA256 = "body-sha256"  # bodySHA256 in the URL, the form scheme with no parameters


@dataclass(frozen=True, slots=True)
class Rendered:
    content_type: str
    body: bytes
    scheme: Scheme
    params: dict[str, str]  # what the form scheme signs (empty for JSON)


_MIXED = (SimFormat.COMPAT, SimFormat.SIGNALWIRE_JSON, SimFormat.EVENT_STREAMS)


def of(cb: Callback, fmt: SimFormat) -> SimFormat:
    """The format `cb` is sent in: `mix` picks one per SID, so an entity keeps its format."""
    if fmt is not SimFormat.MIX:
        return fmt
    return _MIXED[zlib.crc32(cb.sid.encode()) % len(_MIXED)]


def render(cb: Callback, now: float, fmt: SimFormat) -> Rendered:
    params = cb.params(now)
    fmt = of(cb, fmt)
    if fmt is SimFormat.SIGNALWIRE_JSON:
        if cb.kind is SMS:
            return _json(_rest_message(cb, params, now), Scheme.HEX)
        if cb.kind is RECORDING:
            return _json(_swml_record(cb, params, now), Scheme.HEX)
        return _json({k: _number(v) for k, v in params.items()}, Scheme.HEX)
    if fmt is SimFormat.EVENT_STREAMS and cb.kind is SMS:
        return _json([_cloud_event(cb, params, now)], Scheme.BODY_SHA256)
    return Rendered(FORM, form_body(params), Scheme.FORM, params)


def body_sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _json(data: Any, scheme: Scheme) -> Rendered:
    return Rendered(JSON, orjson.dumps(data), scheme, {})


def _iso(cb: Callback, now: float) -> str:
    at = now - LATE_S if cb.late else now
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _number(text: str) -> Any:
    """A numeric parameter as SignalWire's JSON renders it (AudioInMos stays text)."""
    return int(text) if text.isdigit() and (text == "0" or text[0] != "0") else text


def _rest_message(cb: Callback, p: dict[str, str], now: float) -> dict[str, Any]:
    code = p.get("ErrorCode")
    return {
        "id": p["MessageSid"],
        "project_id": p["AccountSid"],
        "status": p["MessageStatus"],
        "to": p["To"],
        "from": p["From"],
        "body": p["Body"],
        "number_of_segments": _number(p["NumSegments"]),
        "timestamp": _iso(cb, now),
        "error_code": _number(code) if code else None,
        "error_message": None,
    }


_RECORD_STATE = {"in-progress": "recording", "completed": "finished", "absent": "no_input"}


def _swml_record(cb: Callback, p: dict[str, str], now: float) -> dict[str, Any]:
    return {
        "event_type": "calling.call.record",
        "event_channel": f"swml:{p['CallSid']}",
        "timestamp": round(now - LATE_S if cb.late else now, 3),
        "project_id": p["AccountSid"],
        "space_id": "sim-space",
        "params": {
            "state": _RECORD_STATE.get(p["RecordingStatus"], "error"),
            "call_id": p["CallSid"],
            "recording_id": p["RecordingSid"],
            "url": p["RecordingUrl"],
            "duration": _number(p["RecordingDuration"]),
            "record": {"audio": {"format": "wav", "stereo": p["RecordingChannels"] == "2"}},
        },
    }


def _cloud_event(cb: Callback, p: dict[str, str], now: float) -> dict[str, Any]:
    status = p["MessageStatus"]
    code = p.get("ErrorCode")
    data: dict[str, Any] = {
        "messageSid": p["MessageSid"],
        "timestamp": _iso(cb, now),
        "accountSid": p["AccountSid"],
        "from": p["From"],
        "to": p["To"],
        "messageStatus": status.upper(),
        "body": p["Body"],
        "numberOfSegments": _number(p["NumSegments"]),
        "numMedia": _number(p["NumMedia"]),
    }
    if code:
        data["errorCode"] = _number(code)
    return {
        "specversion": "1.0",
        "type": f"com.twilio.messaging.message.{status}",
        "source": "/2010-04-01/Accounts/sim/Messages",
        "id": f"EV{zlib.crc32(f'{cb.sid}{cb.step}'.encode()):08x}",
        "dataschema": "https://events-schemas.twilio.com/Messaging.MessageStatus/7",
        "datacontenttype": JSON,
        "time": _iso(cb, now),
        "data": data,
    }
