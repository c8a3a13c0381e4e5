"""RTP and RTCP packets, sans-IO.

- RTP fixed header, CSRC list, header extension and padding: RFC 3550 §5.1 and §5.3.1.
- rtcp-mux demultiplexing by the second octet: RFC 5761 §4 (RTCP packet types 192-223 are
  never RTP payload types 64-95 with the marker bit in front of them).
- RTCP compound packets (RFC 3550 §6.1, validity as in Appendix A.2 but allowing reduced-size
  RTCP, RFC 5506): sender and receiver reports with their report blocks (§6.4), BYE (§6.6);
  every other packet type is kept as opaque :class:`RtcpOther`.
- RFC 4733 §2.3 telephone-event payloads (DTMF).

Every parse function raises only :class:`PacketError` on bad input. Objects serialize back
with ``bytes(obj)``, so build -> parse round trips are exact.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTP_VERSION = 2
RTP_HEADER_SIZE = 12
RTCP_HEADER_SIZE = 4  # the common header; an empty BYE is just that

# RTCP packet types (RFC 3550 §12.1)
RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_APP = 204

_FIXED = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, sequence, timestamp, SSRC
_EXTENSION = struct.Struct("!HH")  # profile-defined, length in 32-bit words
_RTCP_HEADER = struct.Struct("!BBH")  # V/P/count, packet type, length in words minus one
_SENDER_INFO = struct.Struct("!IQIII")  # sender SSRC, NTP, RTP timestamp, packets, octets
_REPORT_BLOCK = struct.Struct("!IIIIII")
_SSRC = struct.Struct("!I")
_EVENT = struct.Struct("!BBH")

#: ``peek_sequence_timestamp_ssrc(data, 2) -> (sequence, timestamp, ssrc)``: the one unpack the
#: relay's per-packet path needs; the caller has checked that the fixed header is there.
peek_sequence_timestamp_ssrc = struct.Struct("!HII").unpack_from


class PacketError(ValueError):
    """The bytes are not a well-formed packet of the kind asked for."""


# ---------------------------------------------------------------------------- classification


def is_rtcp(data: bytes) -> bool:
    """RTCP by RFC 5761 §4: version 2 and packet type 192-223 in the second octet."""
    return len(data) >= RTCP_HEADER_SIZE and data[0] >> 6 == RTP_VERSION and 191 < data[1] < 224


def is_rtp(data: bytes) -> bool:
    """RTP by RFC 5761 §4: version 2, a full fixed header, and not an RTCP packet type."""
    return len(data) >= RTP_HEADER_SIZE and data[0] >> 6 == RTP_VERSION and not 191 < data[1] < 224


# ---------------------------------------------------------------------------------------- RTP


@dataclass(frozen=True, slots=True)
class RtpExtension:
    """The RFC 3550 §5.3.1 header extension: a profile-defined 16 bits and whole 32-bit words
    of data (RFC 8285 elements live inside ``data``)."""

    profile: int
    data: bytes = b""

    def __post_init__(self) -> None:
        if len(self.data) % 4:
            raise PacketError("header extension data must be whole 32-bit words")


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """An RTP packet. ``padding`` is the number of padding octets including the count octet
    (0: P bit clear); ``payload`` excludes them."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension: RtpExtension | None = None
    payload: bytes = b""
    padding: int = 0

    version = RTP_VERSION

    @property
    def csrc_count(self) -> int:
        return len(self.csrcs)

    def __bytes__(self) -> bytes:
        if not 0 <= self.payload_type < 128:
            raise PacketError("payload type out of range")
        if len(self.csrcs) > 15:
            raise PacketError("at most 15 CSRCs")
        if not 0 <= self.padding < 256:
            raise PacketError("padding out of range")
        b0 = (RTP_VERSION << 6) | len(self.csrcs)
        if self.padding:
            b0 |= 0x20
        if self.extension is not None:
            b0 |= 0x10
        b1 = self.payload_type | (0x80 if self.marker else 0)
        try:
            parts = [_FIXED.pack(b0, b1, self.sequence, self.timestamp, self.ssrc)]
            parts.extend(_SSRC.pack(c) for c in self.csrcs)
            if self.extension is not None:
                ext = self.extension
                parts.append(_EXTENSION.pack(ext.profile, len(ext.data) // 4) + ext.data)
        except struct.error as exc:
            raise PacketError(f"field out of range: {exc}") from exc
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes((self.padding,)))
        return b"".join(parts)


def parse_rtp(data: bytes) -> RtpPacket:
    """Parse one RTP packet (RFC 3550 §5.1)."""
    size = len(data)
    if size < RTP_HEADER_SIZE:
        raise PacketError(f"RTP packet of {size} bytes is shorter than the fixed header")
    b0, b1, sequence, timestamp, ssrc = _FIXED.unpack_from(data)
    if b0 >> 6 != RTP_VERSION:
        raise PacketError(f"RTP version {b0 >> 6}, expected 2")
    count = b0 & 0x0F
    pos = RTP_HEADER_SIZE + 4 * count
    if size < pos:
        raise PacketError("RTP packet shorter than its CSRC list")
    csrcs = struct.unpack_from(f"!{count}I", data, RTP_HEADER_SIZE) if count else ()
    extension = None
    if b0 & 0x10:
        if size < pos + 4:
            raise PacketError("RTP packet shorter than its header extension")
        profile, words = _EXTENSION.unpack_from(data, pos)
        end = pos + 4 + 4 * words
        if size < end:
            raise PacketError("RTP header extension longer than the packet")
        extension = RtpExtension(profile, bytes(data[pos + 4 : end]))
        pos = end
    end = size
    padding = 0
    if b0 & 0x20:
        padding = data[-1]
        # The count includes itself (§5.1), so 0 is malformed.
        if padding == 0 or padding > size - pos:
            raise PacketError(f"bad RTP padding count {padding}")
        end = size - padding
    return RtpPacket(
        b1 & 0x7F,
        sequence,
        timestamp,
        ssrc,
        bool(b1 & 0x80),
        csrcs,
        extension,
        bytes(data[pos:end]),
        padding,
    )


# --------------------------------------------------------------------------------------- RTCP


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """One reception report (RFC 3550 §6.4.1) about source ``ssrc``.

    ``fraction_lost`` is the 8-bit fixed-point fraction (divide by 256);
    ``cumulative_lost`` is signed (duplicates can make it negative); ``jitter`` is in
    timestamp units; ``last_sr`` / ``delay_since_last_sr`` are the LSR / DLSR fields
    (middle 32 bits of an NTP time, and units of 1/65536 s).
    """

    ssrc: int
    fraction_lost: int
    cumulative_lost: int
    highest_sequence: int
    jitter: int
    last_sr: int = 0
    delay_since_last_sr: int = 0

    @property
    def loss_ratio(self) -> float:
        return self.fraction_lost / 256

    def __bytes__(self) -> bytes:
        if not 0 <= self.fraction_lost < 256:
            raise PacketError("fraction lost out of range")
        if not -(1 << 23) <= self.cumulative_lost < (1 << 23):
            raise PacketError("cumulative lost out of the 24-bit signed range")
        lost = (self.fraction_lost << 24) | (self.cumulative_lost & 0xFFFFFF)
        try:
            return _REPORT_BLOCK.pack(
                self.ssrc,
                lost,
                self.highest_sequence,
                self.jitter,
                self.last_sr,
                self.delay_since_last_sr,
            )
        except struct.error as exc:
            raise PacketError(f"field out of range: {exc}") from exc


@dataclass(frozen=True, slots=True)
class SenderReport:
    """RTCP SR (RFC 3550 §6.4.1). ``extension`` holds profile-specific trailing bytes."""

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""
    padding: int = 0

    packet_type = RTCP_SR

    def __bytes__(self) -> bytes:
        try:
            info = _SENDER_INFO.pack(
                self.ssrc,
                self.ntp_timestamp,
                self.rtp_timestamp,
                self.packet_count,
                self.octet_count,
            )
        except struct.error as exc:
            raise PacketError(f"field out of range: {exc}") from exc
        body = info + b"".join(bytes(r) for r in self.reports) + self.extension
        return _rtcp_packet(RTCP_SR, len(self.reports), body, self.padding)


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    """RTCP RR (RFC 3550 §6.4.2)."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""
    padding: int = 0

    packet_type = RTCP_RR

    def __bytes__(self) -> bytes:
        body = _pack_ssrc(self.ssrc) + b"".join(bytes(r) for r in self.reports) + self.extension
        return _rtcp_packet(RTCP_RR, len(self.reports), body, self.padding)


@dataclass(frozen=True, slots=True)
class Bye:
    """RTCP BYE (RFC 3550 §6.6); ``reason`` is the raw optional reason text."""

    ssrcs: tuple[int, ...]
    reason: bytes | None = None
    padding: int = 0

    packet_type = RTCP_BYE

    def __bytes__(self) -> bytes:
        body = b"".join(_pack_ssrc(s) for s in self.ssrcs)
        if self.reason is not None:
            if len(self.reason) > 255:
                raise PacketError("BYE reason longer than 255 bytes")
            text = bytes((len(self.reason),)) + self.reason
            body += text + bytes(-len(text) % 4)
        return _rtcp_packet(RTCP_BYE, len(self.ssrcs), body, self.padding)


@dataclass(frozen=True, slots=True)
class RtcpOther:
    """Any other RTCP packet (SDES, APP, feedback, XR...), kept as its header fields and body."""

    packet_type: int
    count: int
    body: bytes
    padding: int = 0

    def __bytes__(self) -> bytes:
        return _rtcp_packet(self.packet_type, self.count, self.body, self.padding)


RtcpPacket = SenderReport | ReceiverReport | Bye | RtcpOther


def parse_rtcp(data: bytes) -> tuple[RtcpPacket, ...]:
    """Parse an RTCP compound packet (or a single, reduced-size one) into its packets.

    The packet lengths must add up to the datagram exactly (RFC 3550 A.2); padding is
    honoured on any packet, although §6.4.1 expects it only on the last.
    """
    size = len(data)
    if size < 4:
        raise PacketError("RTCP packet shorter than its header")
    packets: list[RtcpPacket] = []
    pos = 0
    while pos < size:
        if size - pos < 4:
            raise PacketError("trailing bytes after the last RTCP packet")
        b0, packet_type, words = _RTCP_HEADER.unpack_from(data, pos)
        if b0 >> 6 != RTP_VERSION:
            raise PacketError(f"RTCP version {b0 >> 6}, expected 2")
        end = pos + 4 * (words + 1)
        if end > size:
            raise PacketError("RTCP length field runs past the datagram")
        body_end = end
        padding = 0
        if b0 & 0x20:
            padding = data[end - 1]
            if padding == 0 or padding > end - pos - 4:
                raise PacketError(f"bad RTCP padding count {padding}")
            body_end = end - padding
        packets.append(_parse_one(packet_type, b0 & 0x1F, data, pos + 4, body_end, padding=padding))
        pos = end
    return tuple(packets)


def build_rtcp(packets: tuple[RtcpPacket, ...] | list[RtcpPacket]) -> bytes:
    """Serialize a compound RTCP packet."""
    return b"".join(bytes(p) for p in packets)


def _parse_one(
    packet_type: int, count: int, data: bytes, start: int, end: int, *, padding: int
) -> RtcpPacket:
    if packet_type == RTCP_SR:
        if end - start < _SENDER_INFO.size:
            raise PacketError("SR shorter than its sender info")
        ssrc, ntp, rtp_ts, packets, octets = _SENDER_INFO.unpack_from(data, start)
        reports, extension = _report_blocks(data, start + _SENDER_INFO.size, end, count)
        return SenderReport(ssrc, ntp, rtp_ts, packets, octets, reports, extension, padding)
    if packet_type == RTCP_RR:
        if end - start < 4:
            raise PacketError("RR without its SSRC")
        (ssrc,) = _SSRC.unpack_from(data, start)
        reports, extension = _report_blocks(data, start + 4, end, count)
        return ReceiverReport(ssrc, reports, extension, padding)
    if packet_type == RTCP_BYE:
        pos = start + 4 * count
        if pos > end:
            raise PacketError("BYE shorter than its SSRC list")
        ssrcs = struct.unpack_from(f"!{count}I", data, start) if count else ()
        reason = None
        if pos < end:
            length = data[pos]
            if pos + 1 + length > end:
                raise PacketError("BYE reason runs past the packet")
            reason = bytes(data[pos + 1 : pos + 1 + length])
        return Bye(ssrcs, reason, padding)
    return RtcpOther(packet_type, count, bytes(data[start:end]), padding)


def _report_blocks(
    data: bytes, start: int, end: int, count: int
) -> tuple[tuple[ReportBlock, ...], bytes]:
    blocks_end = start + count * _REPORT_BLOCK.size
    if blocks_end > end:
        raise PacketError("RTCP report count larger than the packet")
    blocks = []
    for pos in range(start, blocks_end, _REPORT_BLOCK.size):
        ssrc, lost, highest, jitter, lsr, dlsr = _REPORT_BLOCK.unpack_from(data, pos)
        cumulative = lost & 0xFFFFFF
        if cumulative & 0x800000:  # 24-bit two's complement
            cumulative -= 1 << 24
        blocks.append(ReportBlock(ssrc, lost >> 24, cumulative, highest, jitter, lsr, dlsr))
    return tuple(blocks), bytes(data[blocks_end:end])


def _rtcp_packet(packet_type: int, count: int, body: bytes, padding: int) -> bytes:
    if not 0 <= count < 32:
        raise PacketError("RTCP count field out of range")
    if not 0 <= padding < 256:
        raise PacketError("padding out of range")
    if padding:
        body += bytes(padding - 1) + bytes((padding,))
    if len(body) % 4:
        raise PacketError("RTCP packet length must be whole 32-bit words")
    b0 = (RTP_VERSION << 6) | (0x20 if padding else 0) | count
    words = len(body) // 4
    if words > 0xFFFF:
        raise PacketError("RTCP packet too long")
    return _RTCP_HEADER.pack(b0, packet_type, words) + body


def _pack_ssrc(ssrc: int) -> bytes:
    try:
        return _SSRC.pack(ssrc)
    except struct.error as exc:
        raise PacketError(f"SSRC out of range: {exc}") from exc


# ------------------------------------------------------------------- RFC 4733 telephone-event

#: Events 0-16 of RFC 4733 §3.2 (DTMF digits and hook flash).
DTMF_EVENTS = "0123456789*#ABCD!"


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """An RFC 4733 §2.3 event payload. ``duration`` is in timestamp units since the event's
    start (the RTP timestamp of every packet of one event is the same)."""

    event: int
    end: bool
    volume: int
    duration: int

    @property
    def digit(self) -> str | None:
        """ "0"-"9", "*", "#", "A"-"D", "!" (flash), or None for other events."""
        return DTMF_EVENTS[self.event] if self.event < len(DTMF_EVENTS) else None

    def __bytes__(self) -> bytes:
        if not 0 <= self.volume < 64:
            raise PacketError("volume out of range (0-63, -dBm0)")
        try:
            return _EVENT.pack(self.event, (0x80 if self.end else 0) | self.volume, self.duration)
        except struct.error as exc:
            raise PacketError(f"field out of range: {exc}") from exc


def parse_telephone_event(payload: bytes) -> TelephoneEvent:
    """Parse a telephone-event payload (the first event when several are packed)."""
    if len(payload) < _EVENT.size:
        raise PacketError(f"telephone-event payload of {len(payload)} bytes, expected 4")
    event, flags, duration = _EVENT.unpack_from(payload)
    return TelephoneEvent(event, bool(flags & 0x80), flags & 0x3F, duration)
