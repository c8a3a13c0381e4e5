"""The UDP transport (RFC 3261 §18.1.1, §18.2.1): one socket both receives and sends, so the
source port of everything we send is the box's SIP port (NAT bindings and rport rely on it)."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Protocol, cast

from pbx.sip.events import Peer, Transmit
from pbx.transport.base import (
    MessageSink,
    SendFailed,
    TransportError,
    TransportOptions,
    TransportStats,
    checked_address,
    is_ipv6,
    normalize_host,
    receive_datagram,
    report,
    source_host,
)

log = logging.getLogger(__name__)


class _DatagramSocket(Protocol):
    """What the datagram transports of both asyncio and uvloop offer (typeshed's
    ``DatagramTransport`` lacks ``get_write_buffer_size``)."""

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None: ...
    def get_write_buffer_size(self) -> int: ...
    def is_closing(self) -> bool: ...
    def close(self) -> None: ...


class UdpTransport(asyncio.DatagramProtocol):
    """A listening UDP socket. Build with :meth:`listen`."""

    name = "UDP"

    def __init__(self, sink: MessageSink, options: TransportOptions) -> None:
        self._sink = sink
        self._options = options
        self._transport: _DatagramSocket | None = None
        self._local: tuple[str, int] = ("", 0)
        self.stats = TransportStats()
        # Sees each datagram first; True means it took it (the core drops banned sources and
        # hands REGISTERs to its registrar workers this way). None: everything is parsed here.
        self.divert: Callable[[bytes, Peer], bool] | None = None

    @classmethod
    async def listen(
        cls, sink: MessageSink, host: str, port: int, options: TransportOptions | None = None
    ) -> UdpTransport:
        """Bind ``host:port``, an IP literal (port 0: any free port, see
        :attr:`local_address`)."""
        self = cls(sink, options or TransportOptions())
        host = normalize_host(host)
        # IPv6 sockets are IPv6 only, as asyncio makes them for TCP: "0.0.0.0" and "::" can
        # then be bound side by side, and IPv4 peers are served from the IPv4 socket.
        family = socket.AF_INET6 if is_ipv6(host) else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((host, port))
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            await loop.create_datagram_endpoint(lambda: self, sock=sock)
        except BaseException:
            sock.close()
            raise
        return self

    # -------------------------------------------------------------- asyncio protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(_DatagramSocket, transport)
        host, port = transport.get_extra_info("sockname")[:2]
        self._local = (host, port)

    def datagram_received(self, data: bytes, addr: tuple[str | bytes | int, ...]) -> None:
        source = Peer("UDP", source_host(str(addr[0])), int(addr[1]))
        if self.divert is not None and self.divert(data, source):
            return
        answer = receive_datagram(data, source, self._sink, self.stats, self._options.limits)
        if answer is not None:
            # A stateless error goes back where the request came from; good enough for a 400.
            try:
                self._sendto(answer, (source.host, source.port))
            except TransportError as exc:
                log.debug("%s", exc)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors and failed sends surface here without saying which datagram they were
        # about; the transaction layer's retransmissions and timeouts cover them.
        log.debug("UDP socket %s: %s", self._local, exc)

    # ------------------------------------------------------------------ Transport API

    @property
    def local_address(self) -> tuple[str, int]:
        return self._local

    def fileno(self) -> int:
        """The socket's descriptor, to share it with a worker process that sends from it."""
        if self._transport is None:
            raise SendFailed("the UDP socket is not open")
        return int(cast(asyncio.BaseTransport, self._transport).get_extra_info("socket").fileno())

    def owns(self, connection: int) -> bool:
        return False

    def send(self, transmit: Transmit) -> None:
        try:
            self._sendto(transmit.data, checked_address(transmit.peer))
        except TransportError as exc:
            self.stats.send_errors += 1
            report(self._sink, transmit.peer, exc)

    def _sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            raise SendFailed("the UDP socket is closed")
        if transport.get_write_buffer_size() + len(data) > self._options.max_write_buffer:
            # The kernel is not keeping up: lose it as the network would; SIP retransmits.
            self.stats.dropped += 1
            return
        try:
            transport.sendto(data, addr)
        except (OSError, ValueError) as exc:  # uvloop raises what asyncio reports later
            raise SendFailed(f"UDP send to {addr} failed: {exc}") from exc
        self.stats.sent += 1

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
