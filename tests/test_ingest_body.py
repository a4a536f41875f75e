"""The edge's own form parser gives what the standard library's `parse_qsl` gives
(first value of a repeated name), on any input: it only skips unquoting what needs none."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.body import FORM, JSON, decode, parse_form

# what form bodies and query strings are made of, weighted towards the tricky characters
chars = st.one_of(st.sampled_from("&=+%;?#/ 0aF\x00é€😀"), st.characters())
forms = st.text(chars, max_size=200)


def first_wins(pairs: list[tuple[str, str]]) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in pairs:
        params.setdefault(name, value)
    return params


@given(st.lists(st.tuples(st.text(), st.text()), max_size=20))
def test_an_encoded_form_decodes_to_its_first_values(pairs: list[tuple[str, str]]) -> None:
    assert parse_form(urlencode(pairs), strict=True) == first_wins(pairs)


@given(forms)
def test_lenient_parsing_matches_parse_qsl(text: str) -> None:
    expected = first_wins(parse_qsl(text, keep_blank_values=True, errors="replace"))
    assert parse_form(text, strict=False) == expected


@given(forms.filter(bool))
def test_strict_parsing_accepts_and_refuses_what_parse_qsl_does(text: str) -> None:
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True, errors="strict")
    except ValueError:  # UnicodeDecodeError is one
        with pytest.raises(ValueError):
            parse_form(text, strict=True)
    else:
        assert parse_form(text, strict=True) == first_wins(pairs)


def test_too_many_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="more than 1000 fields"):
        parse_form("&".join(["a=1"] * 1001), strict=True)
    assert len(parse_form("&".join(f"a{i}=1" for i in range(1000)), strict=True)) == 1000


def test_decode_by_content_type() -> None:
    form = decode(f"{FORM}; charset=UTF-8", b"MessageSid=SM1&Body=caf%C3%A9+%26+co&MessageSid=x")
    assert form.params == {"MessageSid": "SM1", "Body": "café & co"}
    assert not form.is_json
    body = decode("Application/JSON", b'{"CallSid": "CA1", "CallDuration": 7, "X": null}')
    # JSON is decoded as it is; contract.formats reads its format (tests/test_formats.py)
    assert body.data == {"CallSid": "CA1", "CallDuration": 7, "X": None}
    assert body.params is None
    assert body.is_json
    assert decode(JSON, b'[{"specversion": "1.0"}]').data == [{"specversion": "1.0"}]
