"""RFC 3264 offer/answer through the box: each exchange runs A -> box -> B -> box -> A with the
real-world samples (captured baresip and SIPp bodies, desk-phone shaped ones), checking what
each peer is sent: the box's addresses and ports, the codecs, payload numbers, directions and
o= versions; then hold and resume from either side, late offers, rejected streams, IPv6, the
488 cases, and the rule that an answer never carries a codec its offer lacked."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbx.sdp import (
    Codec,
    Connection,
    Direction,
    MediaDescription,
    MediaTarget,
    SdpLeg,
    SdpNotAcceptable,
    SdpParseError,
    SdpPolicy,
    SessionDescription,
    is_hold,
    media_targets,
    negotiated_codec,
    parse_sdp,
)
from pbx.sip.errors import RemoteProtocolError

DATA = Path(__file__).parent / "data"
BOX = "203.0.113.10"
BOX6 = "2001:db8:100::10"
PORT_A = (30000, 30002)  # the box's ports facing the caller
PORT_B = (40000, 40002)  # the box's ports facing the callee


def sample(name: str) -> SessionDescription:
    return parse_sdp((DATA / name).read_bytes())


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


def legs(policy: SdpPolicy | None = None, address: str = BOX) -> tuple[SdpLeg, SdpLeg]:
    leg_a = SdpLeg(address, PORT_A, session_id=1111, policy=policy)
    leg_b = SdpLeg(address, PORT_B, session_id=2222, policy=policy)
    return leg_a, leg_b


def with_direction(
    sdp: SessionDescription, direction: Direction, version: int = 1
) -> SessionDescription:
    """A peer's next SDP: the same with another direction and its version bumped."""
    media = tuple(m.with_direction(direction) if m.port else m for m in sdp.media)
    origin = dataclasses.replace(sdp.origin, session_version=sdp.origin.session_version + version)
    return dataclasses.replace(sdp, origin=origin, media=media)


def yealink_answer(direction: Direction, version: int) -> SessionDescription:
    """What the desk phone answers to the box's offer of PCMU, PCMA, G722, telephone-event."""
    return parse_sdp(
        crlf(
            f"v=0\no=- 20033 {version} IN IP4 192.168.10.21\ns=SDP data\n"
            "c=IN IP4 192.168.10.21\nt=0 0\nm=audio 11780 RTP/AVP 0 8 9 101\n"
            "a=rtpmap:0 PCMU/8000\na=rtpmap:8 PCMA/8000\na=rtpmap:9 G722/8000\n"
            f"a=ptime:20\na={direction}\na=rtpmap:101 telephone-event/8000\na=fmtp:101 0-15\n"
        )
    )


def names(media: MediaDescription) -> list[str]:
    return [c.name for c in media.codecs]


def assert_box_side(sdp: SessionDescription, leg: SdpLeg, ports: tuple[int, ...]) -> None:
    """Everything a peer is sent points at the box, never at the other peer."""
    addrtype = "IP4" if ":" not in leg.address else "IP6"
    assert sdp.connection == Connection(leg.address, addrtype)
    assert (sdp.origin.address, sdp.origin.addrtype) == (leg.address, addrtype)
    assert sdp.origin.session_id == str(leg.session_id)
    for i, m in enumerate(sdp.media):
        assert m.port in (0, ports[i])
        assert m.connection is None and m.rtcp is None
        assert not any(a.name in {"candidate", "ssrc", "crypto", "mid"} for a in m.attributes)
    assert parse_sdp(bytes(sdp)) == sdp  # what goes on the wire parses back the same


def assert_answer_fits_offer(answer: SessionDescription, offer: SessionDescription) -> None:
    """RFC 3264 §6: same m-lines in the same order; only codecs (and numbers) of the offer."""
    assert len(answer.media) == len(offer.media)
    assert answer.times == offer.times
    for a, o in zip(answer.media, offer.media, strict=True):
        assert (a.kind, a.proto) == (o.kind, o.proto)
        if a.port == 0:
            continue
        assert o.port != 0
        offered = {c.payload_type: c.key for c in o.codecs}
        for codec in a.codecs:
            assert offered.get(codec.payload_type) == codec.key, codec
        assert set(a.formats) <= set(o.formats)


# --- a normal call: INVITE with an offer, 200 with the answer ---------------------------------


def test_desk_phone_to_baresip_full_exchange() -> None:
    leg_a, leg_b = legs()
    offer_a = sample("yealink_offer.sdp")

    offer_b = leg_b.offer_from(offer_a)
    assert bytes(offer_b) == crlf(
        "v=0\n"
        "o=- 2222 2222 IN IP4 203.0.113.10\n"
        "s=edgepbx\n"
        "c=IN IP4 203.0.113.10\n"
        "t=0 0\n"
        "m=audio 40000 RTP/AVP 0 8 9 101\n"  # G729 dropped, order kept
        "a=rtpmap:0 PCMU/8000\n"
        "a=rtpmap:8 PCMA/8000\n"
        "a=rtpmap:9 G722/8000\n"
        "a=ptime:20\n"
        "a=rtpmap:101 telephone-event/8000\n"
        "a=fmtp:101 0-15\n"
        "a=sendrecv\n"
    )
    assert_box_side(offer_b, leg_b, PORT_B)

    answer_b = sample("baresip_answer_yealink.sdp")  # captured: baresip answering this codec list
    answer_a = leg_a.answer_from(answer_b, offer_a)
    assert_box_side(answer_a, leg_a, PORT_A)
    assert_answer_fits_offer(answer_a, offer_a)
    assert_answer_fits_offer(answer_b, offer_b)
    (audio,) = answer_a.media
    assert audio.port == 30000
    assert audio.formats == ("0", "8", "9", "101")
    assert audio.fmtp == {"101": "0-15"}
    assert audio.direction is Direction.SENDRECV
    assert negotiated_codec(answer_a) == Codec(0, "PCMU", 8000)
    assert negotiated_codec(answer_b) == Codec(0, "PCMU", 8000)

    # The relay: A sends to the box at 30000 and wants RTP at its own address; same for B.
    (to_a,) = media_targets(offer_a)
    (to_b,) = media_targets(answer_b)
    assert (to_a.address, to_a.rtp_port, to_a.rtcp_port) == ("192.168.10.21", 11780, 11781)
    assert (to_b.address, to_b.rtp_port, to_b.rtcp_port) == ("192.0.2.2", 8846, 8847)
    assert to_a.telephone_event == to_b.telephone_event == 101


def test_g722_chosen_when_the_callee_picks_it() -> None:
    leg_a, leg_b = legs()
    offer_a = sample("polycom_offer.sdp")  # G722 first, then G.722.1, PCMU, PCMA, G729
    offer_b = leg_b.offer_from(offer_a)
    (audio_b,) = offer_b.media
    assert audio_b.formats == ("9", "0", "8", "127")
    assert names(audio_b) == ["G722", "PCMU", "PCMA", "telephone-event"]
    # Polycom writes its direction at session level; the box writes it per stream.
    assert offer_b.attributes == () and audio_b.direction is Direction.SENDRECV

    answer_b = sample("baresip_answer_polycom.sdp")  # captured: baresip picks G722
    answer_a = leg_a.answer_from(answer_b, offer_a)
    assert_answer_fits_offer(answer_a, offer_a)
    assert negotiated_codec(answer_a) == Codec(9, "G722", 8000)
    assert answer_a.media[0].formats == ("9", "0", "8", "127")


def test_desk_phone_to_baresip_answering_g722_only() -> None:
    leg_a, leg_b = legs()
    offer_a = sample("yealink_offer.sdp")  # PCMU first
    leg_b.offer_from(offer_a)
    answer_b = parse_sdp(
        bytes(sample("baresip_answer_yealink.sdp"))
        .replace(b"RTP/AVP 0 8 9 101", b"RTP/AVP 9 101")
        .replace(b"a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n", b"")
    )
    answer_a = leg_a.answer_from(answer_b, offer_a)
    assert answer_a.media[0].formats == ("9", "101")
    assert negotiated_codec(answer_a) == Codec(9, "G722", 8000)


def test_baresip_opus_to_baresip_like_callee() -> None:
    leg_a, leg_b = legs()
    offer_a = sample("baresip_offer.sdp")
    offer_b = leg_b.offer_from(offer_a)
    (audio_b,) = offer_b.media
    assert audio_b.formats == ("96", "9", "0", "8", "101")
    assert audio_b.fmtp["96"] == "stereo=1;sprop-stereo=1;maxaveragebitrate=28000"
    # baresip's own stream ids and session attributes stay on A's side.
    assert not audio_b.has_attribute("ssrc") and offer_b.attribute("tool") is None
    assert audio_b.has_attribute("rtcp-rsize") and audio_b.attribute("label") == "1"

    # The callee uses 111 for opus where A offered 96 (allowed: RFC 3264 §6.1 "SHOULD").
    answer_b = parse_sdp(
        crlf(
            "v=0\no=- 77 77 IN IP4 192.0.2.50\ns=-\nc=IN IP4 192.0.2.50\nt=0 0\n"
            "m=audio 9000 RTP/AVP 111 101\na=rtpmap:111 opus/48000/2\n"
            "a=fmtp:111 useinbandfec=1\na=rtpmap:101 telephone-event/8000\na=sendrecv\n"
        )
    )
    answer_a = leg_a.answer_from(answer_b, offer_a)
    (audio_a,) = answer_a.media
    assert audio_a.formats == ("96", "101")
    assert audio_a.rtpmaps[96] == Codec(96, "opus", 48000, 2)
    assert audio_a.fmtp == {"96": "useinbandfec=1"}
    assert negotiated_codec(answer_a) == Codec(96, "opus", 48000, 2)
    assert_answer_fits_offer(answer_a, offer_a)


def test_telephone_event_keeps_its_number_both_ways() -> None:
    leg_a, leg_b = legs()
    offer_a = sample("polycom_offer.sdp")  # telephone-event on 127, no fmtp
    offer_b = leg_b.offer_from(offer_a)
    assert offer_b.media[0].rtpmaps[127].name == "telephone-event"
    # A callee answering with its own number for telephone-event gets mapped back to 127.
    answer_b = parse_sdp(
        crlf(
            "v=0\no=- 5 5 IN IP4 192.0.2.60\ns=-\nc=IN IP4 192.0.2.60\nt=0 0\n"
            "m=audio 9002 RTP/AVP 0 101\na=rtpmap:101 telephone-event/8000\na=fmtp:101 0-16\n"
        )
    )
    answer_a = leg_a.answer_from(answer_b, offer_a)
    assert answer_a.media[0].formats == ("0", "127")
    assert answer_a.media[0].fmtp == {"127": "0-16"}
    assert media_targets(answer_a)[0].telephone_event == 127
    assert media_targets(answer_b)[0].telephone_event == 101  # what B sends and expects


def test_sipp_to_sipp() -> None:
    leg_a, leg_b = legs()
    offer_a = sample("sipp_offer.sdp")
    offer_b = leg_b.offer_from(offer_a)
    assert offer_b.media[0].formats == ("0",)
    answer_a = leg_a.answer_from(sample("sipp_answer.sdp"), offer_a)
    assert_box_side(answer_a, leg_a, PORT_A)
    assert negotiated_codec(answer_a) == Codec(0, "PCMU", 8000)


def test_peer_transport_attributes_are_dropped() -> None:
    offer = parse_sdp(
        crlf(
            "v=0\no=- 1 1 IN IP4 192.0.2.9\ns=-\nc=IN IP4 192.0.2.9\nt=0 0\n"
            "a=group:BUNDLE 0\na=ice-ufrag:abcd\na=ice-pwd:0123456789abcdef01234567\n"
            "m=audio 5004 RTP/AVPF 0 101\na=mid:0\na=rtcp:5005 IN IP4 192.0.2.9\n"
            "a=candidate:1 1 UDP 2130706431 192.0.2.9 5004 typ host\n"
            "a=ssrc:1 cname:x\na=rtcp-fb:0 nack\na=rtcp-fb:8 nack\n"
            "a=rtpmap:101 telephone-event/8000\n"
            "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\ny=0100000001\n"
        )
    )
    _, leg_b = legs()
    audio = leg_b.offer_from(offer).media[0]
    assert audio.proto == "RTP/AVPF"
    assert offer.media[0].extra == (("y", "0100000001"),) and audio.extra == ()
    assert [str(a) for a in audio.attributes] == [
        "rtcp-fb:0 nack",  # feedback for a format that was not offered is dropped
        "rtpmap:101 telephone-event/8000",
        "extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "sendrecv",
    ]


# --- the sess-version (RFC 3264 §8) -----------------------------------------------------------


def test_session_version_grows_only_when_the_sdp_changes() -> None:
    leg_a, leg_b = legs()
    offer_a = sample("yealink_offer.sdp")
    first = leg_b.offer_from(offer_a)
    assert first.origin.session_version == 2222
    # A session refresh re-INVITE with the same SDP: the same SDP, the same version.
    again = leg_b.offer_from(offer_a)
    assert again == first and again.origin.session_version == 2222
    # A's version going up alone changes nothing the box writes.
    bumped = dataclasses.replace(
        offer_a, origin=dataclasses.replace(offer_a.origin, session_version=99999)
    )
    assert leg_b.offer_from(bumped).origin.session_version == 2222
    held = leg_b.offer_from(sample("yealink_hold.sdp"))
    assert held.origin.session_version == 2223
    assert leg_b.offer_from(sample("yealink_hold.sdp")).origin.session_version == 2223
    resumed = leg_b.offer_from(offer_a)
    assert resumed.origin.session_version == 2224
    assert dataclasses.replace(resumed, origin=first.origin) == first
    assert resumed.origin.session_id == first.origin.session_id == "2222"
    # The other leg counts on its own.
    answer_a = leg_a.answer_from(sample("baresip_answer_yealink.sdp"), offer_a)
    assert answer_a.origin.session_version == 1111
    assert leg_b.session_version == 2224 and leg_b.last_sent == resumed


def test_session_id_from_injected_randomness() -> None:
    one = SdpLeg(BOX, [40000], rng=random.Random(7))
    two = SdpLeg(BOX, [40000], rng=random.Random(7))
    other = SdpLeg(BOX, [40000], rng=random.Random(8))
    assert one.session_id == two.session_id != other.session_id
    assert 0 < one.session_id < 2**31
    assert one.session_version == one.session_id


# --- hold and resume --------------------------------------------------------------------------


def test_hold_and_resume_from_the_caller() -> None:
    leg_a, leg_b = legs()
    offer_a = sample("yealink_offer.sdp")
    answer_b = sample("baresip_answer_yealink.sdp")
    leg_b.offer_from(offer_a)
    leg_a.answer_from(answer_b, offer_a)

    hold_a = sample("yealink_hold.sdp")
    assert is_hold(hold_a) and media_targets(hold_a)[0].on_hold
    hold_b = leg_b.offer_from(hold_a)
    assert hold_b.media[0].direction is Direction.SENDONLY and is_hold(hold_b)
    answer_b2 = with_direction(answer_b, Direction.RECVONLY)
    assert not is_hold(answer_b2)
    answer_a2 = leg_a.answer_from(answer_b2, hold_a)
    assert answer_a2.media[0].direction is Direction.RECVONLY
    assert answer_a2.origin.session_version == 1112
    assert not media_targets(answer_b2)[0].on_hold  # B still wants to hear (music on hold)

    resume_b = leg_b.offer_from(offer_a)
    assert resume_b.media[0].direction is Direction.SENDRECV and not is_hold(resume_b)
    answer_a3 = leg_a.answer_from(with_direction(answer_b, Direction.SENDRECV, 2), offer_a)
    assert answer_a3.media[0].direction is Direction.SENDRECV
    assert answer_a3.origin.session_version == 1113


def test_hold_and_resume_from_the_callee() -> None:
    leg_a, leg_b = legs()
    offer_a = sample("yealink_offer.sdp")
    answer_b = sample("baresip_answer_yealink.sdp")
    leg_b.offer_from(offer_a)
    leg_a.answer_from(answer_b, offer_a)

    # B (baresip) re-INVITEs with its SDP made sendonly: the box offers that to A.
    hold_from_b = with_direction(answer_b, Direction.SENDONLY)
    offer_to_a = leg_a.offer_from(hold_from_b)
    assert_box_side(offer_to_a, leg_a, PORT_A)
    assert offer_to_a.media[0].direction is Direction.SENDONLY
    assert offer_to_a.origin.session_version == 1112  # leg A's count, after its answer
    answer_from_a = yealink_answer(Direction.RECVONLY, 20034)
    answer_to_b = leg_b.answer_from(answer_from_a, hold_from_b)
    assert_box_side(answer_to_b, leg_b, PORT_B)
    assert_answer_fits_offer(answer_to_b, hold_from_b)
    assert answer_to_b.media[0].direction is Direction.RECVONLY
    assert answer_to_b.origin.session_version == 2223

    resume_from_b = with_direction(answer_b, Direction.SENDRECV, 2)
    assert leg_a.offer_from(resume_from_b).media[0].direction is Direction.SENDRECV
    answer_to_b = leg_b.answer_from(yealink_answer(Direction.SENDRECV, 20035), resume_from_b)
    assert answer_to_b.media[0].direction is Direction.SENDRECV
    assert answer_to_b.origin.session_version == 2224


def test_rfc2543_hold_becomes_a_direction() -> None:
    leg_a, leg_b = legs()
    hold_a = sample("cisco_rfc2543_hold.sdp")  # c=0.0.0.0, no direction attribute
    assert is_hold(hold_a)
    (target,) = media_targets(hold_a)
    assert (target.address, target.direction, target.on_hold) == (
        "0.0.0.0", Direction.SENDONLY, True,
    )  # fmt: skip
    hold_b = leg_b.offer_from(hold_a)
    assert hold_b.connection == Connection(BOX)  # never 0.0.0.0 towards B
    assert hold_b.media[0].direction is Direction.SENDONLY
    # B answers sendrecv anyway (a common bug): A is sent what its offer allows.
    answer_b = sample("sipp_answer.sdp")
    answer_a = leg_a.answer_from(answer_b, hold_a)
    assert answer_a.media[0].direction is Direction.RECVONLY


def test_ipv6_hold_address_and_session_level_inactive() -> None:
    sdp = parse_sdp(
        crlf(
            "v=0\no=- 1 2 IN IP6 2001:db8::5\ns=-\nc=IN IP6 ::\nt=0 0\na=inactive\n"
            "m=audio 7000 RTP/AVP 0\n"
        )
    )
    assert is_hold(sdp)
    assert media_targets(sdp)[0].direction is Direction.INACTIVE


@pytest.mark.parametrize("offered", list(Direction))
@pytest.mark.parametrize("answered", list(Direction))
def test_answer_direction_is_what_both_allow(offered: Direction, answered: Direction) -> None:
    leg_a, leg_b = legs()
    offer_a = with_direction(sample("yealink_offer.sdp"), offered)
    offer_b = leg_b.offer_from(offer_a)
    assert offer_b.media[0].direction is offered  # passed through, hold included
    answer_b = with_direction(sample("baresip_answer_yealink.sdp"), answered)
    direction = leg_a.answer_from(answer_b, offer_a).media[0].direction
    assert direction is answered & offered.reversed()
    # never more than the offer allows (RFC 3264 §6.1)
    assert direction is not None
    assert not (direction.sends and not offered.receives)
    assert not (direction.receives and not offered.sends)


# --- late offer: INVITE without SDP, offer in the 200, answer in the ACK ----------------------


def test_late_offer() -> None:
    leg_a, leg_b = legs()
    # A sent INVITE without SDP; the box sent B an INVITE without SDP. B's 200 has the offer.
    offer_b = sample("baresip_offer.sdp")
    offer_to_a = leg_a.offer_from(offer_b)  # in the 200 to A
    assert_box_side(offer_to_a, leg_a, PORT_A)
    assert offer_to_a.media[0].formats == ("96", "9", "0", "8", "101")
    # A (a desk phone without opus) answers in its ACK.
    answer_a = parse_sdp(
        crlf(
            "v=0\no=- 20033 20033 IN IP4 192.168.10.21\ns=SDP data\nc=IN IP4 192.168.10.21\n"
            "t=0 0\nm=audio 11780 RTP/AVP 9 101\na=rtpmap:9 G722/8000\n"
            "a=rtpmap:101 telephone-event/8000\na=fmtp:101 0-15\na=ptime:20\na=sendrecv\n"
        )
    )
    answer_to_b = leg_b.answer_from(answer_a, offer_b)  # in the ACK to B
    assert_box_side(answer_to_b, leg_b, PORT_B)
    assert_answer_fits_offer(answer_to_b, offer_b)
    assert answer_to_b.media[0].formats == ("9", "101")
    assert negotiated_codec(answer_to_b) == Codec(9, "G722", 8000)
    assert media_targets(answer_a)[0].address == "192.168.10.21"


# --- streams the box does not relay -----------------------------------------------------------


def test_video_is_rejected_with_port_zero() -> None:
    leg_a, leg_b = legs()
    offer_a = sample("baresip_av_offer.sdp")
    offer_b = leg_b.offer_from(offer_a)
    audio, video = offer_b.media
    assert audio.port == 40000 and audio.rtcp_mux
    assert (video.kind, video.port, video.formats, video.attributes) == ("video", 0, ("96",), ())
    # B answers the audio and (as it must) port 0 for the video.
    answer_b = parse_sdp(
        crlf(
            "v=0\no=- 8 8 IN IP4 192.0.2.70\ns=-\nc=IN IP4 192.0.2.70\nt=0 0\n"
            "m=audio 9010 RTP/AVP 0 101\na=rtpmap:101 telephone-event/8000\na=sendrecv\n"
            "m=video 0 RTP/AVP 96\n"
        )
    )
    answer_a = leg_a.answer_from(answer_b, offer_a)
    assert_answer_fits_offer(answer_a, offer_a)
    audio_a, video_a = answer_a.media
    assert audio_a.port == 30000 and video_a.port == 0 and video_a.kind == "video"
    # A offered rtcp-mux: the box takes it on A's leg though B did not.
    assert audio_a.rtcp_mux
    to_a, to_a_video = media_targets(offer_a)
    assert to_a.rtcp_mux and to_a.rtcp_port == to_a.rtp_port == 17314
    assert (to_a_video.kind, to_a_video.active) == ("video", True)
    to_b, to_b_video = media_targets(answer_b)
    assert not to_b.rtcp_mux and to_b.rtcp_port == 9011
    assert not to_b_video.active and to_b_video.rtp_port == 0


def test_video_passed_through_when_configured() -> None:
    policy = SdpPolicy(passthrough_kinds=frozenset({"video"}))
    leg_a, leg_b = legs(policy)
    offer_a = sample("baresip_av_offer.sdp")
    offer_b = leg_b.offer_from(offer_a)
    _, video = offer_b.media
    assert (video.port, video.formats, video.rtcp_mux) == (40002, ("96",), True)
    assert video.rtpmaps[96] == Codec(96, "VP8", 90000)
    assert video.attribute_values("rtcp-fb") == ["* nack pli"]
    answer_b = with_direction(offer_b, Direction.SENDRECV)  # a mirror-image callee
    answer_a = leg_a.answer_from(answer_b, offer_a)
    assert [m.port for m in answer_a.media] == [30000, 30002]
    # With only one port allocated on a leg, the second stream is refused, not the call.
    narrow = SdpLeg(BOX, [40000], session_id=3, policy=policy)
    assert [m.port for m in narrow.offer_from(offer_a).media] == [40000, 0]
    # SRTP video is not passed: its keys would be dropped with the peer's transport lines.
    srtp = offer_a.with_media(1, dataclasses.replace(offer_a.media[1], proto="RTP/SAVPF"))
    assert [m.port for m in legs(policy)[1].offer_from(srtp).media] == [40000, 0]


def test_ipv6_offer_through_an_ipv4_box_leg_and_back() -> None:
    leg_a = SdpLeg(BOX6, PORT_A, session_id=1111)
    leg_b = SdpLeg(BOX, PORT_B, session_id=2222)
    offer_a = sample("linphone_ipv6_offer.sdp")
    (to_a,) = media_targets(offer_a)
    assert (to_a.address, to_a.rtp_port, to_a.rtcp_port) == ("2001:db8:10::21", 7078, 7079)
    offer_b = leg_b.offer_from(offer_a)
    assert_box_side(offer_b, leg_b, PORT_B)
    assert offer_b.media[0].formats == ("96", "0", "8", "101")  # speex dropped
    assert offer_b.media[0].attribute_values("rtcp-fb") == ["* trr-int 1000", "* ccm tmmbr"]
    answer_b = parse_sdp(
        crlf(
            "v=0\no=- 8 8 IN IP4 192.0.2.70\ns=-\nc=IN IP4 192.0.2.70\nt=0 0\n"
            "m=audio 9010 RTP/AVP 96 101\na=rtpmap:96 opus/48000/2\n"
            "a=rtpmap:101 telephone-event/8000\n"
        )
    )
    answer_a = leg_a.answer_from(answer_b, offer_a)
    assert_box_side(answer_a, leg_a, PORT_A)
    assert bytes(answer_a).startswith(
        crlf("v=0\no=- 1111 1111 IN IP6 2001:db8:100::10\ns=edgepbx\nc=IN IP6 2001:db8:100::10\n")
    )
    assert negotiated_codec(answer_a) == Codec(96, "opus", 48000, 2)


def test_box_address_is_normalised_and_checked() -> None:
    assert SdpLeg("2001:DB8:0:0::10", [4000], session_id=1).address == "2001:db8::10"
    with pytest.raises(ValueError):
        SdpLeg("pbx.example.com", [4000], session_id=1)


# --- 488 and other refusals -------------------------------------------------------------------


def assert_488(exc: pytest.ExceptionInfo[SdpNotAcceptable], *fragments: str) -> None:
    assert isinstance(exc.value, RemoteProtocolError)
    assert exc.value.status == 488
    for fragment in fragments:
        assert fragment in exc.value.reason, exc.value.reason


def test_g729_only_offer_is_488() -> None:
    _, leg_b = legs()
    with pytest.raises(SdpNotAcceptable) as exc:
        leg_b.offer_from(sample("g729_only_offer.sdp"))
    assert_488(exc, "no acceptable audio stream", "no codec in common", "G729/8000")
    assert leg_b.last_sent is None  # nothing was sent, nothing counted


def test_g722_only_call_is_not_refused() -> None:
    leg_a, leg_b = legs()
    offer_a = parse_sdp(crlf(
        "v=0\no=- 1 1 IN IP4 10.20.0.5\ns=-\nc=IN IP4 10.20.0.5\nt=0 0\n"
        "m=audio 16384 RTP/AVP 9 101\na=rtpmap:101 telephone-event/8000\n"
    ))  # fmt: skip
    offer_b = leg_b.offer_from(offer_a)
    answer_a = leg_a.answer_from(with_direction(offer_b, Direction.SENDRECV), offer_a)
    assert negotiated_codec(answer_a) == Codec(9, "G722", 8000)


@pytest.mark.parametrize(
    ("m_line", "fragment"),
    [
        ("m=audio 5000 RTP/SAVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x", "RTP/SAVP"),
        ("m=video 5000 RTP/AVP 96\na=rtpmap:96 VP8/90000", "'video' over 'RTP/AVP' is not relayed"),
        ("m=audio 5000 RTP/AVP 101 13\na=rtpmap:101 telephone-event/8000", "no codec in common"),
        ("m=audio 5000 RTP/AVP 96\na=rtpmap:96 speex/16000", "speex/16000"),
        ("m=audio 0 RTP/AVP 0", "disabled by the offerer"),
        ("m=image 5000 udptl t38", "'image' over 'udptl' is not relayed"),
    ],
)
def test_offers_without_a_relayable_audio_stream_are_488(m_line: str, fragment: str) -> None:
    offer = parse_sdp(
        crlf(f"v=0\no=- 1 1 IN IP4 192.0.2.9\ns=-\nc=IN IP4 192.0.2.9\nt=0 0\n{m_line}\n")
    )
    _, leg_b = legs()
    with pytest.raises(SdpNotAcceptable) as exc:
        leg_b.offer_from(offer)
    assert_488(exc, fragment)


def test_policy_without_g722_falls_back_to_g711() -> None:
    policy = SdpPolicy(codecs=frozenset({"PCMU", "PCMA", "telephone-event"}))
    _, leg_b = legs(policy)
    assert leg_b.offer_from(sample("polycom_offer.sdp")).media[0].formats == ("0", "8", "127")
    with pytest.raises(ValueError, match="pcma"):
        SdpPolicy(codecs=frozenset({"PCMU", "telephone-event", "opus"}))
    assert SdpPolicy(codecs=frozenset({"PCMU", "pcma", "Telephone-Event", "G722"})).codecs == {
        "pcmu", "pcma", "telephone-event", "g722",
    }  # fmt: skip


def answer_b_with(m_lines: str) -> SessionDescription:
    return parse_sdp(
        crlf(f"v=0\no=- 8 8 IN IP4 192.0.2.70\ns=-\nc=IN IP4 192.0.2.70\nt=0 0\n{m_lines}\n")
    )


@pytest.mark.parametrize(
    ("m_lines", "fragments"),
    [
        # G729 was in A's offer but not in the box's offer to B.
        ("m=audio 9010 RTP/AVP 18", ("the answer has 'G729/8000'", "did not have")),
        ("m=audio 9010 RTP/AVP 3", ("'GSM/8000'",)),  # never offered by anyone
        ("m=audio 9010 RTP/AVP 0 97\na=rtpmap:97 iLBC/8000", ("'iLBC/8000'",)),
        ("m=audio 9010 RTP/AVP 96", ("'96'",)),  # dynamic, not offered, no rtpmap
        ("m=audio 9010 RTP/AVP 0\nm=audio 9012 RTP/AVP 0", ("2 media sections, the offer 1",)),
        ("m=video 9010 RTP/AVP 0", ("'video' for offered 'audio'",)),
        ("m=audio 0 RTP/AVP 0", ("the answer accepts no audio stream",)),
        ("m=audio 9010 RTP/AVP", ("without a format",)),
    ],
)
def test_answers_that_do_not_fit_the_offer_are_488(
    m_lines: str, fragments: tuple[str, ...]
) -> None:
    leg_a, leg_b = legs()
    offer_a = sample("yealink_offer.sdp")
    leg_b.offer_from(offer_a)
    with pytest.raises(SdpNotAcceptable) as exc:
        leg_a.answer_from(answer_b_with(m_lines), offer_a)
    assert_488(exc, *fragments)
    assert leg_a.last_sent is None


def test_unusable_addresses() -> None:
    _, leg_b = legs()
    fqdn = parse_sdp(crlf("v=0\no=- 1 1 IN IP4 a.example\ns=-\nc=IN IP4 phone.example.com\nt=0 0\n"
                          "m=audio 5000 RTP/AVP 0\n"))  # fmt: skip
    with pytest.raises(SdpNotAcceptable, match="not an IP address") as exc:
        leg_b.offer_from(fqdn)
    assert exc.value.status == 488
    mixed = parse_sdp(crlf("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 2001:db8::1\nt=0 0\n"
                           "m=audio 5000 RTP/AVP 0\n"))  # fmt: skip
    with pytest.raises(SdpParseError, match="mixes up IP4 and IP6"):
        media_targets(mixed)
    atm = parse_sdp(crlf("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=ATM NSAP 47.0091\nt=0 0\n"
                         "m=audio 5000 RTP/AVP 0\n"))  # fmt: skip
    with pytest.raises(SdpNotAcceptable, match="unsupported address type"):
        media_targets(atm)


# --- media targets ----------------------------------------------------------------------------


def test_media_targets_with_rtcp_attribute_and_rejected_stream() -> None:
    sdp = parse_sdp(
        crlf(
            "v=0\no=- 1 1 IN IP4 192.0.2.9\ns=-\nc=IN IP4 192.0.2.9\nt=0 0\n"
            "m=audio 49170 RTP/AVP 8 0 101\na=rtcp:53020 IN IP4 198.51.100.4\n"
            "a=rtpmap:101 telephone-event/8000\na=recvonly\n"
            "m=video 0 RTP/AVP 31\n"
        )
    )
    assert media_targets(sdp) == [
        MediaTarget(
            index=0, kind="audio", address="192.0.2.9", rtp_port=49170,
            rtcp_address="198.51.100.4", rtcp_port=53020, rtcp_mux=False,
            codecs=(Codec(8, "PCMA", 8000), Codec(0, "PCMU", 8000),
                    Codec(101, "telephone-event", 8000)),
            direction=Direction.RECVONLY, telephone_event=101,
        ),
        MediaTarget(
            index=1, kind="video", address="", rtp_port=0, rtcp_address="", rtcp_port=0,
            rtcp_mux=False, codecs=(Codec(31, "H261", 90000),), direction=Direction.INACTIVE,
            telephone_event=None,
        ),
    ]  # fmt: skip
    audio, video = media_targets(sdp)
    assert audio.payload_types == (8, 0, 101) and audio.active and not audio.on_hold
    assert audio.codec == Codec(8, "PCMA", 8000)
    assert not video.active and not video.on_hold
    assert not is_hold(sdp)  # recvonly: the writer wants media, it is the one being held
    assert negotiated_codec(sdp) == Codec(8, "PCMA", 8000)


def test_negotiated_codec_skips_dtmf_and_comfort_noise() -> None:
    sdp = answer_b_with("m=audio 9010 RTP/AVP 101 13 8\na=rtpmap:101 telephone-event/8000")
    assert negotiated_codec(sdp) == Codec(8, "PCMA", 8000)
    assert negotiated_codec(answer_b_with("m=audio 0 RTP/AVP 0")) is None
    assert (
        negotiated_codec(
            answer_b_with("m=audio 9010 RTP/AVP 101\na=rtpmap:101 telephone-event/8000")
        )
        is None
    )


# --- property: the answer never carries a codec the caller did not offer ----------------------

CODEC_POOL = [
    ("0", None), ("8", None), ("9", None), ("18", None), ("3", None), ("13", None),
    ("96", "opus/48000/2"), ("97", "speex/16000"), ("101", "telephone-event/8000"),
    ("102", "G7221/16000"), ("110", "telephone-event/48000"), ("111", "opus/48000/2"),
    ("120", "iLBC/8000"),
]  # fmt: skip


def m_line(port: int, codecs: list[tuple[str, str | None]], direction: Direction) -> str:
    fmts = " ".join(pt for pt, _ in codecs) or "0"
    maps = "".join(f"a=rtpmap:{pt} {enc}\n" for pt, enc in codecs if enc)
    return f"m=audio {port} RTP/AVP {fmts}\n{maps}a={direction}\n"


@given(
    offered=st.lists(st.sampled_from(CODEC_POOL), min_size=1, max_size=8, unique=True),
    answered=st.lists(st.sampled_from(CODEC_POOL), min_size=1, max_size=5, unique=True),
    offer_dir=st.sampled_from(list(Direction)),
    answer_dir=st.sampled_from(list(Direction)),
)
@settings(max_examples=400)
def test_property_answer_only_has_offered_codecs(
    offered: list[tuple[str, str | None]],
    answered: list[tuple[str, str | None]],
    offer_dir: Direction,
    answer_dir: Direction,
) -> None:
    leg_a, leg_b = legs()
    offer_a = parse_sdp(crlf(
        "v=0\no=- 1 1 IN IP4 192.0.2.9\ns=-\nc=IN IP4 192.0.2.9\nt=0 0\n"
        + m_line(5000, offered, offer_dir)
    ))  # fmt: skip
    try:
        offer_b = leg_b.offer_from(offer_a)
    except SdpNotAcceptable:
        assert not any(
            c.name.lower() in {"pcmu", "pcma", "g722", "opus"} for c in offer_a.media[0].codecs
        )
        return
    assert {c.name.lower() for c in offer_b.media[0].codecs} <= SdpPolicy().codecs
    answer_b = answer_b_with(m_line(9010, answered, answer_dir).rstrip("\n"))
    try:
        answer_a = leg_a.answer_from(answer_b, offer_a)
    except SdpNotAcceptable as exc:
        assert exc.status == 488
        return
    assert_answer_fits_offer(answer_a, offer_a)
    assert_answer_fits_offer(answer_a, offer_b)  # the box's numbers are A's
    direction = answer_a.media[0].direction
    assert direction is answer_dir & offer_dir.reversed()
    assert {c.key for c in answer_a.media[0].codecs} <= {c.key for c in answer_b.media[0].codecs}
    assert_box_side(answer_a, leg_a, PORT_A)
