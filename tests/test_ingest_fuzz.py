"""Callbacks generated two ways, each a property of every example (no test depends on how
many random examples happen to be valid):

- well-formed ones, with random parameters, encodings, unicode, repeated keys and
  injection strings: every one is a 204 and lands on its kind's raw topic, once, as an
  envelope holding its SID;
- hostile ones, each with at least one defect the edge must refuse (an unknown kind, no
  SID, an unsupported media type, an undecodable body, a body over the limit) and random
  noise besides: every one is a 4xx, never a 500, and nothing lands.

The edge runs in-process, with its real producer and broker."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus, urlencode

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from contract.envelope import Envelope
from contract.kinds import CallbackKind
from contract.settings import Settings
from ingest.app import create_app
from tests.harness import CI, read_topic, records_on_topics, warm_idempotence

pytestmark = pytest.mark.kafka

INJECTIONS = [
    "' OR '1'='1",
    "'); DROP TABLE sms_events; --",
    "<script>alert(1)</script>",
    "${jndi:ldap://127.0.0.1/x}",
    "{{7*7}}{% raw %}",
    "../../../../etc/passwd",
    "\r\nX-Injected: 1\r\n",
    "%00%0d%0a",
    "\x00\x01\x7f",
    "\u202egnp.exe",
    "😀" * 40,
    "𝕊𝕄𝟙",
    " ",
    "",
]
PARAM_NAMES = sorted({p.name for kind in CallbackKind for p in kind.spec.params})
FORM_TYPES = [
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=utf-8",
    "APPLICATION/X-WWW-FORM-URLENCODED",
]
JSON_TYPES = ["application/json", "application/json; charset=utf-8", "Application/JSON"]
UNSUPPORTED_TYPES = [
    "text/plain",
    "multipart/form-data; boundary=x",
    "application/xml",
    "application/jsonx",
    "",
    ";;",
    None,  # no content-type header at all
]
KINDS = {kind.value for kind in CallbackKind}
# the edge's default limit (the test's settings keep it): a body over it is a 413
MAX_BODY = Settings.model_fields["max_body_bytes"].default


@dataclass
class Case:
    path: str
    body: bytes
    headers: dict[str, str]


huge = st.builds(lambda c, n: c * n, st.sampled_from("aé😀%&"), st.integers(0, 70_000))
short = st.one_of(st.text(max_size=60), st.sampled_from(INJECTIONS))
text = st.one_of(short, huge)
names = st.one_of(st.sampled_from(PARAM_NAMES), st.text(max_size=20), st.sampled_from(INJECTIONS))
# JSON values the edge keeps as text (integers of any size; infinities are not JSON)
json_scalars = st.one_of(
    short, st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.booleans(), st.none()
)
nested = st.one_of(
    st.lists(json_scalars, min_size=1, max_size=3),
    st.dictionaries(st.text(), json_scalars, max_size=3),
)
sids = st.one_of(st.text(min_size=1, max_size=40), st.sampled_from(INJECTIONS)).filter(str.strip)
blanks = st.sampled_from(["", " ", "\t", " \r\n "])


def _others(draw: st.DrawFn, kind: CallbackKind, values: st.SearchStrategy[str]) -> list[Any]:
    """Random parameters besides the SID (none of them named like it), with repeats."""
    sid_param = kind.spec.sid_param
    pairs = draw(st.lists(st.tuples(names.filter(lambda n: n != sid_param), values), max_size=12))
    if draw(st.booleans()) and pairs:  # repeated keys
        pairs += draw(st.lists(st.sampled_from(pairs), max_size=3))
    return pairs


def _query(draw: st.DrawFn) -> str:
    """Tags in the query string: read leniently, so never a reason to refuse."""
    query = urlencode(draw(st.lists(st.tuples(st.text(max_size=10), short), max_size=4)))
    return f"?{query}" if query else ""


def _form(pairs: list[Any]) -> bytes:
    return urlencode(pairs).encode()


def _json(pairs: list[Any]) -> bytes:
    return json.dumps(dict(pairs), ensure_ascii=False).encode()


@st.composite
def valid_cases(draw: st.DrawFn) -> tuple[Case, CallbackKind, str]:
    """A well-formed callback of a known kind, holding its SID once (no other parameter
    has its name), under the body limit; and its kind and SID."""
    kind = draw(st.sampled_from(CallbackKind))
    sid = draw(sids)
    # at most one long value: twelve parameters and 3,000 four-byte characters, each
    # percent-encoded to twelve bytes, stay under the 64 KiB limit
    big = st.builds(lambda c, n: c * n, st.sampled_from("aé😀%&"), st.integers(0, 3_000))
    others = _others(draw, kind, short)
    if draw(st.booleans()) and others:
        i = draw(st.integers(0, len(others) - 1))
        others[i] = (others[i][0], draw(big))
    at = draw(st.integers(0, len(others)))
    if draw(st.booleans()):
        pairs = [*others[:at], (kind.spec.sid_param, sid), *others[at:]]
        body, content_type = _form(pairs), draw(st.sampled_from(FORM_TYPES))
    else:
        # an object or array value is kept as its JSON text: never a reason to refuse
        scalars = [(name, draw(st.one_of(st.just(v), json_scalars, nested))) for name, v in others]
        pairs = [*scalars[:at], (kind.spec.sid_param, sid), *scalars[at:]]
        body, content_type = _json(pairs), draw(st.sampled_from(JSON_TYPES))
    assert len(body) <= MAX_BODY, len(body)
    path = f"/callbacks/{kind.value}{_query(draw)}"
    return Case(path, body, {"content-type": content_type}), kind, sid


DEFECTS = ["unknown_kind", "no_sid", "unsupported_type", "bad_form", "bad_json", "too_large"]


@st.composite
def hostile_cases(draw: st.DrawFn) -> Case:
    """A callback with at least one defect the edge must refuse, and random noise."""
    defect = draw(st.sampled_from(DEFECTS))
    kind = draw(st.sampled_from(CallbackKind))
    raw_kind = kind.value
    if defect == "unknown_kind":
        unknown = st.one_of(st.text(max_size=20), st.sampled_from(INJECTIONS))
        raw_kind = draw(unknown.filter(lambda k: k not in KINDS))
    others = _others(draw, kind, text)
    sid: list[Any] = []
    if defect != "no_sid" and draw(st.integers(0, 3)):  # mostly, the SID is there
        sid = [(kind.spec.sid_param, draw(sids))]
    elif defect == "no_sid" and draw(st.booleans()):  # or there, but blank
        sid = [(kind.spec.sid_param, draw(blanks))]
    pairs = [*sid, *others]
    is_json = draw(st.booleans())
    body = _json(pairs) if is_json else _form(pairs)
    content_type: str | None = draw(st.sampled_from(JSON_TYPES if is_json else FORM_TYPES))

    if defect == "unsupported_type":
        content_type = draw(st.sampled_from(UNSUPPORTED_TYPES))
    elif defect == "bad_form":
        content_type = draw(st.sampled_from(FORM_TYPES))
        body = draw(
            st.sampled_from(
                [
                    _form(pairs) + b"&" + quote_plus(draw(short)).encode(),  # a field with no =
                    # not UTF-8 once unquoted (first, so it is not a repeat left quoted)
                    b"Body=%FF&" + _form(pairs),
                    draw(st.binary(max_size=3000)) + b"\xff",  # not UTF-8 at all
                ]
            )
        )
    elif defect == "bad_json":
        content_type = draw(st.sampled_from(JSON_TYPES))
        body = draw(
            st.sampled_from(
                [
                    _json(pairs)[:-1],  # cut short
                    # a scalar or an array that is not of events: no known format
                    json.dumps(draw(st.one_of(json_scalars, st.lists(json_scalars)))).encode(),
                ]
            )
        )
    elif defect == "too_large":
        padding = draw(st.integers(MAX_BODY + 1, MAX_BODY + 5_000))
        body = _form([*pairs, ("Padding", "x" * padding)])

    path = f"/callbacks/{quote(raw_kind, safe='')}{_query(draw)}"
    headers = {"content-type": content_type} if content_type is not None else {}
    return Case(path, body, headers)


@pytest.fixture
def edge(topics: Settings) -> Iterator[TestClient]:
    warm_idempotence(topics)
    # raise_server_exceptions: a crash in the edge fails the example, it is not hidden in a 500
    with TestClient(create_app(topics), raise_server_exceptions=True) as client:
        yield client


def test_well_formed_callbacks_are_each_204_and_land_once(
    edge: TestClient, topics: Settings
) -> None:
    sent: defaultdict[CallbackKind, list[str]] = defaultdict(list)

    @hypothesis_settings(
        max_examples=100,
        deadline=None,
        database=None,
        derandomize=CI,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(generated=valid_cases())
    def post(generated: tuple[Case, CallbackKind, str]) -> None:
        case, kind, sid = generated
        response = edge.post(case.path, content=case.body, headers=case.headers)
        assert response.status_code == 204, response.text
        sent[kind].append(sid)

    post()

    for kind in CallbackKind:
        records = read_topic(topics, kind.spec.raw_topic, expect=len(sent[kind]))
        assert len(records) == len(sent[kind]), kind
        envelopes = [Envelope.from_bytes(record.value()) for record in records]
        for record, envelope in zip(records, envelopes, strict=True):
            assert envelope.kind is kind
            assert envelope.sid and envelope.sid == envelope.params[kind.spec.sid_param].strip()
            assert record.key() == envelope.sid.encode()
        assert sorted(e.params[kind.spec.sid_param] for e in envelopes) == sorted(sent[kind])
    assert sum(records_on_topics(topics).values()) == sum(map(len, sent.values()))


def test_hostile_callbacks_are_each_4xx_and_nothing_lands(
    edge: TestClient, topics: Settings
) -> None:
    @hypothesis_settings(
        max_examples=200,
        deadline=None,
        database=None,
        derandomize=CI,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(case=hostile_cases())
    def post(case: Case) -> None:
        response = edge.post(case.path, content=case.body, headers=case.headers)
        assert 400 <= response.status_code < 500, (response.status_code, response.text)

    post()

    assert sum(records_on_topics(topics).values()) == 0
