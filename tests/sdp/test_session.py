"""Parsing and writing session descriptions (RFC 8866): real-world samples, typed views, edits,
errors with their status, and two properties: parse(bytes(x)) == x for generated descriptions,
and random damage to real samples raises only the stack's own errors."""

from __future__ import annotations

import dataclasses
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.imports import loaded

from pbx.sdp import (
    Attribute,
    Bandwidth,
    Codec,
    Connection,
    Direction,
    MediaDescription,
    Origin,
    Rtcp,
    SdpError,
    SdpLeg,
    SdpNotAcceptable,
    SdpParseError,
    SessionDescription,
    Timing,
    is_hold,
    media_targets,
    negotiated_codec,
    parse_sdp,
)
from pbx.sip.errors import RemoteProtocolError

DATA = Path(__file__).parent / "data"
SAMPLES = sorted(p.name for p in DATA.glob("*.sdp"))


def sample(name: str) -> bytes:
    return (DATA / name).read_bytes()


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


# --- real-world samples -----------------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLES)
def test_samples_round_trip(name: str) -> None:
    data = sample(name)
    sdp = parse_sdp(data)
    # CRLF out; the LF-only sample comes back as the same lines with CRLF.
    assert bytes(sdp) == data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert sdp.to_bytes() == bytes(sdp)
    assert parse_sdp(bytes(sdp)) == sdp


def test_baresip_offer_typed_views() -> None:
    sdp = parse_sdp(sample("baresip_offer.sdp"))
    assert sdp.origin == Origin("-", "982054470", 1098895511, "192.0.2.2", "IP4", "IN")
    assert sdp.name == "-"
    assert sdp.connection == Connection("192.0.2.2", "IP4")
    assert sdp.times == (Timing(0, 0),)
    assert sdp.attributes == (Attribute("tool", "baresip 1.0.0"),)
    (audio,) = sdp.media
    assert (audio.kind, audio.port, audio.port_count, audio.proto) == ("audio", 26444, 1, "RTP/AVP")
    assert audio.formats == ("96", "9", "0", "8", "101")
    assert audio.payload_types == (96, 9, 0, 8, 101)
    assert audio.rtpmaps[96] == Codec(96, "opus", 48000, 2)
    assert [c.name for c in audio.codecs] == ["opus", "G722", "PCMU", "PCMA", "telephone-event"]
    assert audio.fmtp == {"96": "stereo=1;sprop-stereo=1;maxaveragebitrate=28000", "101": "0-15"}
    assert audio.ptime == 20
    assert audio.maxptime is None
    assert audio.direction is Direction.SENDRECV
    assert audio.rtcp is None
    assert not audio.rtcp_mux
    assert audio.has_attribute("rtcp-rsize") and audio.attribute("rtcp-rsize") is None
    assert audio.attribute("ssrc") == "1679704637 cname:sip:alice@127.0.0.1"
    assert audio.attribute_values("label") == ["1"]


def test_baresip_audio_video_offer() -> None:
    sdp = parse_sdp(sample("baresip_av_offer.sdp"))
    audio, video = sdp.media
    assert audio.rtcp_mux and video.rtcp_mux
    assert (video.kind, video.port, video.formats) == ("video", 46488, ("96",))
    # The same dynamic number means a different codec in each media section.
    assert video.codec("96") == Codec(96, "VP8", 90000)
    assert audio.codec(96) == Codec(96, "opus", 48000, 2)
    assert video.attribute("rtcp-fb") == "* nack pli"


def test_sipp_offer_static_payload_type() -> None:
    sdp = parse_sdp(sample("sipp_offer.sdp"))
    assert sdp.origin.username == "user1"
    (audio,) = sdp.media
    assert audio.codecs == (Codec(0, "PCMU", 8000),)
    assert sdp.direction_of(audio) is Direction.SENDRECV  # no direction written: sendrecv


def test_static_payload_types_without_rtpmap() -> None:
    sdp = parse_sdp(
        crlf(
            "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\n"
            "m=audio 4000 RTP/AVP 0 8 9 18 13 96\n"
        )
    )
    (audio,) = sdp.media
    assert [str(c) for c in audio.codecs] == [
        "0 PCMU/8000",
        "8 PCMA/8000",
        "9 G722/8000",
        "18 G729/8000",
        "13 CN/8000",
    ]
    assert audio.codec("96") is None  # dynamic, no rtpmap


def test_polycom_session_level_direction() -> None:
    sdp = parse_sdp(sample("polycom_offer.sdp"))
    (audio,) = sdp.media
    assert sdp.direction is Direction.SENDRECV
    assert audio.direction is None
    assert sdp.direction_of(audio) is Direction.SENDRECV
    assert audio.codec("102") == Codec(102, "G7221", 16000)


def test_hold_samples() -> None:
    held = parse_sdp(sample("yealink_hold.sdp"))
    assert held.media[0].direction is Direction.SENDONLY
    assert (
        held.origin.session_version
        == parse_sdp(sample("yealink_offer.sdp")).origin.session_version + 1
    )
    old = parse_sdp(sample("cisco_rfc2543_hold.sdp"))
    assert old.connection == Connection("0.0.0.0") and old.media[0].connection == Connection(
        "0.0.0.0"
    )
    assert old.media[0].direction is None


def test_ipv6_and_rtcp_attribute() -> None:
    sdp = parse_sdp(sample("linphone_ipv6_offer.sdp"))  # LF line ends
    assert sdp.origin.addrtype == "IP6"
    assert sdp.connection == Connection("2001:db8:10::21", "IP6")
    (audio,) = sdp.media
    assert audio.rtcp == Rtcp(7079)
    assert audio.attribute_values("rtcp-fb") == ["* trr-int 1000", "* ccm tmmbr"]


def test_rtcp_attribute_with_address() -> None:
    sdp = parse_sdp(
        crlf(
            "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\n"
            "m=audio 49170 RTP/AVP 0\na=rtcp:53020 IN IP4 126.16.64.4\n"
        )
    )
    assert sdp.media[0].rtcp == Rtcp(53020, Connection("126.16.64.4"))
    assert str(sdp.media[0].rtcp) == "53020 IN IP4 126.16.64.4"


def test_all_session_lines_kept_in_rfc_order() -> None:
    text = (
        "v=0\n"
        "o=jdoe 3724394400 3724394405 IN IP4 198.51.100.1\n"
        "s=Call to John Smith\n"
        "i=SDP Offer #1\n"
        "u=http://www.jdoe.example.com/home.html\n"
        "e=Jane Doe <jane@jdoe.example.com>\n"
        "p=+1 617 555-6011\n"
        "c=IN IP4 198.51.100.1\n"
        "b=CT:128\n"
        "t=3724394400 3724398000\n"
        "r=7d 1h 0 25h\n"
        "z=3730928400 -1h 3749680800 0\n"
        "t=0 0\n"
        "k=prompt\n"
        "a=recvonly\n"
        "m=audio 49170 RTP/AVP 0\n"
        "i=main audio\n"
        "c=IN IP4 198.51.100.2\n"
        "b=AS:64\n"
        "k=prompt\n"
        "a=ptime:20\n"
        "m=video 51372 RTP/AVP 99\n"
        "a=rtpmap:99 h263-1998/90000\n"
    )
    sdp = parse_sdp(crlf(text))
    assert bytes(sdp) == crlf(text)
    assert sdp.info == "SDP Offer #1" and sdp.uri == "http://www.jdoe.example.com/home.html"
    assert sdp.emails == ("Jane Doe <jane@jdoe.example.com>",)
    assert sdp.phones == ("+1 617 555-6011",)
    assert sdp.bandwidths == (Bandwidth("CT", 128),)
    assert sdp.times == (
        Timing(3724394400, 3724398000, ("7d 1h 0 25h",), "3730928400 -1h 3749680800 0"),
        Timing(0, 0),
    )
    assert sdp.key == "prompt"
    audio, video = sdp.media
    assert (audio.title, audio.connection, audio.bandwidths, audio.key) == (
        "main audio",
        Connection("198.51.100.2"),
        (Bandwidth("AS", 64),),
        "prompt",
    )
    assert sdp.connection_of(audio) == Connection("198.51.100.2")
    assert sdp.connection_of(video) == Connection("198.51.100.1")
    assert sdp.direction_of(video) is Direction.RECVONLY


def test_unknown_lines_kept_at_the_end_of_their_section() -> None:
    # GB28181 gear adds y= (SSRC) and f= (format) lines; RFC 8866 leaves unknown types to us.
    text = (
        "v=0\no=34020000002000000001 0 0 IN IP4 10.1.1.1\ns=Play\nx=session-extra\n"
        "c=IN IP4 10.1.1.1\nt=0 0\nm=video 6000 RTP/AVP 96\ny=0100000001\n"
        "a=rtpmap:96 PS/90000\na=recvonly\nf=v/2/4///a///\n"
    )
    sdp = parse_sdp(crlf(text))
    assert sdp.extra == (("x", "session-extra"),)
    assert sdp.media[0].extra == (("y", "0100000001"), ("f", "v/2/4///a///"))
    assert bytes(sdp) == crlf(
        "v=0\no=34020000002000000001 0 0 IN IP4 10.1.1.1\ns=Play\nc=IN IP4 10.1.1.1\nt=0 0\n"
        "x=session-extra\nm=video 6000 RTP/AVP 96\na=rtpmap:96 PS/90000\na=recvonly\n"
        "y=0100000001\nf=v/2/4///a///\n"
    )


def test_misordered_lines_accepted_and_written_in_order() -> None:
    sdp = parse_sdp(
        crlf(
            "v=0\ns=-\no=- 1 2 IN IP4 10.0.0.1\nt=0 0\nc=IN IP4 10.0.0.1\n"
            "m=audio 4000 RTP/AVP 0\na=ptime:20\nc=IN IP4 10.0.0.2\n"
        )
    )
    assert bytes(sdp) == crlf(
        "v=0\no=- 1 2 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\n"
        "m=audio 4000 RTP/AVP 0\nc=IN IP4 10.0.0.2\na=ptime:20\n"
    )


def test_blank_lines_and_no_final_newline() -> None:
    sdp = parse_sdp(b"v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns= \r\n\r\nt=0 0\r\nm=audio 0 RTP/AVP 0")
    assert sdp.name == " "
    assert sdp.media[0].port == 0  # a disabled stream needs no c= line
    assert bytes(sdp).endswith(b"m=audio 0 RTP/AVP 0\r\n")


def test_non_utf8_bytes_survive() -> None:
    data = b"v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=Sitzung f\xfcr B\xfcro\r\nt=0 0\r\n"
    sdp = parse_sdp(data)
    assert bytes(sdp) == data


def test_port_count_and_non_rtp_formats() -> None:
    sdp = parse_sdp(
        crlf(
            "v=0\no=- 1 2 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\n"
            "m=video 49170/2 RTP/AVP 31\nm=image 6000 udptl t38\n"
            "m=application 7000 TCP/MSRP *\n"
        )
    )
    video, fax, msrp = sdp.media
    assert (video.port, video.port_count) == (49170, 2)
    assert fax.formats == ("t38",) and not fax.is_rtp and fax.payload_types == ()
    assert fax.codecs == ()
    assert msrp.formats == ("*",)
    assert b"m=video 49170/2 RTP/AVP 31\r\n" in bytes(sdp)


def test_ptime_with_a_decimal_point() -> None:
    sdp = parse_sdp(
        crlf(
            "v=0\no=- 1 2 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\n"
            "m=audio 4000 RTP/AVP 0\na=ptime:20.0\na=maxptime:40\n"
        )
    )
    assert (sdp.media[0].ptime, sdp.media[0].maxptime) == (20, 40)


# --- edits ------------------------------------------------------------------------------------


def test_values_are_frozen_and_edits_make_new_ones() -> None:
    sdp = parse_sdp(sample("yealink_offer.sdp"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        sdp.name = "x"  # type: ignore[misc]
    audio = sdp.media[0]
    held = sdp.with_media(0, audio.with_direction(Direction.SENDONLY).with_port(5000))
    assert sdp.media[0] is audio and audio.direction is Direction.SENDRECV
    assert held.media[0].direction is Direction.SENDONLY and held.media[0].port == 5000
    # the direction stays where it was written
    assert held.media[0].attributes.index(Attribute("sendonly")) == audio.attributes.index(
        Attribute("sendrecv")
    )
    assert parse_sdp(bytes(held)) == held
    bumped = dataclasses.replace(sdp, origin=dataclasses.replace(sdp.origin, session_version=20034))
    assert b"o=- 20033 20034 IN IP4 192.168.10.21\r\n" in bytes(bumped)


def test_with_direction_adds_when_missing_and_drops_duplicates() -> None:
    m = MediaDescription("audio", 4000, "RTP/AVP", ("0",))
    assert m.with_direction(Direction.INACTIVE).attributes == (Attribute("inactive"),)
    twice = m.with_attributes(
        [Attribute("sendonly"), Attribute("ptime", "20"), Attribute("recvonly")]
    )
    assert twice.with_direction(Direction.SENDRECV).attributes == (
        Attribute("sendrecv"),
        Attribute("ptime", "20"),
    )


def test_built_from_scratch() -> None:
    sdp = SessionDescription(
        origin=Origin("-", "42", 1, "2001:db8::1", "IP6"),
        connection=Connection("2001:db8::1", "IP6"),
        media=(
            MediaDescription(
                "audio",
                30000,
                "RTP/AVP",
                ("0", "101"),
                attributes=(Attribute("rtpmap", "101 telephone-event/8000"), Attribute("sendrecv")),
            ),
        ),
    )
    assert bytes(sdp) == crlf(
        "v=0\no=- 42 1 IN IP6 2001:db8::1\ns=-\nc=IN IP6 2001:db8::1\nt=0 0\n"
        "m=audio 30000 RTP/AVP 0 101\na=rtpmap:101 telephone-event/8000\na=sendrecv\n"
    )


def test_direction_algebra() -> None:
    sendrecv, sendonly, recvonly, inactive = Direction
    assert [d.reversed() for d in Direction] == [sendrecv, recvonly, sendonly, inactive]
    assert sendrecv & recvonly is recvonly
    assert sendonly & recvonly is inactive
    assert all(Direction.of(sends=d.sends, receives=d.receives) is d for d in Direction)


# --- errors -----------------------------------------------------------------------------------

HEAD = "v=0\no=- 1 2 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\n"

BAD = [
    ("", 400, "empty"),
    ("o=- 1 2 IN IP4 10.0.0.1\n", 400, "does not start with a v= line"),
    ("v=1\n" + HEAD[4:], 488, "unsupported SDP version"),
    ("v=zero\n" + HEAD[4:], 400, "bad v= version"),
    ("\n\n", 400, "empty"),
    ("v=0\ns=-\nt=0 0\n", 400, "no o= line"),
    ("v=0\no=- 1 2 IN IP4 10.0.0.1\nt=0 0\n", 400, "no s= line"),
    ("v=0\no=- 1 2 IN IP4\ns=-\n", 400, "bad o= line"),
    ("v=0\no=- 1 two IN IP4 10.0.0.1\ns=-\n", 400, "bad o= session version"),
    ("v=0\no=- 1 \u0662 IN IP4 10.0.0.1\ns=-\n", 400, "session version"),  # Arabic-Indic 2
    (HEAD + "o=- 1 2 IN IP4 10.0.0.1\n", 400, "second o= line"),
    (HEAD + "v=0\n", 400, "second v= line"),
    (HEAD + "c=IN IP4 10.0.0.2\n", 400, "second c= line"),
    (HEAD + "m=audio 4000 RTP/AVP 0\nc=IN IP4\n", 400, "bad c= line"),
    (HEAD + "b=AS\n", 400, "bad b= line"),
    (HEAD + "b=AS:lots\n", 400, "bad bandwidth"),
    (HEAD + "t=now 0\n", 400, "bad t= start"),
    ("v=0\no=- 1 2 IN IP4 10.0.0.1\ns=-\nr=7d 1h 0 25h\n", 400, "before any t= line"),
    (HEAD + "z=1 -1h\nz=2 0\n", 400, "second z= line"),
    (HEAD + "a=\n", 400, "bad a= line"),
    (HEAD + "a=rtp map:0 PCMU/8000\n", 400, "bad a= line"),
    (HEAD + "m=audio 4000\n", 400, "bad m= line"),
    (HEAD + "m=audio port RTP/AVP 0\n", 400, "bad m= port"),
    (HEAD + "m=audio 70000 RTP/AVP 0\n", 400, "bad port"),
    (HEAD + "m=audio 4000/0 RTP/AVP 0\n", 400, "bad port"),
    (HEAD + "m=audio 4000 RTP/AVP PCMU\n", 400, "bad RTP payload type"),
    (HEAD + "m=audio 4000 RTP/AVP 128\n", 400, "over 127"),
    (HEAD + "m=audio 4000 RTP/AVP 0\nt=0 0\n", 400, "t= line inside a media section"),
    (HEAD + "m=audio 4000 RTP/AVP 0\ni=a\ni=b\n", 400, "second i= line"),
    (HEAD + "m=audio 4000 RTP/AVP 0\nc=IN IP4 224.2.1.1/127\nc=IN IP4 224.2.1.2/127\n", 488,
     "several c= lines"),
    ("v=0\no=- 1 2 IN IP4 10.0.0.1\ns=-\nt=0 0\nm=audio 4000 RTP/AVP 0\n", 400, "no c= line"),
    (HEAD + "a=ptime:20\x00\n", 400, "NUL"),
    (HEAD + "a=ptime:20\r0\n", 400, "CR"),
    (HEAD + "a ptime:20\n", 400, "not type=value"),
    (HEAD + "=x\n", 400, "not type=value"),
    (HEAD + "1=x\n", 400, "not type=value"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "status", "reason"), BAD)
def test_bad_sdp_raises_with_status(text: str, status: int, reason: str) -> None:
    with pytest.raises(SdpError) as info:
        parse_sdp(crlf(text))
    assert isinstance(info.value, RemoteProtocolError)
    assert info.value.status == status
    assert reason in info.value.reason
    assert info.value.reason.isascii() and "\r" not in info.value.reason
    expected = SdpParseError if status == 400 else SdpNotAcceptable
    assert type(info.value) is expected


BAD_ATTRIBUTES = [
    ("a=rtpmap:96\n", "rtpmaps", "bad a=rtpmap"),
    ("a=rtpmap:96 opus\n", "rtpmaps", "bad a=rtpmap"),
    ("a=rtpmap:300 opus/48000\n", "rtpmaps", "bad a=rtpmap"),
    ("a=rtpmap:96 opus/fast\n", "rtpmaps", "clock rate"),
    ("a=fmtp:96\n", "fmtp", "bad a=fmtp"),
    ("a=ptime:0\n", "ptime", "bad a=ptime"),
    ("a=ptime:twenty\n", "ptime", "bad a=ptime"),
    ("a=maxptime:nan\n", "maxptime", "bad a=maxptime"),
    ("a=rtcp:\n", "rtcp", "bad a=rtcp"),
    ("a=rtcp:0\n", "rtcp", "bad a=rtcp port"),
    ("a=rtcp:5000 IN IP4\n", "rtcp", "bad a=rtcp value"),
]


@pytest.mark.parametrize(("line", "accessor", "reason"), BAD_ATTRIBUTES)
def test_bad_attribute_raises_when_read(line: str, accessor: str, reason: str) -> None:
    sdp = parse_sdp(crlf(HEAD + "m=audio 4000 RTP/AVP 96\n" + line))
    with pytest.raises(SdpParseError, match=reason) as info:
        getattr(sdp.media[0], accessor)
    assert info.value.status == 400


# --- properties -------------------------------------------------------------------------------

TOKEN = st.text(string.ascii_letters + string.digits + "-._+!#$%&'*^`{|}~/", min_size=1, max_size=8)
TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r\n\0"), max_size=12)
NUMBER = st.integers(0, 2**64)
UNKNOWN_TYPES = sorted(set(string.ascii_letters) - set("vosiuepcbtrzkam"))
EXTRA = st.lists(st.tuples(st.sampled_from(UNKNOWN_TYPES), TEXT), max_size=2).map(tuple)
CONNECTION = st.builds(Connection, TOKEN, TOKEN, TOKEN)
ATTRIBUTES = st.lists(
    st.builds(Attribute, TOKEN.filter(lambda t: ":" not in t), st.none() | TEXT), max_size=5
).map(tuple)
BANDWIDTHS = st.lists(
    st.builds(Bandwidth, TOKEN.filter(lambda t: ":" not in t), NUMBER), max_size=2
).map(tuple)


@st.composite
def media_descriptions(draw: st.DrawFn, needs_connection: bool) -> MediaDescription:
    proto = draw(
        st.sampled_from(["RTP/AVP", "RTP/SAVPF", "UDP/TLS/RTP/SAVPF", "udptl", "TCP/MSRP"])
    )
    fmt = st.integers(0, 127).map(str) if "RTP/" in proto else TOKEN
    port = draw(st.integers(0, 65535))
    connection = draw(CONNECTION if needs_connection and port else st.none() | CONNECTION)
    return MediaDescription(
        kind=draw(TOKEN),
        port=port,
        port_count=draw(st.integers(1, 4)),
        proto=proto,
        formats=tuple(draw(st.lists(fmt, max_size=6))),
        title=draw(st.none() | TEXT),
        connection=connection,
        bandwidths=draw(BANDWIDTHS),
        key=draw(st.none() | TEXT),
        attributes=draw(ATTRIBUTES),
        extra=draw(EXTRA),
    )


@st.composite
def session_descriptions(draw: st.DrawFn) -> SessionDescription:
    connection = draw(st.none() | CONNECTION)
    timing = st.builds(
        Timing, NUMBER, NUMBER, st.lists(TEXT, max_size=2).map(tuple), st.none() | TEXT
    )
    return SessionDescription(
        origin=draw(st.builds(Origin, TOKEN, TOKEN, NUMBER, TOKEN, TOKEN, TOKEN)),
        name=draw(TEXT),
        info=draw(st.none() | TEXT),
        uri=draw(st.none() | TEXT),
        emails=tuple(draw(st.lists(TEXT, max_size=2))),
        phones=tuple(draw(st.lists(TEXT, max_size=2))),
        connection=connection,
        bandwidths=draw(BANDWIDTHS),
        times=tuple(draw(st.lists(timing, max_size=2))),
        key=draw(st.none() | TEXT),
        attributes=draw(ATTRIBUTES),
        media=tuple(draw(st.lists(media_descriptions(connection is None), max_size=3))),
        extra=draw(EXTRA),
    )


@given(session_descriptions())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_property_parse_of_bytes_is_identity(sdp: SessionDescription) -> None:
    assert parse_sdp(bytes(sdp)) == sdp


INTERESTING = [
    b"\r\n",
    b"\n",
    b"=",
    b":",
    b"/",
    b" ",
    b"0.0.0.0",
    b"a=rtpmap:",
    b"a=sendonly\r\n",
    b"m=audio 0 RTP/AVP 0\r\n",
    b"c=IN IP6 ::\r\n",
    b"\x00",
    b"\xff",
    b"\r",
    b"99999",
]


@st.composite
def damaged_samples(draw: st.DrawFn) -> bytes:
    buf = bytearray(sample(draw(st.sampled_from(SAMPLES))))
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(buf)))
        op = draw(st.integers(0, 3))
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] = draw(st.integers(0, 255))
        elif op == 1:
            buf[pos:pos] = draw(st.sampled_from(INTERESTING))
        elif op == 2:
            del buf[pos : pos + draw(st.integers(1, 16))]
        else:
            buf[pos:pos] = buf[pos : pos + draw(st.integers(1, 40))]
    return bytes(buf)


@given(damaged_samples())
@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
def test_property_damage_raises_only_sdp_errors(data: bytes) -> None:
    try:
        sdp = parse_sdp(data)
    except SdpError:
        return
    assert parse_sdp(bytes(sdp)) == sdp
    # Whatever parses must also go through the offer/answer layer without a crash.
    try:
        media_targets(sdp)
        is_hold(sdp)
        negotiated_codec(sdp)
        offer = SdpLeg("198.51.100.7", [40000, 40002, 40004], session_id=1).offer_from(sdp)
        SdpLeg("198.51.100.7", [30000, 30002, 30004], session_id=2).answer_from(sdp, sdp)
        assert parse_sdp(bytes(offer)) == offer
    except SdpError:
        pass


def test_import_loads_no_io() -> None:
    assert loaded("import pbx.sdp", ("asyncio", "socket", "selectors")) == []
