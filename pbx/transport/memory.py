"""An in-memory twin of the transports, for tests of the stack without sockets (compare
PJSIP's loop transport). It behaves like the real adapters where the stack can tell:

* the same :class:`~pbx.transport.base.MessageSink` calls, the same parsing, the same
  stateless 400s, drops and stats (the inbound half is shared code from ``base``);
* "UDP" endpoints get datagrams, which a deterministic fault pattern may drop, duplicate
  or reorder; reliable endpoints ("TCP", "TLS") get streams over links with connection ids:
  bytes are framed by Content-Length, CRLFCRLF pings get CRLF pongs, a framing error answers
  400 when it can and closes the link, sending to an address nobody listens on reports
  :class:`~pbx.transport.base.ConnectFailed`.

Not modelled: idle timeouts, connection limits, write-buffer limits, address validation
beyond the port range. Hosts are plain strings ("alice.test" is fine).

:class:`QueueSink` stands in for the stack in adapter tests, here and for the real sockets.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pbx.sip.events import RELIABLE, Peer, Transmit
from pbx.sip.message import Request, Response
from pbx.transport.base import (
    AddressError,
    ConnectFailed,
    MessageSink,
    StreamReceiver,
    TransportError,
    TransportOptions,
    TransportStats,
    receive_datagram,
    report,
)

Delivery = Literal["manual", "sync", "loop"]
_FAULTS = frozenset(".x2r")


@dataclass(slots=True, eq=False)
class _Link:
    """A stream connection between two endpoints; both ends know it by the same id."""

    id: int
    ends: tuple[_Endpoint, _Endpoint]
    alive: bool = True

    def other(self, end: _Endpoint) -> _Endpoint:
        return self.ends[1] if end is self.ends[0] else self.ends[0]


@dataclass(frozen=True, slots=True)
class Packet:
    """Bytes on the wire, as recorded in :attr:`MemoryNetwork.wire`."""

    data: bytes
    source: Peer  # the sender's address; ``connection`` is the link id on streams
    destination: tuple[str, int]


@dataclass(slots=True)
class _Delivery:
    packet: Packet
    to: _Endpoint
    link: _Link | None


@dataclass(slots=True)
class _Failure:
    to: _Endpoint
    peer: Peer
    error: TransportError


@dataclass(slots=True)
class _Closed:
    to: _Endpoint
    link: _Link


class _Endpoint:
    """Something attached to the network at (transport, host, port)."""

    def __init__(self, network: MemoryNetwork, transport: str, host: str, port: int) -> None:
        self.network = network
        self.name = transport.upper()
        self.host = host
        self.port = port

    @property
    def local_address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def reliable(self) -> bool:
        return self.name in RELIABLE

    def owns(self, connection: int) -> bool:
        link = self.network._links.get(connection)
        return link is not None and link.alive and self in link.ends

    def _receive(self, data: bytes, source: Peer, link: _Link | None) -> None:
        raise NotImplementedError

    def _transport_error(self, peer: Peer, error: TransportError) -> None:
        raise NotImplementedError

    def _link_closed(self, link: _Link) -> None:
        """The other end closed ``link``."""


class MemoryTransport(_Endpoint):
    """Plays a listening transport of the stack; plugs into :class:`TransportManager`."""

    def __init__(
        self,
        network: MemoryNetwork,
        sink: MessageSink,
        *,
        transport: str,
        host: str,
        port: int,
        options: TransportOptions,
    ) -> None:
        super().__init__(network, transport, host, port)
        self.stats = TransportStats()
        self._sink = sink
        self._options = options
        self._streams: dict[int, StreamReceiver] = {}

    def send(self, transmit: Transmit) -> None:
        try:
            self.network._send(self, transmit.data, transmit.peer)
        except TransportError as exc:
            self.stats.send_errors += 1
            report(self._sink, transmit.peer, exc)
            return
        self.stats.sent += 1

    async def close(self) -> None:
        self.network._detach(self)

    def _receive(self, data: bytes, source: Peer, link: _Link | None) -> None:
        limits = self._options.limits
        if link is None:
            answer = receive_datagram(data, source, self._sink, self.stats, limits)
            if answer is not None:
                self.stats.sent += 1
                self.network._send(self, answer, source)
            return
        receiver = self._streams.get(link.id)
        if receiver is None:

            def reply(answer: bytes) -> None:
                if link.alive:
                    self.network._send(self, answer, source)

            receiver = StreamReceiver(source, self._sink, self.stats, limits, reply)
            self._streams[link.id] = receiver
        if not receiver.feed(data):
            self.network.close_link(link.id)

    def _transport_error(self, peer: Peer, error: TransportError) -> None:
        self.stats.send_errors += 1
        report(self._sink, peer, error)

    def _link_closed(self, link: _Link) -> None:
        self._streams.pop(link.id, None)


class RawEndpoint(_Endpoint):
    """A peer that sends and records raw bytes: for malformed input and exact wire checks."""

    def __init__(self, network: MemoryNetwork, transport: str, host: str, port: int) -> None:
        super().__init__(network, transport, host, port)
        self.received: list[Packet] = []
        self.errors: list[tuple[Peer, TransportError]] = []
        self.closed: list[int] = []  # ids of links the other side closed
        self.on_receive: Callable[[Packet], None] | None = None

    def send(self, data: bytes, host: str, port: int, connection: int | None = None) -> None:
        """Send bytes (one datagram, or one chunk of a stream) to ``host:port``."""
        self.network._send(self, data, Peer(self.name, host, port, connection))

    def _receive(self, data: bytes, source: Peer, link: _Link | None) -> None:
        packet = Packet(data, source, self.local_address)
        self.received.append(packet)
        if self.on_receive is not None:
            self.on_receive(packet)

    def _transport_error(self, peer: Peer, error: TransportError) -> None:
        self.errors.append((peer, error))

    def _link_closed(self, link: _Link) -> None:
        self.closed.append(link.id)


class MemoryNetwork:
    """A loopback network joining endpoints by fake addresses.

    ``delivery``: "manual" queues everything until :meth:`flush`; "sync" delivers before
    ``send`` returns (sends made while delivering are queued behind, so ping-pong does not
    recurse); "loop" flushes from the running event loop, like a socket would.

    ``pattern``: what happens to successive datagrams, cycling: "." deliver, "x" drop,
    "2" deliver twice, "r" hold back and deliver after the next one (or at the end of a
    flush, when nothing follows). Streams are never faulted: TCP does not lose or reorder.
    """

    def __init__(self, pattern: str = "", *, delivery: Delivery = "manual") -> None:
        if set(pattern) - _FAULTS:
            raise ValueError(f"fault pattern uses only {''.join(sorted(_FAULTS))}: {pattern!r}")
        self.delivery = delivery
        self.wire: list[Packet] = []
        self.lost = 0
        self._pattern = pattern
        self._datagrams = 0
        self._held: _Delivery | None = None
        self._queue: deque[_Delivery | _Failure | _Closed] = deque()
        self._endpoints: dict[tuple[str, str, int], _Endpoint] = {}
        self._links: dict[int, _Link] = {}
        self._link_ids = itertools.count(1)
        self._flushing = False
        self._flush_scheduled = False

    # ------------------------------------------------------------------ building

    def attach(
        self,
        sink: MessageSink,
        host: str,
        port: int = 5060,
        transport: str = "UDP",
        options: TransportOptions | None = None,
    ) -> MemoryTransport:
        endpoint = MemoryTransport(
            self,
            sink,
            transport=transport,
            host=host,
            port=port,
            options=options or TransportOptions(),
        )
        self._attach(endpoint)
        return endpoint

    def attach_raw(self, host: str, port: int = 5060, transport: str = "UDP") -> RawEndpoint:
        endpoint = RawEndpoint(self, transport, host, port)
        self._attach(endpoint)
        return endpoint

    def _attach(self, endpoint: _Endpoint) -> None:
        key = (endpoint.name, endpoint.host, endpoint.port)
        if key in self._endpoints:
            raise ValueError(f"address in use: {key}")
        self._endpoints[key] = endpoint

    def _detach(self, endpoint: _Endpoint) -> None:
        self._endpoints.pop((endpoint.name, endpoint.host, endpoint.port), None)
        for link in list(self._links.values()):
            if endpoint in link.ends:
                self._close(link, by=endpoint)

    # ------------------------------------------------------------------- running

    @property
    def in_flight(self) -> int:
        return len(self._queue) + (self._held is not None)

    def flush(self, max_steps: int = 100_000) -> int:
        """Deliver until nothing is in flight; returns how many items were processed."""
        if self._flushing:
            return 0
        self._flushing = True
        self._flush_scheduled = False
        steps = 0
        try:
            while self._queue or self._held is not None:
                if not self._queue:
                    held, self._held = self._held, None
                    assert held is not None
                    self._queue.append(held)
                steps += 1
                if steps > max_steps:
                    raise RuntimeError("the network does not settle (a message loop?)")
                self._process(self._queue.popleft())
        finally:
            self._flushing = False
        return steps

    def close_link(self, connection: int) -> None:
        """Close a stream link from whichever side; the other end hears of it after the
        bytes already in flight (a FIN follows the data)."""
        link = self._links.get(connection)
        if link is not None and link.alive:
            self._close(link, by=None)

    def _close(self, link: _Link, by: _Endpoint | None) -> None:
        link.alive = False
        del self._links[link.id]
        for end in link.ends:
            if end is not by:
                self._enqueue(_Closed(end, link))

    def _process(self, item: _Delivery | _Failure | _Closed) -> None:
        if isinstance(item, _Delivery):
            item.to._receive(item.packet.data, item.packet.source, item.link)
        elif isinstance(item, _Failure):
            item.to._transport_error(item.peer, item.error)
        else:
            item.to._link_closed(item.link)

    def _enqueue(self, item: _Delivery | _Failure | _Closed) -> None:
        self._queue.append(item)
        if self.delivery == "sync":
            self.flush()
        elif self.delivery == "loop" and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    # ------------------------------------------------------------------- sending

    def _send(self, sender: _Endpoint, data: bytes, peer: Peer) -> None:
        if not 0 < peer.port < 65536:
            raise AddressError(f"invalid port {peer.port}")
        if sender.reliable:
            self._send_stream(sender, data, peer)
        else:
            self._send_datagram(sender, data, peer)

    def _send_datagram(self, sender: _Endpoint, data: bytes, peer: Peer) -> None:
        source = Peer(sender.name, sender.host, sender.port)
        packet = Packet(data, source, (peer.host, peer.port))
        self.wire.append(packet)
        to = self._endpoints.get((sender.name, peer.host, peer.port))
        fault = self._pattern[self._datagrams % len(self._pattern)] if self._pattern else "."
        self._datagrams += 1
        if to is None or fault == "x":
            self.lost += 1
            return
        delivery = _Delivery(packet, to, None)
        held, self._held = self._held, None
        if fault == "r":
            self._held = delivery
        else:
            self._enqueue(delivery)
            if fault == "2":
                self._enqueue(delivery)
        if held is not None:
            self._enqueue(held)

    def _send_stream(self, sender: _Endpoint, data: bytes, peer: Peer) -> None:
        link = self._link_for(sender, peer)
        if link is None:
            # Like a refused connect: reported later, never from inside send().
            refused = ConnectFailed(f"connection refused by {peer.host}:{peer.port}")
            self._enqueue(_Failure(sender, peer, refused))
            return
        source = Peer(sender.name, sender.host, sender.port, link.id)
        packet = Packet(data, source, (peer.host, peer.port))
        self.wire.append(packet)
        self._enqueue(_Delivery(packet, link.other(sender), link))

    def _link_for(self, sender: _Endpoint, peer: Peer) -> _Link | None:
        if peer.connection is not None:
            link = self._links.get(peer.connection)
            if link is not None and sender in link.ends:
                return link
        to = self._endpoints.get((sender.name, peer.host, peer.port))
        if to is None:
            return None
        for link in reversed(self._links.values()):
            if sender in link.ends and link.other(sender) is to:
                return link  # reuse a live link, whoever opened it
        link = _Link(next(self._link_ids), (sender, to))
        self._links[link.id] = link
        return link


class QueueSink:
    """A :class:`~pbx.transport.base.MessageSink` that queues what it is given: the
    stand-in for the stack in adapter tests (``await sink.next_message()``)."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[tuple[Request | Response, Peer]] = asyncio.Queue()
        self.errors: asyncio.Queue[tuple[Peer, TransportError]] = asyncio.Queue()

    def on_message(self, message: Request | Response, source: Peer) -> None:
        self.messages.put_nowait((message, source))

    def on_transport_error(self, peer: Peer, error: TransportError) -> None:
        self.errors.put_nowait((peer, error))

    async def next_message(self, timeout: float = 5.0) -> tuple[Request | Response, Peer]:
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def next_error(self, timeout: float = 5.0) -> tuple[Peer, TransportError]:
        return await asyncio.wait_for(self.errors.get(), timeout)
