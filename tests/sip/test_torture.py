"""RFC 4475 and RFC 5118 torture messages through the parser and the UAS checks.

Each fixture's expected reaction comes from tests/data/torture/manifest.json (written from the
RFC text). A few reactions belong to a particular element (a registrar rejecting a non-SIP AoR,
a proxy refusing to forward with Max-Forwards 0, a dropped stray response): at this level
those messages must parse; the interop tests check the element's answer on the wire.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pbx.sip import Request, SipError, parse
from pbx.sip.uas import Capabilities, check_request

DATA = Path(__file__).parent.parent / "data" / "torture"
MANIFEST: dict[str, dict[str, object]] = json.loads((DATA / "manifest.json").read_text())
CAPS = Capabilities()

# Reactions that need a particular element, not the parser: they must parse here.
ELEMENT_REACTIONS = {
    "unksm2": "a registrar rejects a To that is not a SIP URI (400)",
    "regaut01": "an authenticating registrar challenges (401)",
    "zeromf": "483 only when the element would forward the request",
    "bcast": "a response matching no client transaction is dropped by the transaction layer",
}
# Where the RFC names a second acceptable answer.
ALSO_ACCEPTABLE = {"mismatch02": {"400"}, "sdp01": {"400"}}
# RFC 5118 publishes these as valid but with a wrong Content-Length (see the fixtures README).
WRONG_LENGTH_IN_RFC = {"v6-ipv6-in-sdp", "v6-mult-ip-in-sdp", "v6-ipv4-mapped-ipv6"}


def react(data: bytes) -> str:
    """What the box does with the message: "accept", a status code, or "drop"."""
    try:
        msg = parse(data)
    except SipError as exc:
        return "drop" if exc.status is None else str(exc.status)
    if isinstance(msg, Request):
        answer = check_request(msg, CAPS, "t")
        if answer is not None:
            return str(answer.status)
    assert parse(bytes(msg)) == msg, "an accepted message must round-trip"
    return "accept"


def fixed_length(data: bytes) -> bytes:
    head, _, body = data.partition(b"\r\n\r\n")
    return re.sub(rb"Content-Length: *\d+", b"Content-Length: %d" % len(body), head) + (
        b"\r\n\r\n" + body
    )


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_torture_message(name: str) -> None:
    entry = MANIFEST[name]
    data = (DATA / f"{name}.sip").read_bytes()
    want = str(entry["reaction"])
    if name in WRONG_LENGTH_IN_RFC:
        got_as_published = react(data)
        # Content-Length longer than the datagram is a 400; shorter cuts the body (§18.3).
        assert got_as_published in ("400", "accept")
        data = fixed_length(data)
    got = react(data)
    if name in ELEMENT_REACTIONS:
        assert got == "accept", ELEMENT_REACTIONS[name]
        return
    acceptable = {want} | ALSO_ACCEPTABLE.get(name, set())
    if entry.get("lenient_ok"):
        acceptable.add("accept")  # the RFC lets a liberal element process it
    assert got in acceptable, f"{name}: {entry['title']}: got {got}, want {sorted(acceptable)}"


def test_strict_answers_where_we_chose_them() -> None:
    """Where leniency was allowed, these are the choices made (and kept on purpose)."""
    strict = ["quotbal", "ltgtruri", "lwsruri", "lwsstart", "trws", "escruri", "regbadct",
              "badaspec", "baddn"]  # fmt: skip
    for name in strict:
        assert react((DATA / f"{name}.sip").read_bytes()) == "400", name
    lenient = ["baddate", "badbranch", "v6-via-received-param-with-delim",
               "v6-ipv6-bug-abnf-3-colons"]  # fmt: skip
    for name in lenient:
        assert react((DATA / f"{name}.sip").read_bytes()) == "accept", name


def test_valid_messages_keep_tricky_values() -> None:
    esc = parse((DATA / "escnull.sip").read_bytes())
    assert isinstance(esc, Request)
    # The escaped NUL is kept, never truncated, and unescapes to a real NUL.
    assert esc.to.sip_uri.user == "null-%00-null"
    assert esc.to.sip_uri.user_unescaped == "null-\x00-null"
    assert [c.sip_uri.user for c in esc.contacts] == ["%00", "%00%00"]
    semi = parse((DATA / "semiuri.sip").read_bytes())
    assert isinstance(semi, Request) and semi.sip_uri.user is not None
    assert ";" in semi.sip_uri.user  # ';' belongs to the user part before '@'
    dbl = parse((DATA / "dblreq.sip").read_bytes())
    assert isinstance(dbl, Request) and dbl.method == "REGISTER" and dbl.body == b""
    mpart = parse((DATA / "mpart01.sip").read_bytes())
    assert b"\x00" in mpart.body  # binary body framed by Content-Length
