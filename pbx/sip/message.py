"""SIP requests and responses as immutable values (RFC 3261 §7).

A message keeps its header lines in order, with canonical names and values as received; the
typed views the stack needs (Via, From, To, CSeq, ...) are parsed on first use and cached.
Changes make new messages (``with_header``, ``with_body``, ...), so a message that was handed
to a transaction can never change under it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Self, TypeVar, overload

from pbx.sip import headers as h
from pbx.sip.errors import LocalProtocolError, ParseError
from pbx.sip.uri import SipUri, Uri

SIP_VERSION = "SIP/2.0"
_HAS_TAG = re.compile(r";\s*tag\s*=", re.IGNORECASE)
MAX_FORWARDS_LIMIT = 255
MAX_EXPIRES = 2**32 - 1

REASONS: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 300: "Multiple Choices",
    301: "Moved Permanently", 302: "Moved Temporarily", 305: "Use Proxy",
    380: "Alternative Service", 400: "Bad Request", 401: "Unauthorized",
    402: "Payment Required", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    406: "Not Acceptable", 407: "Proxy Authentication Required", 408: "Request Timeout",
    410: "Gone", 413: "Request Entity Too Large", 414: "Request-URI Too Long",
    415: "Unsupported Media Type", 416: "Unsupported URI Scheme", 420: "Bad Extension",
    421: "Extension Required", 423: "Interval Too Brief", 429: "Too Many Requests",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete", 485: "Ambiguous",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
    489: "Bad Event", 491: "Request Pending", 493: "Undecipherable",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 600: "Busy Everywhere", 603: "Decline",
    604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}  # fmt: skip


T = TypeVar("T")


class cached_property(Generic[T]):  # noqa: N801 - reads like the functools decorator it replaces
    """``functools.cached_property`` without its per-instance lock (Python 3.11 takes an RLock
    on every first access, a third of parse time). Messages are never shared mid-parse."""

    def __init__(self, func: Callable[[Any], T]) -> None:
        self.func = func
        self.name = func.__name__
        self.__doc__ = func.__doc__

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> cached_property[T]: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> T: ...
    def __get__(self, obj: object | None, owner: type | None = None) -> Any:
        if obj is None:
            return self
        value = self.func(obj)
        obj.__dict__[self.name] = value
        return value


class Headers:
    """An immutable, ordered list of ``(canonical name, value)`` header lines."""

    __slots__ = ("_index", "_items")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: tuple[tuple[str, str], ...] = tuple(
            (h.canonical_name(name), value) for name, value in items
        )
        self._index: dict[str, list[str]] | None = None

    @classmethod
    def _trusted(
        cls, items: tuple[tuple[str, str], ...], index: dict[str, list[str]] | None = None
    ) -> Headers:
        """Build from items whose names are already canonical (the parser's fast path), and
        their index by name when the caller built it on the way (it must match ``items``)."""
        obj = cls.__new__(cls)
        obj._items = items
        obj._index = index
        return obj

    def _indexed(self) -> dict[str, list[str]]:
        index = self._index
        if index is None:
            index = {}
            for n, v in self._items:
                if n in index:
                    index[n].append(v)
                else:
                    index[n] = [v]
            self._index = index
        return index

    def _lookup(self, name: str) -> list[str]:
        index = self._index
        if index is None:
            index = self._indexed()
        found = index.get(name)
        if found is None and name not in h.CANONICAL_SET:
            found = index.get(h.canonical_name(name))
        return found or []

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    def __hash__(self) -> int:
        return hash(self._items)

    def __repr__(self) -> str:
        return f"Headers({list(self._items)!r})"

    def get(self, name: str) -> str | None:
        """The first line's value for ``name`` (any spelling), or ``None``."""
        found = self._lookup(name)
        return found[0] if found else None

    def lines(self, name: str) -> list[str]:
        """Every line's value for ``name``, as received (not split on commas)."""
        return list(self._lookup(name))

    def values(self, name: str) -> list[str]:
        """Every value of ``name``: list headers (§7.3.1) split on commas, across lines."""
        lines = self._lookup(name)
        if h.canonical_name(name) not in h.LIST_HEADERS:
            return list(lines)
        out: list[str] = []
        for line in lines:
            out.extend(h.split_list(line))
        return out

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def repeated(self) -> list[str]:
        """Names that appear on more than one line."""
        return [name for name, lines in self._indexed().items() if len(lines) > 1]

    def add(self, name: str, value: str, *, first: bool = False) -> Headers:
        item = (h.canonical_name(name), value)
        return Headers._trusted((item, *self._items) if first else (*self._items, item))

    def set(self, name: str, *values: str) -> Headers:
        """Replace every line of ``name`` with ``values`` (at the first line's position)."""
        name = h.canonical_name(name)
        out: list[tuple[str, str]] = []
        placed = False
        for item in self._items:
            if item[0] == name:
                if not placed:
                    out.extend((name, v) for v in values)
                    placed = True
            else:
                out.append(item)
        if not placed:
            out.extend((name, v) for v in values)
        return Headers._trusted(tuple(out))

    def remove(self, *names: str) -> Headers:
        drop = {h.canonical_name(n) for n in names}
        return Headers._trusted(tuple(item for item in self._items if item[0] not in drop))

    def remove_first(self, name: str) -> Headers:
        """Remove the first value of a list header such as Via or Route."""
        name = h.canonical_name(name)
        out: list[tuple[str, str]] = []
        done = False
        for n, v in self._items:
            if n == name and not done:
                done = True
                rest = h.split_list(v)[1:]
                if rest:
                    out.append((n, ", ".join(rest)))
                continue
            out.append((n, v))
        return Headers._trusted(tuple(out))

    def encode_into(self, out: list[str]) -> None:
        for n, v in self._items:
            out.append(f"{n}: {v}\r\n")


@dataclass(frozen=True, eq=True)
class Message:
    headers: Headers
    body: bytes = field(default=b"", kw_only=True)

    # ------------------------------------------------------------------ typed views (cached)

    @cached_property
    def via(self) -> tuple[h.Via, ...]:
        values = self.headers.values("Via")
        if len(values) == 1:
            return (h.parse_via(values[0]),)  # the usual request: no generator needed
        return tuple(h.parse_via(v) for v in values)

    @property
    def top_via(self) -> h.Via:
        vias = self.via
        if not vias:
            raise ParseError("missing Via")
        return vias[0]

    @cached_property
    def from_(self) -> h.Address:
        return h.parse_address(self._single("From"), what="From")

    @cached_property
    def to(self) -> h.Address:
        return h.parse_address(self._single("To"), what="To")

    @cached_property
    def call_id(self) -> str:
        return h.parse_call_id(self._single("Call-ID"))

    @cached_property
    def cseq(self) -> h.CSeq:
        return h.parse_cseq(self._single("CSeq"))

    @cached_property
    def max_forwards(self) -> int | None:
        value = self._optional_single("Max-Forwards")
        return None if value is None else h.parse_uint(value, "Max-Forwards", MAX_FORWARDS_LIMIT)

    @cached_property
    def expires(self) -> int | None:
        value = self._optional_single("Expires")
        return None if value is None else h.parse_uint(value, "Expires", MAX_EXPIRES)

    @cached_property
    def contacts(self) -> tuple[h.Address, ...]:
        """Contact values; a wildcard ``*`` is reported by :attr:`contact_star` instead."""
        values = self.headers.values("Contact")
        if values == ["*"]:
            return ()
        return tuple(h.parse_address(v, what="Contact") for v in values)

    @property
    def contact_star(self) -> bool:
        return self.headers.values("Contact") == ["*"]

    @cached_property
    def routes(self) -> tuple[h.Address, ...]:
        return tuple(h.parse_address(v, what="Route") for v in self.headers.values("Route"))

    @cached_property
    def record_routes(self) -> tuple[h.Address, ...]:
        values = self.headers.values("Record-Route")
        return tuple(h.parse_address(v, what="Record-Route") for v in values)

    @property
    def content_type(self) -> str | None:
        value = self.headers.get("Content-Type")
        return None if value is None else value.split(";", 1)[0].strip().lower()

    def tokens(self, name: str) -> list[str]:
        """A token-list header (Require, Supported, Allow, Proxy-Require, ...)."""
        return [t for line in self.headers.lines(name) for t in h.parse_tokens(line)]

    def _single(self, name: str) -> str:
        value = self._optional_single(name)
        if value is None:
            raise ParseError(f"missing {name} header")
        return value

    def _optional_single(self, name: str) -> str | None:
        lines = self.headers._lookup(name)  # not lines(): no copy needed to read one
        if not lines:
            return None
        if len(lines) > 1:
            raise ParseError(f"more than one {name} header")
        return lines[0]

    # ------------------------------------------------------------------------------ changes

    def with_header(self, name: str, *values: str) -> Self:
        """A copy whose ``name`` lines are replaced by ``values``."""
        return replace(self, headers=self.headers.set(name, *values))

    def with_added_header(self, name: str, value: str, *, first: bool = False) -> Self:
        return replace(self, headers=self.headers.add(name, value, first=first))

    def without_header(self, *names: str) -> Self:
        return replace(self, headers=self.headers.remove(*names))

    def with_body(self, body: bytes, content_type: str | None = None) -> Self:
        headers = self.headers
        if content_type is not None:
            headers = headers.set("Content-Type", content_type)
        elif not body:
            headers = headers.remove("Content-Type")
        return replace(self, headers=headers, body=body)

    # ----------------------------------------------------------------------------- encoding

    def _start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """Serialize. Content-Length is framing, derived from the body: any stored line is
        ignored and the right one is written last."""
        out = [self._start_line(), "\r\n"]
        out += [f"{n}: {v}\r\n" for n, v in self.headers if n != "Content-Length"]
        out.append(f"Content-Length: {len(self.body)}\r\n\r\n")
        return "".join(out).encode("utf-8", "surrogateescape") + self.body

    def __bytes__(self) -> bytes:
        return self.to_bytes()


@dataclass(frozen=True, eq=True)
class Request(Message):
    method: str = field(kw_only=True)
    uri: Uri = field(kw_only=True)
    version: str = field(default=SIP_VERSION, kw_only=True)

    def _start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"

    @property
    def sip_uri(self) -> SipUri:
        if not isinstance(self.uri, SipUri):
            raise ParseError(f"unsupported URI scheme in {self.uri}", 416)
        return self.uri

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"


@dataclass(frozen=True, eq=True)
class Response(Message):
    status: int = field(kw_only=True)
    reason: str = field(default="", kw_only=True)
    version: str = field(default=SIP_VERSION, kw_only=True)

    def _start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    @property
    def provisional(self) -> bool:
        return self.status < 200

    @property
    def success(self) -> bool:
        return 200 <= self.status < 300

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    extra: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Response:
    """Build a response to ``request`` per RFC 3261 §8.2.6: Via, From, To, Call-ID and CSeq are
    copied, a To tag is added when given and absent. ``extra`` headers are appended."""
    if request.method == "ACK":
        raise LocalProtocolError("ACK is never answered")
    return response_from_headers(
        request.headers, status, reason, to_tag=to_tag, extra=extra, body=body
    )


# Every header response_from_headers may copy from the request.
_COPIED = frozenset({"Via", "From", "To", "Call-ID", "CSeq", "Record-Route", "Timestamp"})


def response_from_headers(
    headers: Headers,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    extra: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Response:
    """:func:`make_response` from a request's raw header lines: also answers requests too broken
    to parse fully (a 400 copies the lines as they came)."""
    copied: list[tuple[str, str]] = []
    for name, value in headers:
        if name not in _COPIED:
            continue  # most lines: one set lookup instead of the chain below
        if name in ("Via", "From", "Call-ID", "CSeq"):
            copied.append((name, value))
        elif name == "To":
            if to_tag is not None and status != 100 and not _HAS_TAG.search(value):
                value = f"{value};tag={to_tag}"
            copied.append((name, value))
        elif name == "Record-Route" and 100 < status < 300:
            copied.append((name, value))  # §12.1.1: a UAS copies Record-Route into 1xx/2xx
        elif name == "Timestamp" and status == 100:
            copied.append((name, value))  # §8.2.6.1
    canonical = h.CANONICAL_SET
    copied.extend((n if n in canonical else h.canonical_name(n), v) for n, v in extra)
    return Response(
        Headers._trusted(tuple(copied)),
        body=body,
        status=status,
        reason=REASONS.get(status, "Unknown") if reason is None else reason,
    )


def build_request(
    method: str,
    uri: Uri,
    headers: Iterable[tuple[str, str]],
    body: bytes = b"",
) -> Request:
    return Request(Headers(headers), body=body, method=method, uri=uri)
