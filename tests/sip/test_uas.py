"""The UAS request checks of RFC 3261 §8.2 and the OPTIONS answer of §11."""

from __future__ import annotations

import pytest
from support.sip_messages import INVITE, sip

from pbx.sip import Request, Response, parse
from pbx.sip.uas import Capabilities, check_max_forwards, check_request, options_response

CAPS = Capabilities()


def request(data: bytes) -> Request:
    msg = parse(data)
    assert isinstance(msg, Request)
    return msg


def options(extra: str = "", uri: str = "sip:box.example.com", body: str = "") -> Request:
    return request(
        sip(
            f"""
OPTIONS {uri} SIP/2.0
Via: SIP/2.0/UDP 192.0.2.5:5060;branch=z9hG4bK-opt1
Max-Forwards: 70
From: <sip:probe@example.com>;tag=p1
To: <sip:box.example.com>
Call-ID: opt-1@192.0.2.5
CSeq: 1 OPTIONS
{extra}
"""
        ).replace(b"\r\n\r\n\r\n", b"\r\n\r\n")
        + body.encode()
    )


def test_valid_invite_passes() -> None:
    assert check_request(request(INVITE), CAPS, "t1") is None


@pytest.mark.parametrize(
    ("method", "status"), [("SUBSCRIBE", 405), ("PUBLISH", 405), ("FROBNICATE", 501)]
)
def test_methods_not_supported(method: str, status: int) -> None:
    req = request(INVITE.replace(b"INVITE", method.encode()))
    resp = check_request(req, CAPS, "t1")
    assert isinstance(resp, Response) and resp.status == status
    assert "INVITE" in (resp.headers.get("Allow") or "")
    assert resp.to.tag == "t1"


def test_unknown_scheme_is_416() -> None:
    resp = check_request(options(uri="isbn:2983792873"), CAPS, "t1")
    assert resp is not None and resp.status == 416


def test_unknown_require_is_420_listing_unsupported() -> None:
    resp = check_request(options("Require: replaces, newfeature1, newfeature2"), CAPS, "t1")
    assert resp is not None and resp.status == 420
    assert resp.headers.get("Unsupported") == "newfeature1, newfeature2"


def test_unknown_content_type_is_415_with_accept() -> None:
    req = options("Content-Type: application/unknown\nContent-Length: 4\n", body="abcd")
    resp = check_request(req, CAPS, "t1")
    assert resp is not None and resp.status == 415
    assert "application/sdp" in (resp.headers.get("Accept") or "")


def test_unknown_content_encoding_is_415() -> None:
    extra = "Content-Type: application/sdp\nContent-Encoding: gzip\nContent-Length: 4\n"
    resp = check_request(options(extra, body="abcd"), CAPS, "t1")
    assert resp is not None and resp.status == 415
    assert resp.headers.get("Accept-Encoding") == "identity"


def test_max_forwards_zero() -> None:
    req = request(INVITE.replace(b"Max-Forwards: 70", b"Max-Forwards: 0"))
    resp = check_max_forwards(req, "t1")
    assert resp is not None and resp.status == 483
    assert check_max_forwards(request(INVITE), "t1") is None


def test_options_answer_lists_capabilities() -> None:
    resp = options_response(options(), CAPS, "t9")
    again = parse(bytes(resp))
    assert isinstance(again, Response) and again.status == 200
    assert again.tokens("Allow")[:6] == ["INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER"]
    assert "application/sdp" in (again.headers.get("Accept") or "")
    assert again.to.tag == "t9"
