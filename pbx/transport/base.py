"""What every transport adapter shares (RFC 3261 §18): the interface the stack sees, the
inbound half (bytes -> parsed message or stateless error answer), and the manager that routes
outgoing :class:`Transmit` values to the right socket.

The adapters only move bytes. Parsing is the sans-IO :mod:`pbx.sip.parser`; what to do with a
message is the stack's business, reached through a :class:`MessageSink`.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Protocol

from pbx.sip.errors import RemoteProtocolError
from pbx.sip.events import Peer, Transmit
from pbx.sip.message import Request, Response, response_from_headers
from pbx.sip.parser import DEFAULT_LIMITS, Limits, StreamFramer, parse

log = logging.getLogger(__name__)

PONG = b"\r\n"  # RFC 5626 §4.4.1: a CRLF answers a CRLFCRLF ping


# ------------------------------------------------------------------------------ errors


class TransportError(Exception):
    """Bytes could not be sent to a peer. Reported to :meth:`MessageSink.on_transport_error`
    (§18.4: the transaction layer turns it into a transport failure)."""


class AddressError(TransportError):
    """The peer is not an IP literal with a valid port (names are resolved above us)."""


class NoTransport(TransportError):
    """No listening transport of that name and address family."""


class ConnectFailed(TransportError):
    """A stream connection could not be opened (refused, unreachable, timed out)."""


class ConnectionLimit(TransportError):
    """The configured maximum number of simultaneous connections is reached."""


class WriteBufferFull(TransportError):
    """The peer does not read fast enough; the message was not queued."""


class SendFailed(TransportError):
    """The socket refused the bytes (closed, or an OS error at send time)."""


class ConnectionClosed(TransportError):
    """The connection closed before the queued bytes could be written."""


# ------------------------------------------------------------------------ interfaces


class MessageSink(Protocol):
    """Where transports deliver: the stack (transaction layer) implements this."""

    def on_message(self, message: Request | Response, source: Peer) -> None:
        """A parsed message. ``source.connection`` is set for stream transports."""

    def on_transport_error(self, peer: Peer, error: TransportError) -> None:
        """Sending to ``peer`` (as given in the :class:`Transmit`) failed."""


@dataclass(slots=True)
class TransportStats:
    """Counters, per transport; :attr:`TransportManager.stats` sums them."""

    received: int = 0  # messages delivered to the sink
    sent: int = 0  # messages handed to the OS (stateless error answers included)
    parse_errors: int = 0  # inbound messages that did not parse (answered or dropped)
    dropped: int = 0  # input thrown away unanswered; datagrams not sent for a full buffer
    send_errors: int = 0  # sends reported to on_transport_error
    keepalives: int = 0  # CRLF pings answered, whitespace datagrams ignored
    connections_accepted: int = 0
    connections_opened: int = 0
    connections_rejected: int = 0  # refused for the connection limit

    def add(self, other: TransportStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass(frozen=True, slots=True)
class TransportOptions:
    """Tunables of the adapters; the composition root builds this from the settings."""

    limits: Limits = DEFAULT_LIMITS
    max_write_buffer: int = 256 * 1024  # bytes queued per socket before sends are refused
    max_connections: int = 1024  # simultaneous stream connections per listening transport
    # Idle stream connections are closed. A phone behind NAT is reachable only over the
    # connection it opened and refreshes it with each re-registration (often every half
    # hour), so connections opened by peers are kept longer than the ones we opened.
    idle_timeout: float = 600.0
    inbound_idle_timeout: float = 3600.0
    connect_timeout: float = 10.0


class Transport(Protocol):
    """One listening socket (and, for streams, the connections it owns)."""

    @property
    def name(self) -> str:
        """ "UDP", "TCP" or "TLS": the Via transport token."""

    @property
    def local_address(self) -> tuple[str, int]:
        """The bound (host, port); port 0 at creation is resolved to the real one."""

    @property
    def stats(self) -> TransportStats: ...

    def owns(self, connection: int) -> bool:
        """Whether the live connection with this id belongs to this transport."""

    def send(self, transmit: Transmit) -> None:
        """Send or queue; failures go to the sink's ``on_transport_error``, never raised."""

    async def close(self) -> None: ...


# -------------------------------------------------------------------------- addresses


@lru_cache(maxsize=4096)
def normalize_host(host: str) -> str:
    """The canonical text of an IP literal (brackets stripped, IPv4-mapped IPv6 as IPv4), so
    addresses from Via headers and from the OS compare equal. Raises :class:`AddressError`."""
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise AddressError(f"not an IP address: {host!r}") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def checked_address(peer: Peer) -> tuple[str, int]:
    """(host, port) to hand to a socket: never a name (no blocking DNS here) nor a port the
    loop rejects (plain asyncio closes a UDP transport on an out-of-range port)."""
    if not 0 < peer.port < 65536:
        raise AddressError(f"invalid port {peer.port}")
    return normalize_host(peer.host), peer.port


def source_host(host: str) -> str:
    """A host as the OS reports it, with the IPv4-mapped form of dual-stack sockets undone."""
    if host.startswith("::ffff:") and "." in host:
        return host[7:]
    return host


def is_ipv6(host: str) -> bool:
    return ":" in host


# ----------------------------------------------------------------- the inbound half


def deliver(sink: MessageSink, message: Request | Response, source: Peer) -> None:
    # A bug in the stack must not take the socket down with it.
    try:
        sink.on_message(message, source)
    except Exception:
        log.exception("message sink failed on a message from %s", source)


def report(sink: MessageSink, peer: Peer, error: TransportError) -> None:
    try:
        sink.on_transport_error(peer, error)
    except Exception:
        log.exception("message sink failed on a transport error for %s", peer)


def error_answer(exc: RemoteProtocolError) -> bytes | None:
    """The stateless answer a parse error calls for, or ``None`` to drop (§8.2, §16.3)."""
    if exc.status is None or exc.headers is None:
        return None
    cseq = exc.headers.get("CSeq") or ""
    if cseq.rsplit(None, 1)[-1:] == ["ACK"]:
        return None  # an ACK is never answered (§17.2.1)
    # The reason comes from peer bytes: keep it printable and short.
    reason = "".join(c for c in exc.reason if " " <= c <= "~")[:80] or None
    return bytes(response_from_headers(exc.headers, exc.status, reason))


def receive_datagram(
    data: bytes, source: Peer, sink: MessageSink, stats: TransportStats, limits: Limits
) -> bytes | None:
    """Parse one datagram and deliver it; returns bytes to answer the source with, if any."""
    if len(data) > limits.max_message:
        stats.dropped += 1  # too large to be ours; not worth a 513 to an unverified source
        return None
    if not data or (data[:1].isspace() and data.isspace()):
        stats.keepalives += 1  # CRLF keep-alives are a stream thing; on UDP just ignore them
        return None
    try:
        message = parse(data, limits)
    except RemoteProtocolError as exc:
        stats.parse_errors += 1
        log.debug("unparsable datagram from %s: %s", source, exc.reason)
        answer = error_answer(exc)
        if answer is None:
            stats.dropped += 1
        return answer
    stats.received += 1
    deliver(sink, message, source)
    return None


class StreamReceiver:
    """The inbound half of one stream connection: frames bytes into messages, answers CRLF
    pings and unparsable requests, and tells the connection when to close (§18.3)."""

    def __init__(
        self,
        source: Peer,
        sink: MessageSink,
        stats: TransportStats,
        limits: Limits,
        reply: Callable[[bytes], None],
    ) -> None:
        self.source = source
        self._sink = sink
        self._stats = stats
        self._reply = reply
        self._framer = StreamFramer(limits)
        self._pings = 0

    def feed(self, data: bytes) -> bool:
        """Take bytes off the wire; ``False`` means the stream is broken: close it (after the
        replies already written have gone out)."""
        framer = self._framer
        framer.feed(data)
        while True:
            try:
                message = framer.next_message()
            except RemoteProtocolError as exc:
                self._pong()  # pings that came before the bad message
                self._reject(exc)
                if framer.broken:
                    return False
                continue  # the bad message was cut out cleanly: the stream goes on
            self._pong()
            if message is None:
                return True
            self._stats.received += 1
            deliver(self._sink, message, self.source)

    def _reject(self, exc: RemoteProtocolError) -> None:
        self._stats.parse_errors += 1
        log.debug("unparsable message from %s: %s", self.source, exc.reason)
        answer = error_answer(exc)
        if answer is None:
            self._stats.dropped += 1
        else:
            self._stats.sent += 1
            self._reply(answer)

    def _pong(self) -> None:
        while self._pings < self._framer.keepalives:
            self._pings += 1
            self._stats.keepalives += 1
            self._reply(PONG)


# ------------------------------------------------------------------------- the manager


class TransportManager:
    """Owns the listening transports and routes each :class:`Transmit` to one of them.

    Routing: by ``peer.transport``; a set ``peer.connection`` picks the transport owning that
    connection; otherwise the first transport whose address family matches the peer's host.
    """

    def __init__(self, sink: MessageSink) -> None:
        self.sink = sink
        self._transports: dict[str, list[Transport]] = {}
        self._errors = TransportStats()

    @property
    def transports(self) -> list[Transport]:
        return [t for group in self._transports.values() for t in group]

    def add(self, transport: Transport) -> Transport:
        """Take over a listening transport, e.g. ``await UdpTransport.listen(sink, host, port)``
        or a :class:`~pbx.transport.memory.MemoryTransport`."""
        self._transports.setdefault(transport.name, []).append(transport)
        return transport

    def local_address(self, transport: str, ipv6: bool | None = None) -> tuple[str, int]:
        """Our bound (host, port) for ``transport`` ("UDP", "TCP", "TLS"), for Via and
        Contact. On a wildcard bind ("0.0.0.0", "::") the host is the wildcard: the stack
        then advertises the address from its settings, keeping the port from here."""
        for t in self._transports.get(transport.upper(), []):
            if ipv6 is None or is_ipv6(t.local_address[0]) == ipv6:
                return t.local_address
        raise NoTransport(f"no {transport} transport" + ("" if ipv6 is None else f" ipv6={ipv6}"))

    def send(self, transmit: Transmit) -> None:
        peer = transmit.peer
        transport = self._route(peer)
        if transport is None:
            self._errors.send_errors += 1
            report(self.sink, peer, NoTransport(f"no transport for {peer}"))
            return
        transport.send(transmit)

    def _route(self, peer: Peer) -> Transport | None:
        candidates = self._transports.get(peer.transport, [])
        if peer.connection is not None:
            for t in candidates:
                if t.owns(peer.connection):
                    return t
        v6 = is_ipv6(peer.host)
        for t in candidates:
            if is_ipv6(t.local_address[0]) == v6:
                return t
        return None

    @property
    def stats(self) -> TransportStats:
        total = TransportStats()
        total.add(self._errors)
        for t in self.transports:
            total.add(t.stats)
        return total

    async def close(self) -> None:
        for t in self.transports:
            await t.close()
        self._transports.clear()
