"""Realistic SIP messages and Hypothesis strategies shared by the SIP tests."""

from __future__ import annotations

from hypothesis import strategies as st

CRLF = "\r\n"


def sip(text: str) -> bytes:
    """Message text written with ``\\n`` line ends -> wire bytes with CRLF."""
    head, sep, body = text.lstrip("\n").partition("\n\n")
    wire = head.replace("\n", CRLF) + CRLF + CRLF
    return wire.encode() + (body.replace("\n", CRLF).encode() if sep else b"")


SDP = (
    "v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.101\r\ns=-\r\n"
    "c=IN IP4 192.0.2.101\r\nt=0 0\r\nm=audio 49172 RTP/AVP 0 8 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
)

INVITE = (
    sip(
        f"""
INVITE sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport
Max-Forwards: 70
To: Bob <sip:bob@biloxi.example.com>
From: "Alice Liddell" <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.atlanta.example.com
CSeq: 314159 INVITE
Contact: <sip:alice@pc33.atlanta.example.com;transport=udp>
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, REFER, INFO
Supported: replaces, timer
User-Agent: edgepbx-test/1.0
Content-Type: application/sdp
Content-Length: {len(SDP)}

"""
    )
    + SDP.encode()
)

REGISTER = sip(
    """
REGISTER sip:office.example.com SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5062;rport;branch=z9hG4bKnashds7
Max-Forwards: 70
To: "101" <sip:101@office.example.com>
From: "101" <sip:101@office.example.com>;tag=a73kszlfl
Call-ID: 1j9FpLxk3uxtm8tn@192.0.2.10
CSeq: 1826 REGISTER
Contact: <sip:101@192.0.2.10:5062;line=abc>;expires=3600;q=0.7, <sip:101@198.51.100.4>;q=0.1
Expires: 3600
Content-Length: 0

"""
)

RESPONSE_200 = sip(
    """
SIP/2.0 200 OK
Via: SIP/2.0/UDP server10.biloxi.example.com;branch=z9hG4bKnashds8;received=192.0.2.3
Via: SIP/2.0/UDP bigbox3.site3.atlanta.example.com;branch=z9hG4bK77ef4c2312983.1
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;received=192.0.2.1
To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.atlanta.example.com
CSeq: 314159 INVITE
Contact: <sip:bob@192.0.2.4>
Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com;lr>
Content-Length: 0

"""
)

# ---------------------------------------------------------------- Hypothesis strategies

_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
tokens = st.text(_ALNUM + "-.!%*_+`'~", min_size=1, max_size=12)
labels = st.text(_ALNUM, min_size=1, max_size=8).filter(lambda s: s[0].isalpha())
hostnames = st.lists(labels, min_size=1, max_size=4).map(".".join)
ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
ipv6 = st.sampled_from(["[::1]", "[2001:db8::10]", "[fe80::1]", "[2001:db8:0:0:1::2]"])
hosts = st.one_of(hostnames, ipv4, ipv6)
ports = st.one_of(st.none(), st.integers(1, 65535))
users = st.text(_ALNUM + "-_.!~*'()&=+$,;?/", min_size=1, max_size=12) | st.sampled_from(
    ["a%40b", "%00null", "sips%3Auser%40example.com", "+15551234567"]
)
uri_params = st.lists(
    st.tuples(st.text(_ALNUM + "-_.", min_size=1, max_size=8), st.none() | labels),
    max_size=3,
)


@st.composite
def sip_uris(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["sip", "sips"]))
    user = draw(st.none() | users)
    host = draw(hosts)
    port = draw(ports)
    text = f"{scheme}:" + (f"{user}@" if user else "") + host
    if port is not None:
        text += f":{port}"
    for name, value in draw(uri_params):
        text += f";{name}" + (f"={value}" if value is not None else "")
    return text


display_names = st.none() | st.text(
    st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), max_size=16
).map(lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"')


@st.composite
def addresses(draw: st.DrawFn, tag: bool = False) -> str:
    name = draw(display_names)
    uri = draw(sip_uris())
    text = f"{name} <{uri}>" if name else f"<{uri}>"
    if tag:
        text += f";tag={draw(tokens)}"
    return text


@st.composite
def vias(draw: st.DrawFn) -> str:
    transport = draw(st.sampled_from(["UDP", "TCP", "TLS", "SCTP", "WS"]))
    host = draw(hosts)
    port = draw(ports)
    text = f"SIP/2.0/{transport} {host}" + (f":{port}" if port else "")
    text += f";branch=z9hG4bK{draw(tokens)}"
    if draw(st.booleans()):
        text += ";rport"
    return text


header_text = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"], exclude_characters=',"<>'),
    max_size=30,
).map(str.strip)


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from(["INVITE", "REGISTER", "OPTIONS", "BYE", "MESSAGE"]) | tokens)
    lines = [f"{method} {draw(sip_uris())} SIP/2.0"]
    lines += [f"Via: {v}" for v in draw(st.lists(vias(), min_size=1, max_size=3))]
    lines.append(f"From: {draw(addresses(tag=True))}")
    lines.append(f"To: {draw(addresses())}")
    lines.append(f"Call-ID: {draw(tokens)}@{draw(hostnames)}")
    lines.append(f"CSeq: {draw(st.integers(0, 2**31 - 1))} {method}")
    lines.append(f"Max-Forwards: {draw(st.integers(0, 255))}")
    if draw(st.booleans()):
        lines.append(f"Contact: {draw(addresses())}")
    for _ in range(draw(st.integers(0, 3))):
        lines.append(f"X-{draw(tokens)}: {draw(header_text)}")
    body = draw(st.binary(max_size=64))
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@st.composite
def responses(draw: st.DrawFn) -> bytes:
    status = draw(st.integers(100, 699))
    reason = draw(header_text)
    method = draw(st.sampled_from(["INVITE", "REGISTER", "OPTIONS", "BYE"]))
    lines = [f"SIP/2.0 {status} {reason}"]
    lines += [f"Via: {v}" for v in draw(st.lists(vias(), min_size=1, max_size=3))]
    lines.append(f"From: {draw(addresses(tag=True))}")
    lines.append(f"To: {draw(addresses(tag=True))}")
    lines.append(f"Call-ID: {draw(tokens)}")
    lines.append(f"CSeq: {draw(st.integers(0, 2**31 - 1))} {method}")
    body = draw(st.binary(max_size=32))
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
