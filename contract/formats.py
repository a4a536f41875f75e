"""Every callback format the providers send, and how each becomes the Compatibility
parameters the rest of the pipeline reads: the one place formats differ.

A body's format is read from its shape, never from key order or the URL:

- `compat`: a form body, a GET query, or a JSON object with Compatibility names
  (`MessageSid`, `CallStatus`, ...). SignalWire's Compatibility (LaML/cXML) API,
  Twilio's StatusCallback.
- `signalwire-rest`: a JSON object with `status` and `id` or `project_id`, snake_case.
  SignalWire's REST messaging `status_callback` (also SWML `send_sms`, RELAY).
- `swml`: a JSON object with `event_type` and a `params` object. SignalWire's SWML /
  Call Fabric events (`call_state_url`, `status_url`).
- `event-streams`: a CloudEvent (`specversion`, `type`, `data`), or a JSON array of
  them. Twilio Event Streams webhook sinks.

`read` turns one body into the callbacks it holds (an Event Streams batch holds
several), each with its kind (an SWML event is routed by its `event_type`, a REST
messaging status to `sms`, whatever URL it came to), its SID, its canonical
parameters (Compatibility names, statuses in the Compatibility vocabulary, values as
text) and, for the JSON formats, the event exactly as received. Fields with no
Compatibility name are kept as parameters under their own (dotted) path, so they
land in the `extra` column: an unknown key never costs a callback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from contract.errors import BadCallback
from contract.kinds import SPECS, CallbackKind

logger = logging.getLogger(__name__)


class Format(StrEnum):
    COMPAT = "compat"
    SIGNALWIRE_REST = "signalwire-rest"
    SWML = "swml"
    EVENT_STREAMS = "event-streams"


ACCEPTED = (
    "a form body or GET query with Compatibility parameters (MessageSid, CallSid, ...); "
    "JSON with Compatibility parameters; SignalWire REST messaging status JSON "
    "(id, status); SignalWire SWML events (event_type, params); "
    "Twilio Event Streams CloudEvents (specversion, type, data), one or an array"
)


class UnknownFormat(BadCallback):
    """A body of no format Switchboard knows."""


class UnhandledEvent(BadCallback):
    """A recognised event envelope of a type that no callback kind holds."""


@dataclass(frozen=True, slots=True)
class Callback:
    kind: CallbackKind
    format: Format
    sid: str
    params: dict[str, str]  # Compatibility names and vocabulary, as text
    body: Any = None  # the event as received (JSON formats); None: `params` are the body
    tags: dict[str, str] = field(default_factory=dict)  # from the body (custom_variables)


# Every Compatibility parameter name any kind declares: the shape of a compat JSON body.
_COMPAT_NAMES = frozenset(p.name for spec in SPECS.values() for p in spec.params)


def read(kind: CallbackKind, data: Any) -> list[Callback]:
    """The callbacks in one decoded JSON body (`data`) posted to `kind`'s URL. Raises
    `BadCallback` naming the missing identity, `UnknownFormat` listing what is accepted,
    `UnhandledEvent` for an event type no kind holds."""
    if isinstance(data, list):
        return _event_stream_batch(data)
    if not isinstance(data, dict):
        raise UnknownFormat(f"a JSON {type(data).__name__} is no callback; accepted: {ACCEPTED}")
    if "specversion" in data and "type" in data:
        return [_event_stream(data)]
    if "event_type" in data and isinstance(data.get("params"), dict):
        return [_swml(kind, data)]
    if not _COMPAT_NAMES.isdisjoint(data):
        sid = data.get(kind.spec.sid_param)
        if isinstance(sid, dict | list):
            raise BadCallback(f"{kind.spec.sid_param} is not a string")
        return [compat(kind, {str(k): _text(v) for k, v in data.items()})]
    if "status" in data and ("id" in data or "project_id" in data):
        return [_signalwire_rest(data)]
    raise UnknownFormat(f"no known callback format; accepted: {ACCEPTED}")


def compat(kind: CallbackKind, params: dict[str, str]) -> Callback:
    """A Compatibility callback (form, GET query or JSON): its parameters are the body."""
    sid_param = kind.spec.sid_param
    sid = params.get(sid_param, "").strip()
    if not sid:
        raise BadCallback(f"{sid_param} is missing")
    return Callback(kind, Format.COMPAT, sid, params)


# --- the status vocabulary -------------------------------------------------------------

# SWML `calling.call.state`: call_state (and end_reason once ended) -> CallStatus
_CALL_STATE = {
    "created": "initiated",
    "ringing": "ringing",
    "answered": "answered",
    "ending": "answered",  # hanging up: not yet a final status
}
_END_REASON = {
    None: "completed",
    "": "completed",
    "hangup": "completed",
    "busy": "busy",
    "no_answer": "no-answer",
    "noanswer": "no-answer",
    "cancel": "canceled",
    "declined": "busy",  # the callee refused, as the Compatibility API reports it
    "error": "failed",
}
# SWML `calling.call.connect`: the dialled leg's connect_state -> its CallStatus
_CONNECT_STATE = {
    "connecting": "ringing",
    "connected": "answered",
    "failed": "failed",
    "disconnected": "completed",
}
# SWML `calling.call.record`: state -> RecordingStatus
_RECORD_STATE = {
    "recording": "in-progress",
    "paused": "in-progress",
    "finished": "completed",
    "no_input": "absent",
    "error": "failed",
}


def call_status(text: str) -> str:
    """`NO_ANSWER`, `no_answer`, `In-Progress` -> the Compatibility `no-answer`, ..."""
    return text.strip().lower().replace("_", "-")


def message_status(text: str) -> str:
    """`DELIVERED` -> `delivered`; `partially_delivered` keeps its underscore."""
    return text.strip().lower()


# --- SignalWire REST messaging -----------------------------------------------------------

_REST_SMS = {
    "id": "MessageSid",
    "status": "MessageStatus",
    "project_id": "AccountSid",
    "from": "From",
    "to": "To",
    "body": "Body",
    "number_of_segments": "NumSegments",
    "num_media": "NumMedia",
    "error_code": "ErrorCode",
    "timestamp": "Timestamp",
}


def _signalwire_rest(data: dict[str, Any]) -> Callback:
    params = _mapped(data, _REST_SMS, skip=("custom_variables",))
    params["MessageStatus"] = message_status(params.get("MessageStatus", ""))
    return _identified(CallbackKind.SMS, Format.SIGNALWIRE_REST, params, "id", data, _custom(data))


# --- SignalWire SWML / Call Fabric events -------------------------------------------------

_SWML_TOP = {"project_id": "AccountSid", "timestamp": "Timestamp"}


def _swml(kind: CallbackKind, data: dict[str, Any]) -> Callback:
    event_type = str(data.get("event_type"))
    reader = _SWML_EVENTS.get(event_type)
    if reader is None:
        raise UnhandledEvent(
            f"SWML event_type {event_type[:64]!r} is not one Switchboard keeps "
            f"(it keeps {', '.join(_SWML_EVENTS)})"
        )
    inner: dict[str, Any] = data["params"]
    kind, params, identity = reader(kind, inner)
    for key, name in _SWML_TOP.items():
        if data.get(key) is not None:
            params[name] = _text(data[key])
    for key, value in data.items():
        if key not in _SWML_TOP and key != "params":
            params.setdefault(key, _text(value))
    return _identified(kind, Format.SWML, params, identity, data)


def _device_numbers(params: dict[str, str], device: Any) -> None:
    """Phone legs carry from_number/to_number, SIP legs from/to, under device.params."""
    inner = device.get("params") if isinstance(device, dict) else None
    if not isinstance(inner, dict):
        return
    for name, keys in (("From", ("from_number", "from")), ("To", ("to_number", "to"))):
        value = next((inner[k] for k in keys if inner.get(k) not in (None, "")), None)
        if value is not None:
            params[name] = _text(value)


def _swml_state(kind: CallbackKind, p: dict[str, Any]) -> tuple[CallbackKind, dict[str, str], str]:
    params = _mapped(
        p,
        {"call_id": "CallSid", "direction": "Direction"},
        skip=("call_state", "device"),
    )
    state = str(p.get("call_state") or "").lower()
    if state == "ended":
        reason = p.get("end_reason")
        reason = reason.lower() if isinstance(reason, str) else reason
        params["CallStatus"] = _END_REASON.get(reason, "completed")
    elif state:
        params["CallStatus"] = _CALL_STATE.get(state, call_status(state))
    _device_numbers(params, p.get("device"))
    # call state events fit both call URLs; any other URL means the voice callbacks
    kind = kind if kind in (CallbackKind.VOICE, CallbackKind.INBOUND_CALL) else CallbackKind.VOICE
    return kind, params, "params.call_id"


def _swml_connect(
    kind: CallbackKind, p: dict[str, Any]
) -> tuple[CallbackKind, dict[str, str], str]:
    """A connect reports the dialled leg (`peer`): its call is the one that rang, answered
    or failed; the call that dialled it is its parent."""
    params = _mapped(
        p,
        {"call_id": "ParentCallSid", "failed_reason": "ErrorCode"},
        skip=("connect_state", "peer"),
    )
    peer = p.get("peer") if isinstance(p.get("peer"), dict) else {}
    assert isinstance(peer, dict)
    sid = peer.get("call_id") or p.get("call_id")
    if sid not in (None, ""):
        params["CallSid"] = _text(sid)
    state = str(p.get("connect_state") or "").lower()
    if state:
        params["CallStatus"] = _CONNECT_STATE.get(state, call_status(state))
    _device_numbers(params, peer.get("device"))
    return CallbackKind.VOICE, params, "params.call_id"


def _swml_record(kind: CallbackKind, p: dict[str, Any]) -> tuple[CallbackKind, dict[str, str], str]:
    """`record` puts url/duration/size in params; `record_call` nests them in params.record."""
    record = p.get("record") if isinstance(p.get("record"), dict) else {}
    assert isinstance(record, dict)
    flat = {k: v for k, v in record.items() if not isinstance(v, dict)} | {
        k: v for k, v in p.items() if k != "record"
    }
    names = {
        "recording_id": "RecordingSid",
        "call_id": "CallSid",
        "url": "RecordingUrl",
        "duration": "RecordingDuration",
    }
    params = _mapped(flat, names, skip=("state",))
    if "RecordingSid" not in params and flat.get("control_id"):
        params["RecordingSid"] = _text(flat["control_id"])  # older events name no recording_id
    state = str(p.get("state") or "").lower()
    if state:
        params["RecordingStatus"] = _RECORD_STATE.get(state, call_status(state))
    audio = record.get("audio")
    if isinstance(audio, dict) and isinstance(audio.get("stereo"), bool):
        params["RecordingChannels"] = "2" if audio["stereo"] else "1"
    return CallbackKind.RECORDING, params, "params.recording_id"


_SwmlReader = Callable[[CallbackKind, dict[str, Any]], tuple[CallbackKind, dict[str, str], str]]
_SWML_EVENTS: dict[str, _SwmlReader] = {
    "calling.call.state": _swml_state,
    "calling.call.connect": _swml_connect,
    "calling.call.record": _swml_record,
}


# --- Twilio Event Streams ----------------------------------------------------------------

_MESSAGING = "com.twilio.messaging."
_EVENT_STREAMS_SMS = {
    "messageSid": "MessageSid",
    "messageStatus": "MessageStatus",
    "accountSid": "AccountSid",
    "from": "From",
    "to": "To",
    "body": "Body",
    "errorCode": "ErrorCode",
    "numberOfSegments": "NumSegments",
    "numMedia": "NumMedia",
    "timestamp": "Timestamp",
}


def _event_stream(event: dict[str, Any]) -> Callback:
    event_type = str(event.get("type"))
    data = event.get("data")
    if not event_type.startswith(_MESSAGING) or not isinstance(data, dict):
        raise UnhandledEvent(
            f"Event Streams type {event_type[:80]!r} is not one Switchboard keeps "
            f"(it keeps {_MESSAGING}*)"
        )
    params = _mapped(data, _EVENT_STREAMS_SMS)
    # The status is data.messageStatus; an event without one is named by its type.
    status = params.get("MessageStatus") or event_type.rsplit(".", 1)[-1]
    params["MessageStatus"] = message_status(status)
    if "Timestamp" not in params and event.get("time"):
        params["Timestamp"] = _text(event["time"])
    for key in ("type", "id", "source", "time"):
        if event.get(key) is not None:
            params.setdefault(key, _text(event[key]))
    return _identified(CallbackKind.SMS, Format.EVENT_STREAMS, params, "data.messageSid", event)


def _event_stream_batch(events: list[Any]) -> list[Callback]:
    """A sink's batch: every event of a kept type. Others are logged and left out, since
    refusing the batch would have Twilio retry the kept ones with them, forever."""
    if not events:
        raise UnknownFormat(f"an empty JSON array is no callback; accepted: {ACCEPTED}")
    if not all(isinstance(e, dict) and "specversion" in e and "type" in e for e in events):
        raise UnknownFormat(f"a JSON array must hold CloudEvents; accepted: {ACCEPTED}")
    kept: list[Callback] = []
    skipped: list[str] = []
    for event in events:
        try:
            kept.append(_event_stream(event))
        except UnhandledEvent:
            skipped.append(str(event.get("type"))[:80])
    if not kept:
        raise UnhandledEvent(
            f"no event of a kept type in the batch ({', '.join(sorted(set(skipped)))}); "
            f"Switchboard keeps {_MESSAGING}*"
        )
    if skipped:
        logger.warning(
            "Event Streams batch: kept %d events, left out %d of types %s",
            len(kept),
            len(skipped),
            ", ".join(sorted(set(skipped))),
        )
    return kept


# --- helpers ---------------------------------------------------------------------------


def _identified(
    kind: CallbackKind,
    fmt: Format,
    params: dict[str, str],
    identity: str,
    body: Any,
    tags: dict[str, str] | None = None,
) -> Callback:
    spec = kind.spec
    sid = params.get(spec.sid_param, "").strip()
    if not sid:
        raise BadCallback(f"{identity} is missing ({fmt.value} {kind.value} callback)")
    return Callback(kind, fmt, sid, params, body, tags or {})


def _mapped(
    data: Mapping[str, Any], names: Mapping[str, str], skip: tuple[str, ...] = ()
) -> dict[str, str]:
    """`data`'s fields under their Compatibility names; the rest under their own, nested
    ones flattened (`device.params.to`), so that nothing received is dropped."""
    params: dict[str, str] = {}
    for key, value in data.items():
        name = names.get(key)
        if name is not None:
            if value is not None and value != "":
                params[name] = _text(value)
        elif key not in skip:
            _flatten(params, key, value)
    return params


def _flatten(params: dict[str, str], path: str, value: Any) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(params, f"{path}.{key}", inner)
    elif value is not None:
        params[path] = _text(value)


def _custom(data: Mapping[str, Any]) -> dict[str, str]:
    """REST `custom_variables`, echoed from the send request: tags, as query tags are."""
    custom = data.get("custom_variables")
    if not isinstance(custom, dict):
        return {}
    return {str(k): _text(v) for k, v in custom.items() if not isinstance(v, dict | list)}


def _text(value: Any) -> str:
    """A JSON value as the text a form would carry: numbers as written, null as empty,
    booleans lower-case, objects and arrays as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value).decode()
