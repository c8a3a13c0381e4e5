"""The cloud link connection as a sans-IO state machine (one object per WebSocket connection).

Fed received messages (``receive(text, now)``) and timer ticks (``handle_timer(now)``), it
returns events; calls like ``send_response`` queue frames that the adapter takes with
``frames_to_send()``; ``next_timer()`` says when to call ``handle_timer``. It never reads a
clock or touches a socket. Frames are in :mod:`appliance.link.frames`.

Connection states (box side; the cabinet's mirror differs only in who sends what)::

    HANDSHAKE --paired / welcome--> OPEN --refused, dead, close()--> CLOSED

Streams: the cabinet opens one per request with a fresh, increasing ``id``; several run at
once. A stream is two halves, each a small table: the request half (cabinet -> box) and the
response half (box -> cabinet). A stream ends when both halves are done or either side
cancels. Frames for an id that has ended are ignored (a cancel crosses frames in flight);
frames for an id never opened are a protocol error.

Heartbeat: each side sends ``ping`` after ``ping_interval`` without a ping sent, answers
``ping`` with ``pong``, and declares the connection dead after ``dead_after`` seconds with
nothing received (a NAT that dropped its mapping loses frames silently; TCP alone would
notice only after many minutes).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field

from appliance.link.frames import (
    MAX_CHUNK,
    Body,
    Cancel,
    Frame,
    FrameError,
    Headers,
    Hello,
    Pair,
    Paired,
    Ping,
    Pong,
    Refused,
    Request,
    Response,
    Welcome,
    decode,
    encode,
)

__all__ = [
    "BodyReceived",
    "ConnectionDead",
    "Event",
    "HandshakeDone",
    "HandshakeRequested",
    "LinkConnection",
    "LinkState",
    "LocalProtocolError",
    "RemoteProtocolError",
    "RequestStarted",
    "ResponseStarted",
    "Role",
    "StreamCancelled",
]


class Role(enum.Enum):
    BOX = "box"
    CABINET = "cabinet"


class LinkState(enum.Enum):
    HANDSHAKE = "handshake"
    OPEN = "open"
    CLOSED = "closed"


class LocalProtocolError(RuntimeError):
    """This side misused the connection (a bug here, not the peer's fault)."""


class RemoteProtocolError(ValueError):
    """The peer broke the protocol; the connection must be closed (WebSocket code 1002)."""


# ------------------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True)
class HandshakeRequested:
    """Cabinet side: the box asks to pair (``frame`` is Pair) or to resume (Hello)."""

    frame: Pair | Hello


@dataclass(frozen=True, slots=True)
class HandshakeDone:
    """Box side: the cabinet accepted (Paired: keep the credential; Welcome) or refused."""

    frame: Paired | Welcome | Refused


@dataclass(frozen=True, slots=True)
class RequestStarted:
    """Box side: a request from the cabinet; ``complete`` when no body frames follow."""

    id: int
    method: str
    path: str
    headers: Headers
    body: bytes
    complete: bool


@dataclass(frozen=True, slots=True)
class ResponseStarted:
    """Cabinet side: the box's answer to request ``id``."""

    id: int
    status: int
    headers: Headers
    body: bytes
    complete: bool


@dataclass(frozen=True, slots=True)
class BodyReceived:
    id: int
    data: bytes
    complete: bool


@dataclass(frozen=True, slots=True)
class StreamCancelled:
    """The peer abandoned stream ``id`` (or this side refused it: too many in flight)."""

    id: int
    reason: str


@dataclass(frozen=True, slots=True)
class ConnectionDead:
    """Nothing heard for ``dead_after`` seconds: close the socket and reconnect."""

    silent_for: float


Event = (
    HandshakeRequested
    | HandshakeDone
    | RequestStarted
    | ResponseStarted
    | BodyReceived
    | StreamCancelled
    | ConnectionDead
)


# ------------------------------------------------------------------------------ streams


class Half(enum.Enum):
    """One direction of a stream."""

    IDLE = "idle"  # nothing sent yet (a response half before the answer starts)
    OPEN = "open"  # head sent, body frames follow
    DONE = "done"


class Step(enum.Enum):
    HEAD_MORE = "head, more follows"
    HEAD_END = "head, complete"
    BODY_MORE = "body, more follows"
    BODY_END = "body, complete"


# (half state, step) -> next half state. Anything missing is a protocol error.
HALF_TABLE: dict[tuple[Half, Step], Half] = {
    (Half.IDLE, Step.HEAD_MORE): Half.OPEN,
    (Half.IDLE, Step.HEAD_END): Half.DONE,
    (Half.OPEN, Step.BODY_MORE): Half.OPEN,
    (Half.OPEN, Step.BODY_END): Half.DONE,
}


def advance(half: Half, step: Step) -> Half:
    """The table as a function: raises KeyError for a step the half does not allow."""
    return HALF_TABLE[(half, step)]


@dataclass(slots=True)
class _Stream:
    request: Half = Half.IDLE
    response: Half = Half.IDLE

    @property
    def finished(self) -> bool:
        return self.request is Half.DONE and self.response is Half.DONE


def _step(head: bool, more: bool) -> Step:
    if head:
        return Step.HEAD_MORE if more else Step.HEAD_END
    return Step.BODY_MORE if more else Step.BODY_END


def _chunks(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), MAX_CHUNK):
        yield data[start : start + MAX_CHUNK]


# ------------------------------------------------------------------------------ connection


@dataclass
class LinkConnection:
    """One side of one link connection. ``max_streams`` bounds requests in flight on the
    box side: one more is cancelled at once with reason ``busy``."""

    role: Role
    now: float
    ping_interval: float = 15.0
    dead_after: float = 45.0
    max_streams: int = 16
    state: LinkState = LinkState.HANDSHAKE
    _out: list[str] = field(default_factory=list)
    _streams: dict[int, _Stream] = field(default_factory=dict)
    _last_id: int = 0
    _last_heard: float = 0.0
    _last_ping: float = 0.0
    _ping_seq: int = 0

    def __post_init__(self) -> None:
        self._last_heard = self._last_ping = self.now

    # --------------------------------------------------------------- output and timers

    def frames_to_send(self) -> list[str]:
        out, self._out = self._out, []
        return out

    def next_timer(self) -> float | None:
        if self.state is LinkState.CLOSED:
            return None
        return min(self._last_ping + self.ping_interval, self._last_heard + self.dead_after)

    def handle_timer(self, now: float) -> list[Event]:
        if self.state is LinkState.CLOSED:
            return []
        if now - self._last_heard >= self.dead_after:
            self.state = LinkState.CLOSED
            self._streams.clear()
            return [ConnectionDead(now - self._last_heard)]
        if now - self._last_ping >= self.ping_interval:
            self._ping_seq += 1
            self._last_ping = now
            self._queue(Ping(self._ping_seq))
        return []

    def stream_open(self, stream_id: int) -> bool:
        return stream_id in self._streams

    @property
    def in_flight(self) -> int:
        return len(self._streams)

    def close(self) -> None:
        self.state = LinkState.CLOSED
        self._streams.clear()

    def _queue(self, frame: Frame) -> None:
        self._out.append(encode(frame))

    def _require(self, state: LinkState, what: str) -> None:
        if self.state is not state:
            raise LocalProtocolError(f"cannot {what} while the link is {self.state.value}")

    def _require_role(self, role: Role, what: str) -> None:
        if self.role is not role:
            raise LocalProtocolError(f"only the {role.value} can {what}")

    # --------------------------------------------------------------- handshake (send)

    def start(self, frame: Pair | Hello) -> None:
        """Box: the first frame on a new connection."""
        self._require_role(Role.BOX, "start the handshake")
        self._require(LinkState.HANDSHAKE, "start the handshake")
        self._queue(frame)

    def accept(self, frame: Paired | Welcome) -> None:
        """Cabinet: answer a HandshakeRequested; the link is open."""
        self._require_role(Role.CABINET, "accept a box")
        self._require(LinkState.HANDSHAKE, "accept a box")
        self._queue(frame)
        self.state = LinkState.OPEN

    def refuse(self, reason: str, message: str) -> None:
        """Cabinet: refuse the handshake; the adapter closes the socket after sending."""
        self._require_role(Role.CABINET, "refuse a box")
        self._queue(Refused(reason, message))
        self.close()

    # --------------------------------------------------------------- streams (send)

    def send_request(
        self, method: str, path: str, headers: Headers = (), body: bytes = b"", *, more: bool
    ) -> int:
        """Cabinet: open a stream; returns its id. With ``more``, body frames follow."""
        self._require_role(Role.CABINET, "send requests")
        self._require(LinkState.OPEN, "send a request")
        self._last_id += 1
        stream_id = self._last_id
        stream = self._streams[stream_id] = _Stream()
        first, *rest = list(_chunks(body)) or [b""]
        stream.request = advance(stream.request, _step(True, more or bool(rest)))
        self._queue(Request(stream_id, method, path, headers, first, more or bool(rest)))
        if rest:
            self._send_chunks(stream_id, rest, more=more, request=True)
        return stream_id

    def send_response(
        self, stream_id: int, status: int, headers: Headers = (), body: bytes = b"", *, more: bool
    ) -> None:
        """Box: the answer's head (and first bytes) for stream ``stream_id``."""
        self._require_role(Role.BOX, "send responses")
        stream = self._live(stream_id)
        if stream is None:
            return  # cancelled meanwhile: nothing to answer
        first, *rest = list(_chunks(body)) or [b""]
        stream.response = self._local_step(stream.response, _step(True, more or bool(rest)))
        self._queue(Response(stream_id, status, headers, first, more or bool(rest)))
        if rest:
            self._send_chunks(stream_id, rest, more=more, request=False)
        self._reap(stream_id, stream)

    def send_body(self, stream_id: int, data: bytes, *, more: bool) -> None:
        """The next bytes of this side's half of the stream (request for the cabinet,
        response for the box), split into frames of at most MAX_CHUNK bytes."""
        stream = self._live(stream_id)
        if stream is None:
            return
        self._send_chunks(stream_id, list(_chunks(data)) or [b""], more=more, request=None)
        self._reap(stream_id, stream)

    def cancel(self, stream_id: int, reason: str = "") -> None:
        """Abandon a stream (either side). Ignored for a stream already ended."""
        if self._streams.pop(stream_id, None) is not None and self.state is LinkState.OPEN:
            self._queue(Cancel(stream_id, reason[:500]))

    def _send_chunks(
        self, stream_id: int, chunks: list[bytes], *, more: bool, request: bool | None
    ) -> None:
        stream = self._streams[stream_id]
        mine_is_request = self.role is Role.CABINET if request is None else request
        for index, chunk in enumerate(chunks):
            last = index == len(chunks) - 1
            step = _step(False, more or not last)
            if mine_is_request:
                stream.request = self._local_step(stream.request, step)
            else:
                stream.response = self._local_step(stream.response, step)
            self._queue(Body(stream_id, chunk, more or not last))

    def _live(self, stream_id: int) -> _Stream | None:
        self._require(LinkState.OPEN, "send on a stream")
        if stream_id > self._last_id:
            raise LocalProtocolError(f"stream {stream_id} was never opened")
        return self._streams.get(stream_id)

    @staticmethod
    def _local_step(half: Half, step: Step) -> Half:
        try:
            return advance(half, step)
        except KeyError:
            raise LocalProtocolError(
                f"cannot send {step.value} when the half is {half.value}"
            ) from None

    def _reap(self, stream_id: int, stream: _Stream) -> None:
        if stream.finished:
            del self._streams[stream_id]

    # --------------------------------------------------------------- receiving

    def receive(self, text: str | bytes, now: float) -> list[Event]:
        """One received WebSocket message. Raises :class:`RemoteProtocolError`."""
        if self.state is LinkState.CLOSED:
            return []
        self._last_heard = now
        try:
            frame = decode(text)
        except FrameError as exc:
            raise RemoteProtocolError(str(exc)) from exc
        if isinstance(frame, Ping):
            self._queue(Pong(frame.seq))
            return []
        if isinstance(frame, Pong):
            return []
        if self.state is LinkState.HANDSHAKE:
            return self._receive_handshake(frame)
        return self._receive_stream(frame)

    def _receive_handshake(self, frame: Frame) -> list[Event]:
        if self.role is Role.CABINET and isinstance(frame, Pair | Hello):
            return [HandshakeRequested(frame)]
        if self.role is Role.BOX and isinstance(frame, Paired | Welcome | Refused):
            self.state = LinkState.CLOSED if isinstance(frame, Refused) else LinkState.OPEN
            return [HandshakeDone(frame)]
        raise RemoteProtocolError(f"unexpected {type(frame).__name__} frame during the handshake")

    def _receive_stream(self, frame: Frame) -> list[Event]:
        if isinstance(frame, Request) and self.role is Role.BOX:
            return self._receive_request(frame)
        if not isinstance(frame, Response | Body | Cancel):
            raise RemoteProtocolError(f"unexpected {type(frame).__name__} frame on an open link")
        if frame.id > self._last_id:
            raise RemoteProtocolError(f"frame for stream {frame.id}, which was never opened")
        stream = self._streams.get(frame.id)
        if stream is None:
            return []  # the stream ended here (e.g. cancelled) while the peer still sent
        if isinstance(frame, Cancel):
            del self._streams[frame.id]
            return [StreamCancelled(frame.id, frame.reason)]
        if isinstance(frame, Response):
            if self.role is not Role.CABINET:
                raise RemoteProtocolError("the cabinet cannot send responses")
            stream.response = self._remote_step(stream.response, _step(True, frame.more))
            event: Event = ResponseStarted(
                frame.id, frame.status, frame.headers, frame.body, not frame.more
            )
        elif self.role is Role.BOX:
            stream.request = self._remote_step(stream.request, _step(False, frame.more))
            event = BodyReceived(frame.id, frame.data, not frame.more)
        else:
            stream.response = self._remote_step(stream.response, _step(False, frame.more))
            event = BodyReceived(frame.id, frame.data, not frame.more)
        self._reap(frame.id, stream)
        return [event]

    def _receive_request(self, frame: Request) -> list[Event]:
        if frame.id <= self._last_id:
            raise RemoteProtocolError(f"stream id {frame.id} is not above {self._last_id}")
        self._last_id = frame.id
        if len(self._streams) >= self.max_streams:
            self._queue(Cancel(frame.id, "busy"))
            return [StreamCancelled(frame.id, "busy")]
        stream = self._streams[frame.id] = _Stream()
        stream.request = advance(stream.request, _step(True, frame.more))
        return [
            RequestStarted(
                frame.id, frame.method, frame.path, frame.headers, frame.body, not frame.more
            )
        ]

    @staticmethod
    def _remote_step(half: Half, step: Step) -> Half:
        try:
            return advance(half, step)
        except KeyError:
            raise RemoteProtocolError(
                f"peer sent {step.value} when the half is {half.value}"
            ) from None
