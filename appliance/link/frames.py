"""The cloud link's frames and their JSON codec (sans-IO: no asyncio, no sockets, no clock).

Every WebSocket text message on the link is one JSON object with a ``type``:

==========  =========  ==============================================================
type        sender     fields
==========  =========  ==============================================================
pair        box        ``code`` (the installer's pairing code), ``box_name``
paired      cabinet    ``box_id``, ``credential`` (the box keeps it in local.db)
hello       box        ``box_id``, ``credential``
welcome     cabinet    ``box_id``
refused     cabinet    ``reason`` (a word: ``bad_code``, ``unauthorized``...), ``message``
request     cabinet    ``id``, ``method``, ``path`` (with query), ``headers``, ``body``, ``more``
response    box        ``id``, ``status``, ``headers``, ``body``, ``more``
body        either     ``id``, ``data``, ``more``: the next chunk of a request or response
cancel      either     ``id``, ``reason``: the stream is abandoned (no more frames for it)
ping, pong  either     ``seq``: heartbeat
==========  =========  ==============================================================

``headers`` is a list of ``[name, value]`` string pairs (order and repeats kept); ``body`` and
``data`` are base64 (standard alphabet, padded) of at most :data:`MAX_CHUNK` bytes; ``more``
says whether body frames follow. A malformed frame raises :class:`FrameError` naming the field.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, fields
from typing import Any

__all__ = [
    "MAX_CHUNK",
    "MAX_ID",
    "Body",
    "Cancel",
    "Frame",
    "FrameError",
    "Headers",
    "Hello",
    "Pair",
    "Paired",
    "Ping",
    "Pong",
    "Refused",
    "Request",
    "Response",
    "Welcome",
    "decode",
    "encode",
]

MAX_CHUNK = 64 * 1024  # bytes of body per frame (about 87 KiB of base64)
MAX_ID = 2**53 - 1  # ids stay exact in every JSON implementation
MAX_TEXT = 64  # pairing codes, box ids, reasons
MAX_HEADERS = 100
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token (methods, header names)

Headers = tuple[tuple[str, str], ...]


class FrameError(ValueError):
    """The peer sent a frame that is not valid JSON or breaks the link protocol."""


@dataclass(frozen=True, slots=True)
class Pair:
    code: str
    box_name: str


@dataclass(frozen=True, slots=True)
class Paired:
    box_id: str
    credential: str


@dataclass(frozen=True, slots=True)
class Hello:
    box_id: str
    credential: str


@dataclass(frozen=True, slots=True)
class Welcome:
    box_id: str


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Request:
    id: int
    method: str
    path: str
    headers: Headers = ()
    body: bytes = b""
    more: bool = False


@dataclass(frozen=True, slots=True)
class Response:
    id: int
    status: int
    headers: Headers = ()
    body: bytes = b""
    more: bool = False


@dataclass(frozen=True, slots=True)
class Body:
    id: int
    data: bytes
    more: bool


@dataclass(frozen=True, slots=True)
class Cancel:
    id: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Ping:
    seq: int


@dataclass(frozen=True, slots=True)
class Pong:
    seq: int


Frame = Pair | Paired | Hello | Welcome | Refused | Request | Response | Body | Cancel | Ping | Pong

_TYPES: dict[type[Any], str] = {
    Pair: "pair",
    Paired: "paired",
    Hello: "hello",
    Welcome: "welcome",
    Refused: "refused",
    Request: "request",
    Response: "response",
    Body: "body",
    Cancel: "cancel",
    Ping: "ping",
    Pong: "pong",
}


# ------------------------------------------------------------------------------ encoding


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def encode(frame: Frame) -> str:
    """One frame as the text of one WebSocket message."""
    out: dict[str, Any] = {"type": _TYPES[type(frame)]}
    match frame:
        case Request():
            out |= {"id": frame.id, "method": frame.method, "path": frame.path}
            out |= {"headers": [list(h) for h in frame.headers], "body": _b64(frame.body)}
            out["more"] = frame.more
        case Response():
            out |= {"id": frame.id, "status": frame.status}
            out |= {"headers": [list(h) for h in frame.headers], "body": _b64(frame.body)}
            out["more"] = frame.more
        case Body():
            out |= {"id": frame.id, "data": _b64(frame.data), "more": frame.more}
        case _:
            out |= {field.name: getattr(frame, field.name) for field in fields(frame)}
    return json.dumps(out, separators=(",", ":"), ensure_ascii=True)


# ------------------------------------------------------------------------------ decoding


class _Fields:
    """Typed access to a decoded JSON object; every failure names the field."""

    def __init__(self, kind: str, raw: dict[str, Any]) -> None:
        self.kind, self.raw = kind, raw

    def _get(self, name: str) -> Any:
        if name not in self.raw:
            raise FrameError(f"{self.kind} frame: field {name!r} is missing")
        return self.raw[name]

    def fail(self, name: str, why: str) -> FrameError:
        return FrameError(f"{self.kind} frame: field {name!r} {why}")

    def text(self, name: str, limit: int = MAX_TEXT, *, empty: bool = False) -> str:
        value = self._get(name)
        if not isinstance(value, str):
            raise self.fail(name, "must be a string")
        if len(value) > limit:
            raise self.fail(name, f"is longer than {limit} characters")
        if not value and not empty:
            raise self.fail(name, "is empty")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise self.fail(name, "contains control characters")
        return value

    def integer(self, name: str, low: int, high: int) -> int:
        value = self._get(name)
        if type(value) is not int or not low <= value <= high:
            raise self.fail(name, f"must be an integer from {low} to {high}")
        return value

    def flag(self, name: str) -> bool:
        value = self._get(name)
        if type(value) is not bool:
            raise self.fail(name, "must be true or false")
        return value

    def data(self, name: str) -> bytes:
        value = self._get(name)
        if not isinstance(value, str) or len(value) > (MAX_CHUNK + 2) // 3 * 4:
            raise self.fail(name, f"must be base64 of at most {MAX_CHUNK} bytes")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise self.fail(name, "is not valid base64") from exc

    def headers(self, name: str) -> Headers:
        value = self._get(name)
        if not isinstance(value, list) or len(value) > MAX_HEADERS:
            raise self.fail(name, f"must be a list of at most {MAX_HEADERS} [name, value] pairs")
        pairs = []
        for item in value:
            if (
                not isinstance(item, list)
                or len(item) != 2
                or not all(isinstance(part, str) for part in item)
            ):
                raise self.fail(name, "must hold [name, value] string pairs")
            key, text = item
            if not _TOKEN.fullmatch(key):
                raise self.fail(name, f"has an invalid header name {key[:40]!r}")
            if len(text) > 8192 or any(c in "\r\n\0" for c in text) or not text.isascii():
                raise self.fail(name, f"has an invalid value for header {key!r}")
            pairs.append((key, text))
        return tuple(pairs)

    def stream_id(self) -> int:
        return self.integer("id", 1, MAX_ID)


def decode(text: str | bytes) -> Frame:
    """Parse one WebSocket message; raises :class:`FrameError` naming what is wrong."""
    if isinstance(text, bytes):
        raise FrameError("binary messages are not part of the link protocol")
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise FrameError(f"not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise FrameError("a frame must be a JSON object")
    kind = raw.get("type")
    f = _Fields(str(kind)[:20], raw)
    match kind:
        case "pair":
            return Pair(f.text("code"), f.text("box_name", 200, empty=True))
        case "paired":
            return Paired(f.text("box_id"), f.text("credential", 200))
        case "hello":
            return Hello(f.text("box_id"), f.text("credential", 200))
        case "welcome":
            return Welcome(f.text("box_id"))
        case "refused":
            return Refused(f.text("reason"), f.text("message", 500, empty=True))
        case "request":
            method = f.text("method", 32)
            if not _TOKEN.fullmatch(method):
                raise f.fail("method", "is not an HTTP method token")
            path = f.text("path", 8192)
            if not path.startswith("/") or not path.isascii() or " " in path:
                raise f.fail("path", "must be an absolute path (ASCII, no spaces)")
            return Request(
                f.stream_id(), method, path, f.headers("headers"), f.data("body"), f.flag("more")
            )
        case "response":
            return Response(
                f.stream_id(),
                f.integer("status", 100, 599),
                f.headers("headers"),
                f.data("body"),
                f.flag("more"),
            )
        case "body":
            return Body(f.stream_id(), f.data("data"), f.flag("more"))
        case "cancel":
            return Cancel(f.stream_id(), f.text("reason", 500, empty=True))
        case "ping":
            return Ping(f.integer("seq", 0, MAX_ID))
        case "pong":
            return Pong(f.integer("seq", 0, MAX_ID))
    raise FrameError(f"field 'type' has an unknown value {str(kind)[:40]!r}")
