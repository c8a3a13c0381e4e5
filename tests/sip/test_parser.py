"""Parsing and serializing whole messages (RFC 3261 §7, §18.3, §25)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.sip_messages import INVITE, REGISTER, RESPONSE_200, requests, responses, sip

from pbx.sip import (
    Limits,
    MessageTooLarge,
    ParseError,
    RemoteProtocolError,
    Request,
    Response,
    SipError,
    SipUri,
    StreamFramer,
    make_response,
    parse,
)
from pbx.sip.message import Headers, response_from_headers


def test_invite_typed_views() -> None:
    msg = parse(INVITE)
    assert isinstance(msg, Request)
    assert msg.method == "INVITE"
    assert isinstance(msg.uri, SipUri)
    assert (msg.uri.user, msg.uri.host) == ("bob", "biloxi.example.com")
    via = msg.top_via
    assert (via.transport, via.host, via.port) == ("UDP", "pc33.atlanta.example.com", 5060)
    assert via.branch == "z9hG4bK776asdhds" and via.wants_rport and via.rport is None
    assert msg.from_.display_name == "Alice Liddell"
    assert msg.from_.tag == "1928301774"
    assert msg.to.tag is None
    assert msg.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert (msg.cseq.seq, msg.cseq.method) == (314159, "INVITE")
    assert msg.max_forwards == 70
    assert msg.contacts[0].sip_uri.transport == "udp"
    assert msg.tokens("Allow")[:3] == ["INVITE", "ACK", "CANCEL"]
    assert msg.content_type == "application/sdp"
    assert msg.body.startswith(b"v=0\r\n") and msg.body.endswith(b"telephone-event/8000\r\n")


def test_register_multiple_contacts_with_params() -> None:
    msg = parse(REGISTER)
    first, second = msg.contacts
    assert first.params.get("expires") == "3600" and first.params.get("q") == "0.7"
    assert first.sip_uri.params.get("line") == "abc"
    assert second.sip_uri.host == "198.51.100.4"
    assert msg.expires == 3600


def test_response_views_and_record_route_order() -> None:
    msg = parse(RESPONSE_200)
    assert isinstance(msg, Response)
    assert (msg.status, msg.reason) == (200, "OK")
    assert [v.received for v in msg.via] == ["192.0.2.3", None, "192.0.2.1"]
    assert [str(r.uri) for r in msg.record_routes] == [
        "sip:p2.example.com;lr",
        "sip:p1.example.com;lr",
    ]
    assert msg.to.tag == "a6c85cf"


@pytest.mark.parametrize("data", [INVITE, REGISTER, RESPONSE_200])
def test_round_trip(data: bytes) -> None:
    msg = parse(data)
    again = parse(bytes(msg))
    assert again == msg
    assert bytes(again) == bytes(msg)


def test_compact_forms_and_folding() -> None:
    data = sip(
        """
OPTIONS sip:carol@chicago.example.com SIP/2.0
v: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bKhjhs8ass877
f: <sip:alice@atlanta.example.com>
 ;tag=1928301774
t: sip:carol@chicago.example.com
i: a84b4c76e66710
CSeq:	63104	OPTIONS
m: <sip:alice@pc33.atlanta.example.com>
l: 0

"""
    )
    msg = parse(data)
    assert msg.from_.tag == "1928301774"
    assert msg.headers.get("Call-ID") == "a84b4c76e66710"
    assert msg.cseq.seq == 63104
    assert b"Via: SIP/2.0/TCP" in bytes(msg) and b"Content-Length: 0" in bytes(msg)


def test_list_headers_split_outside_quotes_and_brackets() -> None:
    data = INVITE.replace(
        b"Contact: <sip:alice@pc33.atlanta.example.com;transport=udp>",
        b'Contact: "Doe, John" <sip:a@x.example.com;p=1>, <sip:b@y.example.com>',
    )
    msg = parse(data)
    assert [c.display_name for c in msg.contacts] == ["Doe, John", None]


def test_datagram_extra_bytes_after_content_length_are_ignored() -> None:
    msg = parse(REGISTER + b"INVITE garbage that follows")
    assert msg.body == b""


def test_datagram_without_content_length_takes_the_rest() -> None:
    data = re.sub(rb"Content-Length: \d+\r\n", b"", INVITE)
    msg = parse(data)
    assert msg.body.startswith(b"v=0")


def test_content_length_beyond_datagram_is_400() -> None:
    data = REGISTER.replace(b"Content-Length: 0", b"Content-Length: 50")
    with pytest.raises(ParseError) as info:
        parse(data)
    assert info.value.status == 400
    assert info.value.headers is not None  # enough to answer statelessly


@pytest.mark.parametrize(
    ("edit", "status"),
    [
        ((b"CSeq: 1826 REGISTER", b"CSeq: 1826 INVITE"), 400),
        ((b"CSeq: 1826 REGISTER", b"CSeq: 99999999999 REGISTER"), 400),
        ((b"Max-Forwards: 70", b"Max-Forwards: 256"), 400),
        ((b"Call-ID: 1j9FpLxk3uxtm8tn@192.0.2.10\r\n", b""), 400),
        ((b"CSeq: 1826 REGISTER\r\n", b""), None),  # the answer could not be matched: drop
        ((b"To: ", b"To: <sip:a@b>\r\nTo: "), 400),
        ((b"SIP/2.0\r\nVia", b"SIP/7.0\r\nVia"), 505),
        ((b"REGISTER sip:", b"REGISTER  sip:"), 400),
        ((b"REGISTER sip:office.example.com", b"REGISTER <sip:office.example.com>"), 400),
        ((b"Via: SIP/2.0/UDP 192.0.2.10:5062", b"Via: SIP/2.0/UDP 192.0.2.10:99999"), 400),
        ((b"REGISTER sip:office.example.com", b"REGISTER sip:office.example.com?a=b"), 400),
        ((b"Expires: 3600", b"Expires: 3600\r\nBad Header Line"), 400),
    ],
)
def test_bad_requests_get_the_right_reaction(edit: tuple[bytes, bytes], status: int | None) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse(REGISTER.replace(*edit))
    assert info.value.status == status


def test_bad_response_is_dropped() -> None:
    with pytest.raises(ParseError) as info:
        parse(RESPONSE_200.replace(b"200 OK", b"2000 OK"))
    assert info.value.status is None
    with pytest.raises(ParseError) as info:
        parse(RESPONSE_200.replace(b"CSeq: 314159 INVITE", b"CSeq: x"))
    assert info.value.status is None


def test_size_and_header_limits() -> None:
    with pytest.raises(MessageTooLarge) as info:
        parse(INVITE, Limits(max_message=100))
    assert info.value.status == 513
    many = REGISTER.replace(b"Expires: 3600\r\n", b"X-A: 1\r\n" * 300)
    with pytest.raises(MessageTooLarge):
        parse(many)


def test_stateless_answer_from_broken_request() -> None:
    with pytest.raises(ParseError) as info:
        parse(REGISTER.replace(b"CSeq: 1826 REGISTER", b"CSeq: 1826 INVITE"))
    assert info.value.headers is not None
    answer = response_from_headers(info.value.headers, 400, info.value.reason, to_tag="x1")
    again = parse(bytes(answer))
    assert isinstance(again, Response) and again.status == 400
    assert again.to.tag == "x1"
    assert again.reason == "CSeq method does not match the request method"


def test_make_response_copies_the_right_headers() -> None:
    req = parse(INVITE)
    assert isinstance(req, Request)
    resp = make_response(req, 180, to_tag="b1", extra=[("contact", "<sip:bob@192.0.2.4>")])
    parsed = parse(bytes(resp))
    assert isinstance(parsed, Response)
    assert parsed.via == req.via and parsed.cseq == req.cseq and parsed.call_id == req.call_id
    assert parsed.to.tag == "b1" and parsed.from_ == req.from_
    assert parsed.headers.get("Contact") == "<sip:bob@192.0.2.4>"
    assert make_response(req, 100, to_tag="b1").to.tag is None  # 100 carries no tag


def test_header_edits_make_new_messages() -> None:
    req = parse(INVITE)
    edited = req.with_added_header("Via", "SIP/2.0/UDP box.example.com;branch=z9hG4bKx", first=True)
    assert len(edited.via) == 2 and len(req.via) == 1
    popped = edited.with_header("Via", *edited.headers.values("Via")[1:])
    assert popped.via == req.via
    assert req.with_body(b"").headers.get("Content-Type") is None
    assert Headers([("v", "x"), ("CALL-id", "y")]).get("via") == "x"


# ------------------------------------------------------------------------------ streams


def test_stream_framer_splits_and_joins() -> None:
    framer = StreamFramer()
    stream = b"\r\n\r\n" + REGISTER + INVITE + b"\r\n" + RESPONSE_200
    got = []
    for i in range(0, len(stream), 7):
        framer.feed(stream[i : i + 7])
        while (msg := framer.next_message()) is not None:
            got.append(msg)
    assert [type(m).__name__ for m in got] == ["Request", "Request", "Response"]
    assert got[1].body == parse(INVITE).body
    assert framer.keepalives == 1 and framer.buffered == 0


def test_stream_requires_content_length() -> None:
    framer = StreamFramer()
    framer.feed(REGISTER.replace(b"Content-Length: 0\r\n", b""))
    with pytest.raises(ParseError) as info:
        framer.next_message()
    assert info.value.status == 400 and framer.broken


def test_stream_oversized_header_block_breaks_the_stream() -> None:
    framer = StreamFramer(Limits(max_message=1000))
    framer.feed(b"INVITE sip:a@b SIP/2.0\r\n" + b"X: y\r\n" * 400)
    with pytest.raises(MessageTooLarge):
        framer.next_message()


# ------------------------------------------------------------------------ properties


@settings(max_examples=300, deadline=None)
@given(requests() | responses())
def test_property_round_trip(data: bytes) -> None:
    msg = parse(data)
    again = parse(bytes(msg))
    assert again == msg
    assert bytes(again) == bytes(msg)
    # The typed views survive the round trip too.
    assert again.via == msg.via and again.from_ == msg.from_ and again.cseq == msg.cseq


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([INVITE, REGISTER, RESPONSE_200]),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255), st.integers(0, 2)), max_size=8),
)
def test_property_mutations_raise_only_stack_errors(
    data: bytes, edits: list[tuple[int, int, int]]
) -> None:
    buf = bytearray(data)
    for pos, byte, op in edits:
        pos %= len(buf) + 1
        if op == 0 and pos < len(buf):
            buf[pos] = byte
        elif op == 1:
            buf.insert(pos, byte)
        elif pos < len(buf):
            del buf[pos]
    try:
        msg = parse(bytes(buf))
    except SipError:
        return
    # Whatever parses must serialize to something that parses to the same message.
    assert parse(bytes(msg)) == msg
