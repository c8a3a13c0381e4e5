"""The link's frame codec: every frame round-trips; anything else is a FrameError naming the
field, never another exception."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.link.frames import (
    MAX_CHUNK,
    MAX_ID,
    Body,
    Cancel,
    Frame,
    FrameError,
    Hello,
    Pair,
    Paired,
    Ping,
    Pong,
    Refused,
    Request,
    Response,
    Welcome,
    decode,
    encode,
)

printable = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FFF, exclude_characters="\x7f"),
    max_size=60,
)
word = printable.filter(bool)
ids = st.integers(1, MAX_ID)
token = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.",
    min_size=1,
    max_size=30,
)
header_value = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)
headers = st.lists(st.tuples(token, header_value), max_size=8).map(tuple)
bodies = st.binary(max_size=2048) | st.just(b"\xff" * MAX_CHUNK)
paths = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=80).map(
    lambda p: "/" + p
)

frames: st.SearchStrategy[Frame] = st.one_of(
    st.builds(Pair, word, printable),
    st.builds(Paired, word, word),
    st.builds(Hello, word, word),
    st.builds(Welcome, word),
    st.builds(Refused, word, printable),
    st.builds(Request, ids, token, paths, headers, bodies, st.booleans()),
    st.builds(Response, ids, st.integers(100, 599), headers, bodies, st.booleans()),
    st.builds(Body, ids, bodies, st.booleans()),
    st.builds(Cancel, ids, printable),
    st.builds(Ping, st.integers(0, MAX_ID)),
    st.builds(Pong, st.integers(0, MAX_ID)),
)


@given(frames)
def test_every_frame_round_trips(frame: Frame) -> None:
    text = encode(frame)
    assert decode(text) == frame
    assert text.isascii()  # ensure_ascii: no encoding questions on the wire


@given(st.text(max_size=200))
def test_any_text_decodes_or_fails_cleanly(text: str) -> None:
    with contextlib.suppress(FrameError):
        decode(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(
    frames,
    st.sampled_from(
        [
            "id",
            "method",
            "path",
            "headers",
            "body",
            "data",
            "more",
            "status",
            "seq",
            "code",
            "box_id",
            "credential",
            "reason",
        ]
    ),
    json_values,
)
def test_a_mutated_field_is_refused_by_name_or_accepted(
    frame: Frame, name: str, value: object
) -> None:
    raw = json.loads(encode(frame))
    if name not in raw:
        return
    raw[name] = value
    try:
        decoded = decode(json.dumps(raw))
    except FrameError as exc:
        assert repr(name) in str(exc)
    else:
        assert type(decoded) is type(frame)


REQ = {"type": "request", "id": 1, "method": "GET", "path": "/", "headers": [], "body": ""}


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        (REQ | {"id": 0, "more": False}, "'id'"),
        (REQ | {"method": "G T", "more": False}, "'method'"),
        (REQ | {"path": "x", "more": False}, "'path'"),
        (REQ | {"headers": [["a b", "c"]], "more": False}, "'headers'"),
        (REQ | {"headers": [["a", "c\r\nx: y"]], "more": False}, "'headers'"),
        (REQ, "'more'"),
        ({"type": "body", "id": 1, "data": "!!!", "more": False}, "'data'"),
        ({"type": "body", "id": 1, "data": "", "more": 1}, "'more'"),
        (
            {"type": "response", "id": 1, "status": 99, "headers": [], "body": "", "more": False},
            "'status'",
        ),
        ({"type": "pair", "box_name": "x"}, "'code'"),
        ({"type": "nope"}, "'type'"),
    ],
)
def test_bad_fields_are_named(raw: dict[str, object], named: str) -> None:
    with pytest.raises(FrameError, match=named):
        decode(json.dumps(raw))


def test_oversized_chunk_refused() -> None:
    big = Body(1, b"x" * (MAX_CHUNK + 3), False)
    with pytest.raises(FrameError, match="'data'"):
        decode(encode(big))


def test_binary_messages_refused() -> None:
    with pytest.raises(FrameError, match="binary"):
        decode(b"{}")
