"""RFC 3264 offer/answer for a B2BUA that anchors media on the box.

Each call leg has an :class:`SdpLeg`: the box's end of that leg, with the box's media address,
one RTP port per m-line (RTCP on port + 1 unless rtcp-mux), and the o= line the box owns on
that leg. The box never hands one peer's SDP to the other; a leg rewrites it. Two methods
cover every exchange, in either direction:

- ``leg.offer_from(remote_offer)``: called on the leg the offer goes *out* on, with the offer
  that came *in* on the other leg;
- ``leg.answer_from(remote_answer, offer)``: called on the leg the answer goes out on, with the
  answer that came in on the other leg and the offer that came in on *this* leg.

======================  ===========================  ===========================================
exchange                box receives                 box sends
======================  ===========================  ===========================================
INVITE with SDP         offer_a in INVITE from A     ``leg_b.offer_from(offer_a)`` in INVITE to B
                        answer_b in 200 from B       ``leg_a.answer_from(answer_b, offer_a)`` in 200
late offer (INVITE      offer_b in 200 from B        ``leg_a.offer_from(offer_b)`` in 200 to A
without SDP)            answer_a in ACK from A       ``leg_b.answer_from(answer_a, offer_b)`` in ACK
re-INVITE from A        as the first row             as the first row
re-INVITE from B        offer_b in re-INVITE         ``leg_a.offer_from(offer_b)`` in re-INVITE to A
                        answer_a in 200 from A       ``leg_b.answer_from(answer_a, offer_b)`` in 200
======================  ===========================  ===========================================

What the box writes on a leg: its own session level (o= of the leg, s=, c= with the box's
address, t= copied from the offer; no session attributes), and per m-line the remote's
stream with the box's port, the codecs filtered by :class:`SdpPolicy`, dynamic payload types
keeping their numbers and fmtp, the direction written out at media level, and the peer's own
transport attributes (ICE, a=rtcp, SRTP keys, DTLS, SSRCs, BUNDLE) dropped, since media now
runs through the box. A stream the box does not relay goes out with port 0 (RFC 3264 §6, §8.2)
so that m-lines stay aligned across the two legs.

Hold (RFC 3264 §8.4): a direction attribute passes through; the RFC 2543 style (c= address
0.0.0.0, or :: for IPv6) is turned into a direction, because the box writes its own address:
the writer does not want to receive, so sendrecv becomes sendonly and recvonly inactive.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

from pbx.sdp.errors import SdpNotAcceptable, SdpParseError, show
from pbx.sdp.session import (
    Attribute,
    Codec,
    Connection,
    Direction,
    MediaDescription,
    Origin,
    SessionDescription,
    Timing,
)

__all__ = [
    "DEFAULT_CODECS",
    "REQUIRED_CODECS",
    "MediaTarget",
    "SdpLeg",
    "SdpPolicy",
    "is_hold",
    "media_targets",
    "negotiated_codec",
]

# The box itself relies on these (G.711 for prompts and recordings, RFC 4733 for DTMF).
REQUIRED_CODECS = frozenset({"pcmu", "pcma", "telephone-event"})
DEFAULT_CODECS = REQUIRED_CODECS | {"g722", "opus"}
# Formats that ride along with a codec but carry no speech by themselves.
NOT_SPEECH = frozenset({"telephone-event", "cn", "red", "ulpfec", "rtx"})
# Plain RTP: the relay copies packets and can look into them (DTMF, recording). SRTP, DTLS and
# TCP framings are not relayed (yet).
RELAYED_PROTOS = frozenset({"RTP/AVP", "RTP/AVPF"})
# Attributes about the peer's own transport, keys or stream ids: false once media is anchored.
PEER_TRANSPORT = frozenset(
    {
        "rtcp", "candidate", "remote-candidates", "end-of-candidates", "ice-ufrag", "ice-pwd",
        "ice-options", "ice-lite", "ice-mismatch", "ice-pacing", "crypto", "fingerprint",
        "setup", "connection", "tls-id", "key-mgmt", "zrtp-hash", "ssrc", "ssrc-group", "msid",
        "mid", "bundle-only", "rtcp-mux-only", "sendrecv", "sendonly", "recvonly", "inactive",
        "rtcp-mux",
    }
)  # fmt: skip
# Attributes whose value starts with the payload type they describe.
PER_FORMAT = frozenset({"rtpmap", "fmtp", "rtcp-fb"})
UNSPECIFIED = frozenset({"0.0.0.0", "::"})


@dataclass(frozen=True, slots=True)
class SdpPolicy:
    """What the box relays. ``codecs``: encoding names (any case) passed through on audio
    streams; PCMU, PCMA and telephone-event are always among them. ``passthrough_kinds``:
    media types other than audio relayed as they are (``{"video"}``); others get port 0."""

    codecs: frozenset[str] = DEFAULT_CODECS
    passthrough_kinds: frozenset[str] = frozenset()
    session_name: str = "edgepbx"

    def __post_init__(self) -> None:
        codecs = frozenset(c.lower() for c in self.codecs)
        if not codecs >= REQUIRED_CODECS:
            missing = ", ".join(sorted(REQUIRED_CODECS - codecs))
            raise ValueError(f"the box always supports {missing}; keep it in SdpPolicy.codecs")
        object.__setattr__(self, "codecs", codecs)


@dataclass(frozen=True, slots=True)
class MediaTarget:
    """Where the writer of an SDP wants one stream sent, for configuring the media relay.

    For an offer the box answered, ``rtcp_mux`` is in effect when present (the box accepts
    rtcp-mux whenever it is offered); for an answer it is the negotiated result.
    ``direction`` is the effective one, with an RFC 2543 0.0.0.0 address folded in.
    """

    index: int
    kind: str
    address: str  # "" when the stream is rejected; 0.0.0.0 / :: when on RFC 2543 hold
    rtp_port: int  # 0: the stream is rejected or disabled
    rtcp_address: str
    rtcp_port: int  # == rtp_port with rtcp-mux
    rtcp_mux: bool
    codecs: tuple[Codec, ...]
    direction: Direction
    telephone_event: int | None  # the RFC 4733 payload type, if any

    @property
    def active(self) -> bool:
        return self.rtp_port != 0

    @property
    def payload_types(self) -> tuple[int, ...]:
        return tuple(c.payload_type for c in self.codecs)

    @property
    def codec(self) -> Codec | None:
        """The first speech codec: in an answer, the one in use (its clock rate for jitter)."""
        return _first_speech(self.codecs)

    @property
    def on_hold(self) -> bool:
        """The writer does not want media (sendonly, inactive, or a 0.0.0.0 address)."""
        return self.active and not self.direction.receives


class SdpLeg:
    """The box's side of one call leg: its address and ports, its o= line and version count.

    ``ports[i]`` is the box's RTP port for m-line ``i``; a stream without a port (or with port
    0) is rejected with port 0, so the call layer can refuse extra streams by not allocating
    for them. Assign ``ports`` again when a re-INVITE adds streams.
    """

    def __init__(
        self,
        address: str,
        ports: Sequence[int],
        *,
        session_id: int | None = None,
        rng: random.Random | None = None,
        policy: SdpPolicy | None = None,
    ) -> None:
        ip = ipaddress.ip_address(address)  # ValueError: a local configuration mistake
        self.address = ip.compressed
        self.addrtype = "IP4" if ip.version == 4 else "IP6"
        self.ports = tuple(ports)
        self.policy = policy or SdpPolicy()
        if session_id is None:
            session_id = (rng or random.SystemRandom()).randrange(1, 2**31)
        self.session_id = session_id
        # RFC 8866 §5.2 suggests NTP time for both; the box has no clock here, and any start
        # works as long as it only grows. Small numbers suit phones that parse 32-bit ints.
        self.session_version = session_id
        self.last_sent: SessionDescription | None = None

    def offer_from(self, remote_offer: SessionDescription) -> SessionDescription:
        """The offer to send on this leg for ``remote_offer``, received on the other leg.

        Raises :class:`SdpNotAcceptable` (488) if no audio stream would remain, and
        :class:`SdpError` if ``remote_offer`` has no usable address for a stream it wants.
        """
        _check_addresses(remote_offer)  # before the other side rings
        out: list[MediaDescription] = []
        reasons: list[str] = []
        for i, m in enumerate(remote_offer.media):
            formats, reason = self._relayable(m, i)
            if reason is not None:
                reasons.append(f"media {i}: {reason}")
                out.append(_rejected(m))
                continue
            direction = _effective_direction(remote_offer, m)
            pt_map = {f: f for f in formats}
            out.append(
                _stream(m, m, self.ports[i], pt_map, direction=direction, rtcp_mux=m.rtcp_mux)
            )
        if not _has_audio(out):
            raise SdpNotAcceptable("no acceptable audio stream (" + "; ".join(reasons) + ")")
        return self._send(remote_offer.times, out)

    def answer_from(
        self, remote_answer: SessionDescription, offer: SessionDescription
    ) -> SessionDescription:
        """The answer to send on this leg to ``offer`` (received on this leg), made from
        ``remote_answer`` (received on the other leg to the box's offer made from ``offer``).

        The answer has the offer's m-lines in the offer's order, only codecs the offer had
        (with the offer's payload type numbers), and the remote answerer's directions limited
        to what the offer allows (RFC 3264 §6.1). Raises :class:`SdpNotAcceptable` (488) if
        ``remote_answer`` does not fit the offer or leaves no audio stream.
        """
        if len(remote_answer.media) != len(offer.media):
            raise SdpNotAcceptable(
                f"the answer has {len(remote_answer.media)} media sections, "
                f"the offer {len(offer.media)} (RFC 3264 §6)"
            )
        _check_addresses(remote_answer)
        out: list[MediaDescription] = []
        for i, (o, a) in enumerate(zip(offer.media, remote_answer.media, strict=True)):
            formats, reason = self._relayable(o, i)
            if reason is not None or a.port == 0:
                out.append(_rejected(o))
                continue
            if a.kind != o.kind:
                raise SdpNotAcceptable(
                    f"media {i}: the answer has {show(a.kind)} for offered {show(o.kind)}"
                )
            pt_map = _map_answer_formats(i, a, formats)
            allowed = _effective_direction(offer, o).reversed()
            direction = _effective_direction(remote_answer, a) & allowed
            out.append(
                _stream(a, o, self.ports[i], pt_map, direction=direction, rtcp_mux=o.rtcp_mux)
            )
        if not _has_audio(out):
            raise SdpNotAcceptable("the answer accepts no audio stream")
        return self._send(offer.times, out)

    def _relayable(
        self, media: MediaDescription, index: int
    ) -> tuple[dict[str, Codec | None], str | None]:
        """The formats (with their codecs) the box relays from an offered stream, in order, or
        why it rejects the stream."""
        if media.port == 0:
            return {}, "disabled by the offerer"
        if index >= len(self.ports) or self.ports[index] == 0:
            return {}, "no port allocated on the box"
        if media.is_rtp and media.proto not in RELAYED_PROTOS:
            # Its keys or DTLS setup are dropped with the peer's transport attributes.
            return {}, f"{show(media.kind)} over {show(media.proto)} is not relayed"
        codecs = media.format_codecs
        if media.kind in self.policy.passthrough_kinds:
            return dict(zip(media.formats, codecs, strict=True)), None
        if media.kind != "audio" or not media.is_rtp:
            return {}, f"{show(media.kind)} over {show(media.proto)} is not relayed"
        allowed = self.policy.codecs
        kept: dict[str, Codec | None] = {}
        speech = False
        for fmt, codec in zip(media.formats, codecs, strict=True):
            if codec is not None and (name := codec.name.lower()) in allowed:
                kept[fmt] = codec
                speech = speech or name not in NOT_SPEECH
        if not speech:
            offered = ", ".join(_describe(c, f) for f, c in zip(media.formats, codecs, strict=True))
            return {}, f"no codec in common (offered {show(offered, 80)})"
        return kept, None

    def _send(self, times: tuple[Timing, ...], media: list[MediaDescription]) -> SessionDescription:
        """The SDP with this leg's o= line; sess-version + 1 only when it changed (§8)."""
        sdp = SessionDescription(
            origin=Origin(
                "-", str(self.session_id), self.session_version, self.address, self.addrtype
            ),
            name=self.policy.session_name,
            connection=Connection(self.address, self.addrtype),
            times=times or (Timing(),),
            media=tuple(media),
        )
        if self.last_sent is not None:
            if sdp == self.last_sent:
                return self.last_sent
            self.session_version += 1
            sdp = replace(sdp, origin=replace(sdp.origin, session_version=self.session_version))
        self.last_sent = sdp
        return sdp


def media_targets(sdp: SessionDescription) -> list[MediaTarget]:
    """Where the writer of ``sdp`` wants each stream's RTP and RTCP, one entry per m-line.

    Raises :class:`SdpError` for a stream that is in use but has no usable IP address
    (a host name, or a network type other than IN IP4/IP6).
    """
    out = []
    for i, m in enumerate(sdp.media):
        if m.port == 0:
            codecs = _safe_codecs(m)
            out.append(
                MediaTarget(i, m.kind, "", 0, "", 0, False, codecs, Direction.INACTIVE, None)
            )
            continue
        address = _ip_address(_connection(sdp, m, i))
        mux = m.rtcp_mux
        rtcp = m.rtcp
        rtcp_address = address
        if mux:
            rtcp_port = m.port
        elif rtcp is not None:
            rtcp_port = rtcp.port
            if rtcp.connection is not None:
                rtcp_address = _ip_address(rtcp.connection)
        else:
            rtcp_port = m.port + 1
        codecs = m.codecs
        dtmf = next((c.payload_type for c in codecs if c.name.lower() == "telephone-event"), None)
        direction = _effective_direction(sdp, m)
        out.append(
            MediaTarget(
                i, m.kind, address, m.port, rtcp_address, rtcp_port, mux, codecs, direction, dtmf
            )
        )
    return out


def is_hold(sdp: SessionDescription) -> bool:
    """Whether ``sdp`` puts the other end on hold: it has streams in use and wants media on
    none of them (sendonly, inactive, or the RFC 2543 0.0.0.0 address; RFC 3264 §8.4)."""
    active = [m for m in sdp.media if m.port != 0]
    return bool(active) and not any(_effective_direction(sdp, m).receives for m in active)


def negotiated_codec(answer: SessionDescription) -> Codec | None:
    """The codec in use: the first speech codec of the first audio stream in use (for call
    records). ``None`` if the answer has no such stream."""
    for m in answer.media:
        if m.kind == "audio" and m.port != 0 and (codec := _first_speech(m.codecs)) is not None:
            return codec
    return None


def _first_speech(codecs: tuple[Codec, ...]) -> Codec | None:
    return next((c for c in codecs if c.name.lower() not in NOT_SPEECH), None)


def _effective_direction(sdp: SessionDescription, media: MediaDescription) -> Direction:
    direction = sdp.direction_of(media)
    conn = sdp.connection_of(media)
    if conn is not None and conn.host in UNSPECIFIED:
        # RFC 2543 hold: "do not send to me", whatever the attribute says.
        return Direction.of(sends=direction.sends, receives=False)
    return direction


def _check_addresses(sdp: SessionDescription) -> None:
    for i, m in enumerate(sdp.media):
        if m.port != 0:
            _ip_address(_connection(sdp, m, i))


def _connection(sdp: SessionDescription, media: MediaDescription, index: int) -> Connection:
    conn = media.connection or sdp.connection
    if conn is None:  # the parser checks this; a description built in code may still lack it
        raise SdpParseError(f"media {index} has no c= line and the session none either")
    return conn


@lru_cache(maxsize=1024)  # the same few peers' addresses, over and over
def _ip_address(conn: Connection) -> str:
    if conn.nettype != "IN" or conn.addrtype not in ("IP4", "IP6"):
        raise SdpNotAcceptable(f"unsupported address type {show(str(conn))}")
    try:
        ip = ipaddress.ip_address(conn.host)
    except ValueError:
        # A host name would need DNS, which a sans-IO layer cannot do; phones send addresses.
        raise SdpNotAcceptable(f"c= address {show(conn.host)} is not an IP address") from None
    if (ip.version == 4) != (conn.addrtype == "IP4"):
        raise SdpParseError(f"{show(str(conn))} mixes up IP4 and IP6")
    return ip.compressed


def _safe_codecs(media: MediaDescription) -> tuple[Codec, ...]:
    # A rejected stream's attributes are never used; do not fail the call over them.
    try:
        return media.codecs
    except SdpParseError:
        return ()


def _describe(codec: Codec | None, fmt: str) -> str:
    return fmt if codec is None else f"{codec.name}/{codec.clock_rate}"


def _map_answer_formats(
    index: int, answer: MediaDescription, offered: dict[str, Codec | None]
) -> dict[str, str]:
    """Answer format -> offered format, in the answer's order (RFC 3264 §6.1). The answerer
    should reuse the offer's numbers, but may not; a codec the offer lacked is an error."""
    by_key: dict[tuple[str, int, int], str] = {}
    for fmt, codec in offered.items():
        if codec is not None:
            by_key.setdefault(codec.key, fmt)
    out: dict[str, str] = {}
    for fmt, codec in zip(answer.formats, answer.format_codecs, strict=True):
        mine = offered.get(fmt)
        if fmt in offered and (codec is None or mine is None or codec.key == mine.key):
            out[fmt] = fmt
        elif codec is not None and codec.key in by_key:
            out[fmt] = by_key[codec.key]
        else:
            raise SdpNotAcceptable(
                f"media {index}: the answer has {show(_describe(codec, fmt))}, "
                "which the offer did not have"
            )
    if not out:
        raise SdpNotAcceptable(f"media {index}: the answer accepts the stream without a format")
    return out


def _stream(
    source: MediaDescription,
    offered: MediaDescription,
    port: int,
    pt_map: dict[str, str],
    *,
    direction: Direction,
    rtcp_mux: bool,
) -> MediaDescription:
    """``source`` as the box writes it: the offer's kind and proto, the box's port, formats
    renamed by ``pt_map`` (in its order), attributes of other formats and of the peer's own
    transport dropped, then the direction and rtcp-mux."""
    attrs: list[Attribute] = []
    for a in source.attributes:
        if a.name in PER_FORMAT:
            fmt, sep, rest = (a.value or "").partition(" ")
            if fmt == "*" and a.name == "rtcp-fb":
                attrs.append(a)
            elif fmt in pt_map:
                mine = pt_map[fmt]
                attrs.append(a if mine == fmt else Attribute(a.name, mine + sep + rest))
        elif a.name not in PEER_TRANSPORT:
            attrs.append(a)
    attrs.append(Attribute(direction.value))
    if rtcp_mux:
        attrs.append(Attribute("rtcp-mux"))
    return MediaDescription(
        kind=offered.kind,
        port=port,
        proto=offered.proto,
        formats=tuple(dict.fromkeys(pt_map.values())),
        title=source.title,
        bandwidths=source.bandwidths,
        attributes=tuple(attrs),
        # extra: lines of unknown type are left out; the box cannot vouch for them
    )


def _rejected(media: MediaDescription) -> MediaDescription:
    # RFC 3264 §6/§8.2: port 0, the m-line kept for alignment, at least one format.
    return MediaDescription(
        kind=media.kind, port=0, proto=media.proto, formats=media.formats[:1] or ("0",)
    )


def _has_audio(media: list[MediaDescription]) -> bool:
    return any(m.kind == "audio" and m.port != 0 for m in media)
