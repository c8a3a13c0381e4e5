"""SDP session descriptions as immutable values (RFC 8866, which obsoletes RFC 4566).

``parse_sdp(data)`` turns a body into a :class:`SessionDescription`; ``bytes(sdp)`` (or
``sdp.to_bytes()``) writes it back with CRLF line ends. LF-only input is accepted (§5).

Every line is kept. Typed lines (o=, c=, b=, t=, m=, a=, ...) become fields; lines of a type
this module does not know (``y=`` from GB28181 gear, say) are kept in ``extra`` and written at
the end of their section. Within a section, known lines may come in any order (some phones
misorder them); they are written back in the order of §5, so a well-ordered description
round-trips byte for byte.

Attributes stay an ordered list of :class:`Attribute` ``(name, value | None)``. The ones
offer/answer needs (rtpmap, fmtp, ptime, maxptime, the direction, rtcp, rtcp-mux) have typed
accessors that check their syntax when read, raising :class:`SdpParseError` like the parser.

Text is decoded as UTF-8 with ``surrogateescape``, so other bytes (a Latin-1 session name from
an old phone) survive a round trip unchanged. Changes make new values: use
:func:`dataclasses.replace` or the ``with_*`` helpers.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import lru_cache
from typing import Self

from pbx.sdp.errors import SdpNotAcceptable, SdpParseError, show

__all__ = [
    "STATIC_PAYLOAD_TYPES",
    "Attribute",
    "Bandwidth",
    "Codec",
    "Connection",
    "Direction",
    "MediaDescription",
    "Origin",
    "Rtcp",
    "SessionDescription",
    "Timing",
    "parse_sdp",
]


class Direction(StrEnum):
    """The media direction attribute (RFC 8866 §6.7), seen from the end that wrote it."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        return self is Direction.SENDRECV or self is Direction.SENDONLY

    @property
    def receives(self) -> bool:
        return self is Direction.SENDRECV or self is Direction.RECVONLY

    @classmethod
    def of(cls, *, sends: bool, receives: bool) -> Direction:
        return _BY_FLAGS[sends, receives]

    def reversed(self) -> Direction:
        """The same stream seen from the other end: sendonly <-> recvonly."""
        return _BY_FLAGS[self.receives, self.sends]

    def __and__(self, other: object) -> Direction:
        """What both allow (an answer limited by its offer, RFC 3264 §6.1)."""
        if not isinstance(other, Direction):
            return NotImplemented
        return _BY_FLAGS[self.sends and other.sends, self.receives and other.receives]


_BY_FLAGS = {
    (True, True): Direction.SENDRECV,
    (True, False): Direction.SENDONLY,
    (False, True): Direction.RECVONLY,
    (False, False): Direction.INACTIVE,
}
DIRECTIONS = frozenset(Direction)


@dataclass(frozen=True, slots=True)
class Codec:
    """An RTP payload format: an a=rtpmap line, or a static payload type of RFC 3551."""

    payload_type: int
    name: str  # the encoding name as written: "PCMU", "opus", "telephone-event"
    clock_rate: int
    channels: int | None = None  # the encoding parameters of audio (RFC 8866 §6.6)

    def __str__(self) -> str:
        """The rtpmap value: ``96 opus/48000/2``."""
        text = f"{self.payload_type} {self.name}/{self.clock_rate}"
        return text if self.channels is None else f"{text}/{self.channels}"

    @property
    def key(self) -> tuple[str, int, int]:
        """What makes two payload formats the same codec: name (any case), rate, channels."""
        return (self.name.lower(), self.clock_rate, self.channels or 1)


# RFC 3551 §6, the static payload types still met in practice (audio and video).
STATIC_PAYLOAD_TYPES: dict[int, Codec] = {
    pt: Codec(pt, name, rate, channels)
    for pt, name, rate, channels in [
        (0, "PCMU", 8000, None), (3, "GSM", 8000, None), (4, "G723", 8000, None),
        (5, "DVI4", 8000, None), (6, "DVI4", 16000, None), (7, "LPC", 8000, None),
        (8, "PCMA", 8000, None), (9, "G722", 8000, None), (10, "L16", 44100, 2),
        (11, "L16", 44100, None), (12, "QCELP", 8000, None), (13, "CN", 8000, None),
        (14, "MPA", 90000, None), (15, "G728", 8000, None), (16, "DVI4", 11025, None),
        (17, "DVI4", 22050, None), (18, "G729", 8000, None), (25, "CelB", 90000, None),
        (26, "JPEG", 90000, None), (28, "nv", 90000, None), (31, "H261", 90000, None),
        (32, "MPV", 90000, None), (33, "MP2T", 90000, None), (34, "H263", 90000, None),
    ]
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Origin:
    """The o= line (§5.2): who made the session and which version of it this is."""

    username: str
    session_id: str  # digits per §5.2, kept as text: only ever compared, never computed
    session_version: int
    address: str
    addrtype: str = "IP4"
    nettype: str = "IN"

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.session_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass(frozen=True, slots=True)
class Connection:
    """A c= line (§5.7). ``address`` is kept whole (a multicast one may carry ``/ttl``)."""

    address: str
    addrtype: str = "IP4"
    nettype: str = "IN"

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"

    @property
    def host(self) -> str:
        """The address without a multicast ``/ttl/count`` suffix."""
        return self.address.split("/", 1)[0]


@dataclass(frozen=True, slots=True)
class Bandwidth:
    """A b= line (§5.8): ``b=AS:64`` is ``Bandwidth("AS", 64)``."""

    bwtype: str
    bandwidth: int

    def __str__(self) -> str:
        return f"{self.bwtype}:{self.bandwidth}"


@dataclass(frozen=True, slots=True)
class Timing:
    """A time description (§5.9-§5.11): the t= line with its r= lines and z= line (as text)."""

    start: int = 0
    stop: int = 0
    repeats: tuple[str, ...] = ()
    zone: str | None = None


@dataclass(frozen=True, slots=True)
class Attribute:
    """An a= line: ``a=rtcp-mux`` is ``("rtcp-mux", None)``, ``a=ptime:20`` ``("ptime", "20")``."""

    name: str
    value: str | None = None

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


@dataclass(frozen=True, slots=True)
class Rtcp:
    """The a=rtcp attribute (RFC 3605): where the writer wants RTCP when not at RTP port + 1."""

    port: int
    connection: Connection | None = None

    def __str__(self) -> str:
        return str(self.port) if self.connection is None else f"{self.port} {self.connection}"


class _Attributes:
    """Attribute look-ups shared by the session level and media descriptions."""

    __slots__ = ()
    attributes: tuple[Attribute, ...]

    def has_attribute(self, name: str) -> bool:
        return any(a.name == name for a in self.attributes)

    def attribute(self, name: str) -> str | None:
        """The value of the first ``a=name`` line (``None`` if absent or a flag)."""
        for a in self.attributes:
            if a.name == name:
                return a.value
        return None

    def attribute_values(self, name: str) -> list[str | None]:
        return [a.value for a in self.attributes if a.name == name]

    @property
    def direction(self) -> Direction | None:
        """The direction attribute written at this level, if any (the first one wins)."""
        for a in self.attributes:
            if a.name in DIRECTIONS and a.value is None:
                return Direction(a.name)
        return None

    def with_attributes(self, attributes: Iterable[Attribute]) -> Self:
        return replace(self, attributes=tuple(attributes))  # type: ignore[type-var]

    def with_direction(self, direction: Direction) -> Self:
        """Put ``direction`` in place of the first direction line (or last), drop any others."""
        out: list[Attribute] = []
        placed = False
        for a in self.attributes:
            if a.name in DIRECTIONS:
                if not placed:
                    out.append(Attribute(direction.value))
                    placed = True
            else:
                out.append(a)
        if not placed:
            out.append(Attribute(direction.value))
        return self.with_attributes(out)


@dataclass(frozen=True, slots=True)
class MediaDescription(_Attributes):
    """One media description (§5.14): the m= line and the i=, c=, b=, k=, a= lines under it."""

    kind: str  # the media type: audio, video, image, application, ...
    port: int
    proto: str  # RTP/AVP, RTP/SAVP, UDP/TLS/RTP/SAVPF, udptl, ...
    formats: tuple[str, ...]  # payload type numbers for RTP, as written
    port_count: int = 1
    title: str | None = None
    connection: Connection | None = None
    bandwidths: tuple[Bandwidth, ...] = ()
    key: str | None = None
    attributes: tuple[Attribute, ...] = ()
    extra: tuple[tuple[str, str], ...] = ()  # lines of unknown type, in order

    @property
    def is_rtp(self) -> bool:
        return "RTP/" in self.proto.upper()

    @property
    def payload_types(self) -> tuple[int, ...]:
        """The formats as RTP payload types (the parser checked them for RTP protos)."""
        return tuple(int(f) for f in self.formats) if self.is_rtp else ()

    @property
    def rtpmaps(self) -> dict[int, Codec]:
        """The a=rtpmap lines by payload type."""
        out: dict[int, Codec] = {}
        for a in self.attributes:
            if a.name == "rtpmap":
                codec = _parse_rtpmap(a.value or "")
                out.setdefault(codec.payload_type, codec)
        return out

    def codec(self, fmt: str | int) -> Codec | None:
        """The codec of a format: its rtpmap, else its static payload type, else ``None``."""
        pt = _int(fmt, "payload type") if isinstance(fmt, str) else fmt
        return self.rtpmaps.get(pt) or STATIC_PAYLOAD_TYPES.get(pt)

    @property
    def format_codecs(self) -> tuple[Codec | None, ...]:
        """The codec of each format, in m= line order: ``None`` for a dynamic payload type
        without rtpmap, and for every format of a non-RTP stream."""
        if not self.is_rtp:
            return (None,) * len(self.formats)
        maps = self.rtpmaps
        return tuple(maps.get(pt) or STATIC_PAYLOAD_TYPES.get(pt) for pt in self.payload_types)

    @property
    def codecs(self) -> tuple[Codec, ...]:
        """The codecs of the formats in m= line order; dynamic types without rtpmap left out."""
        return tuple(c for c in self.format_codecs if c is not None)

    @property
    def fmtp(self) -> dict[str, str]:
        """The a=fmtp parameters by format."""
        out: dict[str, str] = {}
        for a in self.attributes:
            if a.name == "fmtp":
                fmt, _, params = (a.value or "").partition(" ")
                if not fmt or not params:
                    raise SdpParseError(f"bad a=fmtp value {show(a.value or '')}")
                out.setdefault(fmt, params)
        return out

    @property
    def ptime(self) -> int | None:
        return self._milliseconds("ptime")

    @property
    def maxptime(self) -> int | None:
        return self._milliseconds("maxptime")

    @property
    def rtcp(self) -> Rtcp | None:
        value = self.attribute("rtcp")
        return None if value is None else _parse_rtcp(value)

    @property
    def rtcp_mux(self) -> bool:
        return self.has_attribute("rtcp-mux")

    def with_port(self, port: int) -> MediaDescription:
        return replace(self, port=port)

    def _milliseconds(self, name: str) -> int | None:
        value = self.attribute(name)
        if value is None:
            return None
        try:
            ms = float(value)  # a few phones write "20.0"
        except ValueError:
            ms = -1.0
        if not 0 < ms <= 60_000:
            raise SdpParseError(f"bad a={name} value {show(value)}")
        return round(ms)

    def _lines(self, out: list[str]) -> None:
        port = str(self.port) if self.port_count == 1 else f"{self.port}/{self.port_count}"
        out.append(" ".join(("m=" + self.kind, port, self.proto, *self.formats)))
        if self.title is not None:
            out.append("i=" + self.title)
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out.extend(f"b={b}" for b in self.bandwidths)
        if self.key is not None:
            out.append("k=" + self.key)
        out.extend(f"a={a}" for a in self.attributes)
        out.extend(f"{t}={v}" for t, v in self.extra)


@dataclass(frozen=True, slots=True)
class SessionDescription(_Attributes):
    """A whole session description: the session-level lines and the media descriptions."""

    origin: Origin
    name: str = "-"
    version: int = 0
    info: str | None = None
    uri: str | None = None
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    connection: Connection | None = None
    bandwidths: tuple[Bandwidth, ...] = ()
    times: tuple[Timing, ...] = (Timing(),)
    key: str | None = None
    attributes: tuple[Attribute, ...] = ()
    media: tuple[MediaDescription, ...] = field(default=())
    extra: tuple[tuple[str, str], ...] = ()  # session-level lines of unknown type, in order

    def __bytes__(self) -> bytes:
        return self.to_bytes()

    def to_bytes(self) -> bytes:
        return self.to_text().encode("utf-8", "surrogateescape")

    def to_text(self) -> str:
        out = [f"v={self.version}", f"o={self.origin}", "s=" + self.name]
        if self.info is not None:
            out.append("i=" + self.info)
        if self.uri is not None:
            out.append("u=" + self.uri)
        out.extend("e=" + e for e in self.emails)
        out.extend("p=" + p for p in self.phones)
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out.extend(f"b={b}" for b in self.bandwidths)
        for t in self.times:
            out.append(f"t={t.start} {t.stop}")
            out.extend("r=" + r for r in t.repeats)
            if t.zone is not None:
                out.append("z=" + t.zone)
        if self.key is not None:
            out.append("k=" + self.key)
        out.extend(f"a={a}" for a in self.attributes)
        out.extend(f"{t}={v}" for t, v in self.extra)
        for m in self.media:
            m._lines(out)
        out.append("")
        return "\r\n".join(out)

    def connection_of(self, media: MediaDescription) -> Connection | None:
        """Where a stream's media goes: its own c= line, else the session's (§5.7)."""
        return media.connection or self.connection

    def direction_of(self, media: MediaDescription) -> Direction:
        """A stream's declared direction: its own, else the session's, else sendrecv (§6.7)."""
        return media.direction or self.direction or Direction.SENDRECV

    def with_media(self, index: int, media: MediaDescription) -> SessionDescription:
        items = list(self.media)
        items[index] = media
        return replace(self, media=tuple(items))


# --- parsing -------------------------------------------------------------------------------

# Line types that may appear once at the session level, and all types known there.
_SESSION_ONCE = frozenset("vosiuck")
_SESSION_KNOWN = frozenset("vosiuepcbtrzkam")
_TYPES = frozenset(string.ascii_letters)


def parse_sdp(data: bytes) -> SessionDescription:
    """Parse an SDP body. Raises :class:`SdpParseError` (400) or :class:`SdpNotAcceptable`
    (488, for a version or layout this box does not handle)."""
    if b"\0" in data:
        raise SdpParseError("SDP contains a NUL byte")
    text = data.decode("utf-8", "surrogateescape")
    if "\r" in text:
        text = text.replace("\r\n", "\n")
        if "\r" in text:
            raise SdpParseError("SDP contains a CR that does not end a line")
    lines = text.split("\n")
    start = 0
    while start < len(lines) and not lines[start]:
        start += 1
    if start == len(lines):
        raise SdpParseError("SDP body is empty")
    if not lines[start].startswith("v="):
        raise SdpParseError("SDP does not start with a v= line")
    if lines[start] != "v=0" and _int(lines[start][2:], "v= version") != 0:
        raise SdpNotAcceptable(f"unsupported SDP version {show(lines[start][2:])}")
    session = _SessionBuilder()
    media: list[MediaDescription] = []
    current: _MediaBuilder | None = None
    attrs = session.attrs  # a= lines are most lines: they skip the builders' dispatch
    for lineno in range(start + 2, len(lines) + 1):
        line = lines[lineno - 1]
        if not line:
            continue  # blank lines (a trailing one, mostly) carry nothing
        kind = line[0]
        if line[1:2] != "=" or kind not in _TYPES:
            raise SdpParseError(f"line {lineno} is not type=value: {show(line)}")
        value = line[2:]
        if kind == "a":
            attribute = _attribute(value)
            if attribute is None:
                raise SdpParseError(f"line {lineno}: bad a= line {show(value)}")
            attrs.append(attribute)
        elif kind == "m":
            if current is not None:
                media.append(current.build())
            current = _MediaBuilder(lineno, value)
            attrs = current.attrs
        elif current is not None:
            current.add(lineno, kind, value)
        else:
            session.add(lineno, kind, value)
    if current is not None:
        media.append(current.build())
    return session.build(tuple(media))


class _SessionBuilder:
    __slots__ = ("attrs", "bws", "conn", "emails", "extra", "info", "key", "name", "origin",
                 "phones", "seen", "times", "uri")  # fmt: skip

    def __init__(self) -> None:
        self.seen = {"v"}  # the parser has read it
        self.origin: Origin | None = None
        self.name: str | None = None
        self.info: str | None = None
        self.uri: str | None = None
        self.key: str | None = None
        self.conn: Connection | None = None
        self.emails: list[str] = []
        self.phones: list[str] = []
        self.bws: list[Bandwidth] = []
        self.times: list[Timing] = []
        self.attrs: list[Attribute] = []
        self.extra: list[tuple[str, str]] = []

    def add(self, lineno: int, kind: str, value: str) -> None:
        if kind in _SESSION_ONCE:
            if kind in self.seen:
                raise SdpParseError(f"line {lineno}: a second {kind}= line in the session")
            self.seen.add(kind)
        if kind == "o":
            self.origin = _parse_origin(lineno, value)
        elif kind == "s":
            self.name = value
        elif kind == "c":
            self.conn = _parse_connection(lineno, value)
        elif kind == "t":
            start, stop = _fields(lineno, "t", value, 2)
            self.times.append(Timing(_int(start, "t= start"), _int(stop, "t= stop")))
        elif kind == "b":
            self.bws.append(_parse_bandwidth(lineno, value))
        elif kind in "rz":
            if not self.times:
                raise SdpParseError(f"line {lineno}: {kind}= line before any t= line")
            last = self.times[-1]
            if kind == "r":
                self.times[-1] = replace(last, repeats=(*last.repeats, value))
            elif last.zone is not None:
                raise SdpParseError(f"line {lineno}: a second z= line")
            else:
                self.times[-1] = replace(last, zone=value)
        elif kind == "i":
            self.info = value
        elif kind == "u":
            self.uri = value
        elif kind == "e":
            self.emails.append(value)
        elif kind == "p":
            self.phones.append(value)
        elif kind == "k":
            self.key = value
        else:
            self.extra.append((kind, value))

    def build(self, media: tuple[MediaDescription, ...]) -> SessionDescription:
        if self.origin is None:
            raise SdpParseError("SDP has no o= line")
        if self.name is None:
            raise SdpParseError("SDP has no s= line")
        if self.conn is None:
            for i, m in enumerate(media):
                if m.connection is None and m.port != 0:
                    raise SdpParseError(f"media {i} has no c= line and the session none either")
        return SessionDescription(
            origin=self.origin,
            name=self.name,
            info=self.info,
            uri=self.uri,
            emails=tuple(self.emails),
            phones=tuple(self.phones),
            connection=self.conn,
            bandwidths=tuple(self.bws),
            times=tuple(self.times),
            key=self.key,
            attributes=tuple(self.attrs),
            media=media,
            extra=tuple(self.extra),
        )


class _MediaBuilder:
    __slots__ = ("attrs", "bws", "conn", "extra", "head", "key", "title")

    def __init__(self, lineno: int, value: str) -> None:
        self.head = _parse_media_line(lineno, value)
        self.title: str | None = None
        self.conn: Connection | None = None
        self.key: str | None = None
        self.bws: list[Bandwidth] = []
        self.attrs: list[Attribute] = []
        self.extra: list[tuple[str, str]] = []

    def add(self, lineno: int, kind: str, value: str) -> None:
        if kind == "c":
            if self.conn is not None:
                # Legal for layered multicast (§5.7), which an office PBX never relays.
                raise SdpNotAcceptable(f"line {lineno}: several c= lines in one media section")
            self.conn = _parse_connection(lineno, value)
        elif kind == "b":
            self.bws.append(_parse_bandwidth(lineno, value))
        elif kind == "i":
            if self.title is not None:
                raise SdpParseError(f"line {lineno}: a second i= line in a media section")
            self.title = value
        elif kind == "k":
            if self.key is not None:
                raise SdpParseError(f"line {lineno}: a second k= line in a media section")
            self.key = value
        elif kind in _SESSION_KNOWN:
            raise SdpParseError(f"line {lineno}: a {kind}= line inside a media section")
        else:
            self.extra.append((kind, value))

    def build(self) -> MediaDescription:
        kind, port, count, proto, formats = self.head
        return MediaDescription(
            kind=kind,
            port=port,
            port_count=count,
            proto=proto,
            formats=formats,
            title=self.title,
            connection=self.conn,
            bandwidths=tuple(self.bws),
            key=self.key,
            attributes=tuple(self.attrs),
            extra=tuple(self.extra),
        )


def _int(text: str, what: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 30:
        raise SdpParseError(f"bad {what} {show(text)}")
    return int(text)


def _fields(lineno: int, kind: str, value: str, count: int) -> list[str]:
    parts = value.split()
    if len(parts) != count:
        raise SdpParseError(f"line {lineno}: bad {kind}= line {show(value)}")
    return parts


def _parse_origin(lineno: int, value: str) -> Origin:
    user, sess_id, version, nettype, addrtype, address = _fields(lineno, "o", value, 6)
    return Origin(user, sess_id, _int(version, "o= session version"), address, addrtype, nettype)


def _parse_connection(lineno: int, value: str) -> Connection:
    nettype, addrtype, address = _fields(lineno, "c", value, 3)
    return Connection(address, addrtype, nettype)


def _parse_bandwidth(lineno: int, value: str) -> Bandwidth:
    bwtype, sep, amount = value.partition(":")
    if not sep or not bwtype or " " in bwtype:
        raise SdpParseError(f"line {lineno}: bad b= line {show(value)}")
    return Bandwidth(bwtype, _int(amount, "bandwidth"))


@lru_cache(maxsize=2048)  # values are immutable: one object per common line ("a=sendrecv")
def _attribute(value: str) -> Attribute | None:
    name, sep, rest = value.partition(":")
    if not name or " " in name:
        return None
    return Attribute(name, rest if sep else None)


def _parse_media_line(lineno: int, value: str) -> tuple[str, int, int, str, tuple[str, ...]]:
    parts = value.split()
    if len(parts) < 3:
        raise SdpParseError(f"line {lineno}: bad m= line {show(value)}")
    kind, port_text, proto, *formats = parts
    port_text, slash, count_text = port_text.partition("/")
    port = _int(port_text, "m= port")
    count = _int(count_text, "m= port count") if slash else 1
    if port > 65535 or count < 1:
        raise SdpParseError(f"line {lineno}: bad port in m= line {show(value)}")
    if "RTP/" in proto.upper():
        for fmt in formats:
            if _int(fmt, "RTP payload type") > 127:
                raise SdpParseError(f"line {lineno}: payload type {show(fmt)} is over 127")
    return kind, port, count, proto, tuple(formats)


@lru_cache(maxsize=512)  # the same few rtpmap lines come in every call
def _parse_rtpmap(value: str) -> Codec:
    # a=rtpmap:<payload type> <encoding name>/<clock rate>[/<encoding parameters>]
    pt_text, _, encoding = value.partition(" ")
    parts = encoding.strip().split("/")
    if not 2 <= len(parts) <= 3 or not parts[0]:
        raise SdpParseError(f"bad a=rtpmap value {show(value)}")
    pt = _int(pt_text, "rtpmap payload type")
    if pt > 127:
        raise SdpParseError(f"bad a=rtpmap value {show(value)}")
    channels = _int(parts[2], "rtpmap channels") if len(parts) == 3 else None
    return Codec(pt, parts[0], _int(parts[1], "rtpmap clock rate"), channels)


def _parse_rtcp(value: str) -> Rtcp:
    # RFC 3605: a=rtcp:<port> [<nettype> <addrtype> <connection-address>]
    parts = value.split()
    if len(parts) not in (1, 4):
        raise SdpParseError(f"bad a=rtcp value {show(value)}")
    port = _int(parts[0], "a=rtcp port")
    if not 0 < port <= 65535:
        raise SdpParseError(f"bad a=rtcp port {show(parts[0])}")
    conn = Connection(parts[3], parts[2], parts[1]) if len(parts) == 4 else None
    return Rtcp(port, conn)
