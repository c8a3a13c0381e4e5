"""RTP, RTCP and telephone-event parsing: captured-style bytes, edge cases, and Hypothesis
(random bytes raise only PacketError; build -> parse round trips exactly)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.imports import loaded

from pbx.rtp.packet import (
    Bye,
    PacketError,
    ReceiverReport,
    ReportBlock,
    RtcpOther,
    RtcpPacket,
    RtpExtension,
    RtpPacket,
    SenderReport,
    TelephoneEvent,
    build_rtcp,
    is_rtcp,
    is_rtp,
    parse_rtcp,
    parse_rtp,
    parse_telephone_event,
)

# A PCMU packet as a desk phone sends it: V=2, M=1 (talkspurt start), PT 0, seq 7500,
# timestamp 40960, SSRC 0xdeadbeef, 160 bytes of μ-law silence.
PCMU = bytes.fromhex("80 80 1d 4c 00 00 a0 00 de ad be ef") + b"\xff" * 160

# SR with one report block + SDES CNAME, as a softphone sends every few seconds.
SR_SDES = bytes.fromhex(
    "81 c8 00 0c"  # V=2 RC=1 SR, 13 words
    "5a 3b 9c 01"  # sender SSRC
    "e8 4a 3b 2c 80 00 00 00"  # NTP timestamp
    "00 01 f4 00"  # RTP timestamp 128000
    "00 00 00 fa"  # 250 packets
    "00 00 9c 40"  # 40000 octets
    "1a 2b 3c 4d"  # report block about SSRC 0x1a2b3c4d
    "0d 00 00 05"  # fraction lost 13/256, cumulative lost 5
    "00 01 00 2a"  # extended highest sequence: one wrap, seq 42
    "00 00 00 1e"  # jitter 30 timestamp units
    "3b 2c 80 00"  # LSR
    "00 01 00 00"  # DLSR: 1 s
    "81 ca 00 06"  # SDES, one chunk, 7 words
    "5a 3b 9c 01"
    "01 10" + b"phone@192.0.2.10".hex() + "00 00"  # CNAME, END, pad to a word
)

# RR with a negative cumulative loss (duplicates) and a BYE with a reason.
RR_BYE = bytes.fromhex(
    "81 c9 00 07"  # RR, one block
    "0b ad ca fe"
    "de ad be ef"
    "00 ff ff fe"  # fraction 0, cumulative -2
    "00 00 1d 4c"
    "00 00 00 00"
    "00 00 00 00"
    "00 00 00 00"
    "81 cb 00 03"  # BYE, one SSRC, reason "done" padded to a word
    "0b ad ca fe"
    "04" + b"done".hex() + "00 00 00"
)


def test_parse_pcmu_packet() -> None:
    packet = parse_rtp(PCMU)
    assert packet.version == 2
    assert packet.marker
    assert packet.payload_type == 0
    assert packet.sequence == 7500
    assert packet.timestamp == 40960
    assert packet.ssrc == 0xDEADBEEF
    assert packet.csrc_count == 0
    assert packet.extension is None
    assert packet.padding == 0
    assert packet.payload == b"\xff" * 160
    assert bytes(packet) == PCMU


def test_parse_csrcs_extension_and_padding() -> None:
    data = bytes.fromhex(
        "b2 08 00 01 00 00 00 a0 00 00 00 07"  # V=2 P X CC=2, PT 8
        "00 00 00 01 00 00 00 02"  # CSRCs
        "be de 00 01 10 aa 00 00"  # RFC 8285 one-byte header extension, one word
        "d5 d5 d5 d5"  # payload
        "00 00 03"  # padding, count 3
    )
    packet = parse_rtp(data)
    assert packet.csrcs == (1, 2)
    assert packet.extension == RtpExtension(0xBEDE, bytes.fromhex("10aa0000"))
    assert packet.payload == b"\xd5" * 4
    assert packet.padding == 3
    assert bytes(packet) == data


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (PCMU[:11], "shorter"),
        (b"\x40" + PCMU[1:], "version"),
        (bytes([0x83]) + PCMU[1:20], "CSRC"),
        (bytes([0x90]) + PCMU[1:12] + b"\x00\x00", "extension"),
        (bytes([0x90]) + PCMU[1:12] + b"\x00\x00\x00\x09", "extension"),
        (bytes([0xA0]) + PCMU[1:] + b"\x00", "padding"),
        (bytes([0xA0]) + PCMU[1:12] + b"\x05", "padding"),
    ],
)
def test_malformed_rtp(data: bytes, why: str) -> None:
    with pytest.raises(PacketError, match=why):
        parse_rtp(data)


def test_parse_sender_report_with_sdes() -> None:
    sr, sdes = parse_rtcp(SR_SDES)
    assert isinstance(sr, SenderReport)
    assert sr.ssrc == 0x5A3B9C01
    assert sr.ntp_timestamp == 0xE84A3B2C80000000
    assert sr.rtp_timestamp == 128000
    assert (sr.packet_count, sr.octet_count) == (250, 40000)
    (block,) = sr.reports
    assert block == ReportBlock(0x1A2B3C4D, 13, 5, 0x1002A, 30, 0x3B2C8000, 0x10000)
    assert block.loss_ratio == pytest.approx(13 / 256)
    assert isinstance(sdes, RtcpOther)
    assert (sdes.packet_type, sdes.count) == (202, 1)
    assert b"phone@192.0.2.10" in sdes.body
    assert build_rtcp(parse_rtcp(SR_SDES)) == SR_SDES


def test_parse_receiver_report_and_bye() -> None:
    rr, bye = parse_rtcp(RR_BYE)
    assert rr == ReceiverReport(0x0BADCAFE, (ReportBlock(0xDEADBEEF, 0, -2, 7500, 0),))
    assert bye == Bye((0x0BADCAFE,), b"done")
    assert build_rtcp([rr, bye]) == RR_BYE


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (SR_SDES[:3], "shorter"),
        (SR_SDES + b"\x81", "trailing"),
        (b"\x41" + SR_SDES[1:], "version"),
        (SR_SDES[:4] + SR_SDES[4:50], "length"),
        (bytes.fromhex("80 c8 00 01 00 00 00 01"), "sender info"),
        (bytes.fromhex("80 c9 00 00"), "SSRC"),
        (bytes.fromhex("82 c9 00 07") + bytes(28), "report count"),
        (bytes.fromhex("82 cb 00 01 00 00 00 01"), "SSRC list"),
        (bytes.fromhex("81 cb 00 02 00 00 00 01 09 61 62 63"), "reason"),
        (bytes.fromhex("a0 c9 00 01 00 00 00 09"), "padding"),
    ],
)
def test_malformed_rtcp(data: bytes, why: str) -> None:
    with pytest.raises(PacketError, match=why):
        parse_rtcp(data)


def test_rtcp_mux_classification_by_second_octet() -> None:
    # RFC 5761 §4: 192-223 is RTCP whatever the marker bit would say for RTP.
    for second in range(256):
        packet = bytes([0x80, second]) + bytes(10)
        assert is_rtcp(packet) == (192 <= second <= 223)
        assert is_rtp(packet) == (not 192 <= second <= 223)
    assert is_rtcp(SR_SDES) and not is_rtp(SR_SDES)
    assert is_rtp(PCMU) and not is_rtcp(PCMU)
    assert not is_rtp(PCMU[:11])
    assert not is_rtp(b"\x00\x01" + PCMU[2:])  # a STUN binding request starts like this
    assert not is_rtcp(b"\x81\xc8\x00")


def test_telephone_event() -> None:
    # Digit 5, end of event, volume 10 dBm0 below, 800 timestamp units (100 ms).
    event = parse_telephone_event(bytes.fromhex("05 8a 03 20"))
    assert event == TelephoneEvent(event=5, end=True, volume=10, duration=800)
    assert event.digit == "5"
    assert bytes(event) == bytes.fromhex("05 8a 03 20")
    assert parse_telephone_event(bytes.fromhex("0b 00 00 a0")).digit == "#"
    assert parse_telephone_event(bytes.fromhex("0a 40 00 a0")) == TelephoneEvent(10, False, 0, 160)
    assert TelephoneEvent(16, False, 0, 0).digit == "!"
    assert TelephoneEvent(70, False, 0, 0).digit is None
    with pytest.raises(PacketError):
        parse_telephone_event(b"\x05\x8a\x03")


def test_building_out_of_range_fields_raises_packet_error() -> None:
    with pytest.raises(PacketError):
        bytes(RtpPacket(128, 0, 0, 0))
    with pytest.raises(PacketError):
        bytes(RtpPacket(0, 70000, 0, 0))
    with pytest.raises(PacketError):
        bytes(ReportBlock(1, 0, 1 << 23, 0, 0))
    with pytest.raises(PacketError):
        bytes(TelephoneEvent(1, True, 64, 0))
    with pytest.raises(PacketError):
        RtpExtension(1, b"abc")


# ------------------------------------------------------------------------------- Hypothesis

u32 = st.integers(0, 0xFFFFFFFF)
words = st.integers(0, 6).flatmap(lambda n: st.binary(min_size=4 * n, max_size=4 * n))

rtp_packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence=st.integers(0, 0xFFFF),
    timestamp=u32,
    ssrc=u32,
    marker=st.booleans(),
    csrcs=st.lists(u32, max_size=15).map(tuple),
    extension=st.none() | st.builds(RtpExtension, st.integers(0, 0xFFFF), words),
    payload=st.binary(max_size=300),
    padding=st.sampled_from([0, 1, 2, 3, 4, 255]),
)
report_blocks = st.builds(
    ReportBlock,
    ssrc=u32,
    fraction_lost=st.integers(0, 255),
    cumulative_lost=st.integers(-(1 << 23), (1 << 23) - 1),
    highest_sequence=u32,
    jitter=u32,
    last_sr=u32,
    delay_since_last_sr=u32,
)
blocks = st.lists(report_blocks, max_size=31).map(tuple)
paddings = st.sampled_from([0, 4, 8])
rtcp_packets: st.SearchStrategy[RtcpPacket] = st.one_of(
    st.builds(
        SenderReport,
        ssrc=u32,
        ntp_timestamp=st.integers(0, (1 << 64) - 1),
        rtp_timestamp=u32,
        packet_count=u32,
        octet_count=u32,
        reports=blocks,
        extension=words,
        padding=paddings,
    ),
    st.builds(ReceiverReport, ssrc=u32, reports=blocks, extension=words, padding=paddings),
    st.builds(
        Bye,
        ssrcs=st.lists(u32, max_size=31).map(tuple),
        reason=st.none() | st.binary(max_size=255),
        padding=paddings,
    ),
    st.builds(
        RtcpOther,
        packet_type=st.integers(192, 223).filter(lambda t: t not in (200, 201, 203)),
        count=st.integers(0, 31),
        body=words,
        padding=paddings,
    ),
)


@given(rtp_packets)
def test_rtp_round_trip(packet: RtpPacket) -> None:
    data = bytes(packet)
    assert parse_rtp(data) == packet
    # Only a marked packet with PT 64-95 looks like RTCP (why RFC 5761 §4 forbids those PTs).
    assert is_rtp(data) == (not (packet.marker and 64 <= packet.payload_type <= 95))


@given(st.lists(rtcp_packets, min_size=1, max_size=4))
def test_rtcp_round_trip(packets: list[RtcpPacket]) -> None:
    data = build_rtcp(packets)
    assert parse_rtcp(data) == tuple(packets)
    assert is_rtcp(data)


@given(
    st.builds(
        TelephoneEvent,
        st.integers(0, 255),
        st.booleans(),
        st.integers(0, 63),
        st.integers(0, 0xFFFF),
    )
)
def test_telephone_event_round_trip(event: TelephoneEvent) -> None:
    assert parse_telephone_event(bytes(event)) == event


@given(st.binary(max_size=200))
def test_random_bytes_raise_only_packet_error(data: bytes) -> None:
    for parse in (parse_rtp, parse_rtcp, parse_telephone_event):
        with contextlib.suppress(PacketError):
            parse(data)


@given(st.binary(min_size=4, max_size=120).map(lambda b: bytes([0x80 | (b[0] & 0x3F)]) + b[1:]))
def test_version_2_garbage_raises_only_packet_error(data: bytes) -> None:
    # Random bytes rarely pass the version check; these always do, so the deeper checks run.
    for parse in (parse_rtp, parse_rtcp):
        with contextlib.suppress(PacketError):
            parse(data)


def test_sans_io_packages_load_no_asyncio_or_sockets() -> None:
    code = "import pbx.rtp, pbx.rtp.g711, pbx.rtp.stats, pbx.rtp.packet"
    assert loaded(code, ("asyncio", "socket", "selectors")) == []
