"""Bytes to messages (RFC 3261 §7, §18.3, §25).

``parse(data)`` reads one message from a datagram; :class:`StreamFramer` cuts a byte stream
(TCP, TLS) into messages by Content-Length. Bad input raises a :class:`ParseError` that says
how to react: a status to answer a request with, or ``status is None`` (drop) for responses
and for requests too broken to answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pbx.sip import abnf
from pbx.sip import headers as h
from pbx.sip.errors import MessageTooLarge, ParseError, RemoteProtocolError
from pbx.sip.message import SIP_VERSION, Headers, Request, Response
from pbx.sip.uri import SipUri, parse_uri

_FOLD = re.compile(r"\r?\n[ \t]+")
_LINE_END = re.compile(r"\r?\n")
# Octets that may not appear in a header line (§25.1: TEXT-UTF8 and LWS only; HTAB allowed).
# A quoted-pair may escape them inside a quoted string (RFC 4475 §3.1.1.2), hence the lookbehind.
_CONTROL = re.compile(r"(?<!\\)[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# The same octets as bytes: bytes.translate finds whether any is present far faster than the
# regex (whose lookbehind is tried at every position); the regex runs only when one is.
_CONTROL_OCTETS = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
_VERSION = re.compile(r"[Ss][Ii][Pp]/\d+\.\d+")
_CANONICAL = h.CANONICAL_NAMES
_EXACT = {name: name for name in h.CANONICAL_SET}  # spelled canonically: no lower() needed


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what a peer may make us parse."""

    max_message: int = 65_535
    max_headers: int = 256
    max_body: int = 65_535


DEFAULT_LIMITS = Limits()


def parse(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Request | Response:
    """Parse one message from a datagram.

    Bytes past Content-Length are ignored (§18.3); with no Content-Length the rest of the
    datagram is the body. A Content-Length larger than what arrived is an error.
    """
    if len(data) > limits.max_message:
        raise MessageTooLarge(f"message of {len(data)} bytes exceeds {limits.max_message}")
    head_end, body_start = _find_head_end(data)
    if head_end < 0:
        # A datagram without the empty line: tolerate a message of headers only.
        head_end = body_start = len(data)
    message, length_lines = _parse_head(data[:head_end], limits)
    declared = _content_length(message, length_lines)
    available = len(data) - body_start
    if declared is None:
        body = data[body_start:]
    elif declared > available:
        raise _reaction(message, f"Content-Length {declared} exceeds the {available} body bytes")
    else:
        body = data[body_start : body_start + declared]
    return _finish(message, body)


def _finish(message: Request | Response, body: bytes) -> Request | Response:
    if body:
        object.__setattr__(message, "body", body)
    _validate(message)
    return message


def _find_head_end(data: bytes) -> tuple[int, int]:
    """Index where the header block ends and where the body starts; (-1, -1) if not found."""
    i = data.find(b"\r\n\r\n")
    j = data.find(b"\n\n")
    if i >= 0 and (j < 0 or i <= j):
        return i, i + 4
    if j >= 0:
        return j, j + 2
    return -1, -1


def _parse_head(head: bytes, limits: Limits) -> tuple[Request | Response, list[str]]:
    """Parse the start line and header lines. Content-Length lines are returned apart: they
    frame the message and are not kept among its headers (serializing derives them)."""
    # Leading CRLFs before a message are allowed and ignored (§7.5).
    text = head.decode("utf-8", "surrogateescape").lstrip("\r\n")
    if text.endswith("\n"):
        text = text.rstrip("\r\n")  # a datagram whose header block lacks the empty line
    if "\n " in text or "\n\t" in text:
        text = _FOLD.sub(" ", text)
    crlfs = text.count("\r\n")
    if text.count("\n") == crlfs:
        lines = text.split("\r\n")
    else:
        lines = _LINE_END.split(text)  # bare LF line ends (tolerated, §7 says CRLF)
    # A CR that does not end a line is as bad as any other control octet.
    controls = text.count("\r") != crlfs or (
        len(head.translate(None, _CONTROL_OCTETS)) != len(head)
        and _CONTROL.search(text) is not None
    )
    if len(lines) - 1 > limits.max_headers:
        raise MessageTooLarge(f"more than {limits.max_headers} header lines", 400)
    start = lines[0]
    items: list[tuple[str, str]] = []
    index: dict[str, list[str]] = {}
    length_lines: list[str] = []
    bad_header: str | None = None
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if controls and (_CONTROL.search(line) or "\r" in line):
            bad_header = bad_header or f"control character in header line {line[:40]!r}"
            continue
        canonical = _EXACT.get(name) or _CANONICAL.get(name.lower())
        if canonical is None:
            if not colon or not abnf.is_token(name):
                bad_header = bad_header or f"malformed header line {line[:40]!r}"
                continue
            canonical = h.canonical_name(name)
        elif not colon:
            bad_header = bad_header or f"malformed header line {line[:40]!r}"
            continue
        value = value.strip(" \t")
        if canonical == "Content-Length":
            length_lines.append(value)
        else:
            items.append((canonical, value))
            # The lookup index, built here rather than by a second pass over the lines.
            same = index.get(canonical)
            if same is None:
                index[canonical] = [value]
            else:
                same.append(value)
    headers = Headers._trusted(tuple(items), index)
    message = _parse_start_line(start, headers)
    if bad_header is not None:
        raise _reaction(message, bad_header)
    return message, length_lines


def _parse_start_line(line: str, headers: Headers) -> Request | Response:
    if line[:4].upper() == "SIP/":
        return _parse_status_line(line, headers)
    parts = line.split(" ")
    if len(parts) != 3:
        raise _request_error(f"malformed request line {line[:60]!r}", headers)
    method, uri_text, version = parts
    if not abnf.is_token(method):
        raise ParseError(f"invalid method {method[:20]!r}", None)
    if not _VERSION.fullmatch(version):
        raise _request_error(f"malformed SIP version {version[:20]!r}", headers)
    try:
        uri = parse_uri(uri_text)
    except ParseError as exc:
        raise _request_error(f"invalid Request-URI: {exc.reason}", headers) from None
    if isinstance(uri, SipUri) and uri.headers:
        # §19.1.1 (table): URI headers are not allowed in a Request-URI (RFC 4475 §3.1.2.11).
        raise _request_error("headers are not allowed in the Request-URI", headers)
    return Request(headers, method=method, uri=uri, version=version.upper())


def _parse_status_line(line: str, headers: Headers) -> Response:
    version, _, rest = line.partition(" ")
    code, _, reason = rest.partition(" ")
    if not _VERSION.fullmatch(version):
        raise ParseError(f"malformed SIP version {version[:20]!r}", None)
    if len(code) != 3 or not code.isdigit() or not 100 <= int(code) <= 699:
        raise ParseError(f"invalid status code {code[:20]!r}", None)
    return Response(headers, status=int(code), reason=reason, version=version.upper())


def _request_error(reason: str, headers: Headers) -> ParseError:
    """A broken request is answered with 400 when the sender can match the answer to its
    request: it needs a Via (its branch) and a CSeq (its method) to copy; the answer goes back
    to the source address. Without them it is dropped."""
    if "Via" in headers and "CSeq" in headers:
        return ParseError(reason, 400, headers)
    return ParseError(reason, None)


def _reaction(message: Request | Response, reason: str) -> ParseError:
    if isinstance(message, Response):
        return ParseError(reason, None)
    return _request_error(reason, message.headers)


def _content_length(message: Request | Response, lines: list[str]) -> int | None:
    if not lines:
        return None
    if len(lines) > 1:
        raise _reaction(message, "more than one Content-Length header")
    try:
        return h.parse_uint(lines[0], "Content-Length", DEFAULT_LIMITS.max_body)
    except ParseError as exc:
        raise _reaction(message, exc.reason) from None


def _validate(message: Request | Response) -> None:
    """Check what every element relies on (§8.1.1): the mandatory headers and their syntax.

    Responses that fail are dropped; requests get 400 when there is a usable Via.
    """
    try:
        for name in message.headers.repeated():
            if name in h.SINGLE_HEADERS:
                raise ParseError(f"more than one {name} header")
        if not message.via:
            raise ParseError("missing Via header")
        message.from_  # noqa: B018 - parse now: a broken From must fail here, not later
        message.to  # noqa: B018
        message.call_id  # noqa: B018
        cseq = message.cseq
        if isinstance(message, Request):
            if cseq.method != message.method:
                raise ParseError("CSeq method does not match the request method")
            message.max_forwards  # noqa: B018
            if message.method in ("REGISTER", "INVITE", "SUBSCRIBE", "REFER", "NOTIFY"):
                message.contacts  # noqa: B018
    except ParseError as exc:
        raise _reaction(message, exc.reason) from None
    if message.version != SIP_VERSION:
        # Syntactically fine but not our version: requests get 505 (§8.2.3? §21.5.6).
        if isinstance(message, Request):
            reason = f"SIP version {message.version} not supported"
            raise RemoteProtocolError(reason, 505, message.headers)
        raise ParseError(f"SIP version {message.version} not supported", None)


class StreamFramer:
    """Cuts a byte stream into SIP messages by Content-Length (§18.3).

    Feed bytes with :meth:`feed`; :meth:`next_message` returns parsed messages one at a time,
    or ``None`` when more bytes are needed. CRLF keep-alives between messages (RFC 5626 §4.4.1)
    are consumed and counted in :attr:`keepalives` so the transport can answer pings with pongs.
    A framing error leaves the stream unusable: the transport must close it.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._buffer = bytearray()
        self._limits = limits
        self.keepalives = 0
        self.broken = False

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_message(self) -> Request | Response | None:
        if self.broken:
            raise ParseError("stream already failed", None)
        buf = self._buffer
        while buf[:2] == b"\r\n":
            if buf[:4] == b"\r\n\r\n":
                self.keepalives += 1  # a "ping": the transport answers with CRLF
                del buf[:4]
            elif len(buf) >= 4 or bytes(buf[2:3]) not in (b"", b"\r"):
                del buf[:2]  # a lone CRLF ("pong", or padding before a message)
            else:
                return None
        head_end, body_start = _find_head_end(bytes(buf[: self._limits.max_message]))
        if head_end < 0:
            if len(buf) > self._limits.max_message:
                self.broken = True
                raise MessageTooLarge("header block exceeds the message limit", None)
            return None
        try:
            message, length_lines = _parse_head(bytes(buf[:head_end]), self._limits)
            declared = _content_length(message, length_lines)
        except ParseError as exc:
            self.broken = True
            raise exc from None
        if declared is None:
            # Content-Length is mandatory on streams (§20.14); without it we cannot find the
            # next message, so answer (if possible) and close.
            self.broken = True
            raise _reaction(message, "missing Content-Length on a stream transport")
        end = body_start + declared
        if len(buf) < end:
            return None
        body = bytes(buf[body_start:end])
        del buf[:end]
        return _finish(message, body)

    @property
    def buffered(self) -> int:
        return len(self._buffer)
