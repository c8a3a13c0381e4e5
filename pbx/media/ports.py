"""RTP/RTCP port pairs from a configured range (RFC 3550 §11: RTP on an even port, RTCP on the
next odd one).

Allocating binds both sockets at once, so a port another program holds is found out then and
skipped, not when the first packet should flow. Released ports go to the back of the queue:
the pair used last is reused last, so stray packets of a finished call rarely reach a new one.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections import deque
from dataclasses import dataclass, field

#: DSCP EF (RFC 4594 "telephony"), so office switches that honour QoS prioritise the media.
TOS_EF = 46 << 2


class MediaError(Exception):
    """Base of the errors raised by :mod:`pbx.media`."""


class PortsExhausted(MediaError):
    """Every port pair of the range is in use (by the relay or by other programs)."""


class PortBindError(MediaError):
    """The bind address cannot be used at all (not a local address, permission denied)."""


@dataclass(eq=False, slots=True)
class PortPair:
    """Two bound, non-blocking UDP sockets: RTP on ``rtp_port`` (even), RTCP on the next."""

    host: str
    rtp_port: int
    rtp_socket: socket.socket = field(repr=False)
    rtcp_socket: socket.socket = field(repr=False)

    @property
    def rtcp_port(self) -> int:
        return self.rtp_port + 1


class PortAllocator:
    """Hands out :class:`PortPair` s bound on ``host`` with RTP ports in ``first``..``last``
    (inclusive; the RTCP port ``rtp + 1`` must fit too)."""

    def __init__(
        self,
        host: str,
        first: int,
        last: int,
        *,
        tos: int | None = TOS_EF,
        receive_buffer: int | None = None,
    ) -> None:
        try:
            address = ipaddress.ip_address(host)
        except ValueError as exc:
            raise PortBindError(f"bind address {host!r} is not an IP address") from exc
        first += first % 2  # RTP ports are even
        if not 0 < first < last <= 65535:
            raise ValueError(f"port range {first}-{last} holds no RTP/RTCP pair")
        self.host = str(address)
        self.family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        self.first = first
        self.last = last
        self._tos = tos
        self._receive_buffer = receive_buffer
        self._free: deque[int] = deque(range(first, last, 2))  # each with rtp + 1 <= last
        self._in_use: dict[int, PortPair] = {}
        self.capacity = len(self._free)

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    def allocate(self) -> PortPair:
        """Bind the next free pair. Raises :class:`PortsExhausted` when none is left."""
        busy = 0
        for _ in range(len(self._free)):
            port = self._free.popleft()
            pair = self._bind_pair(port)
            if pair is None:
                busy += 1
                self._free.append(port)  # held by someone else now; maybe free later
                continue
            self._in_use[port] = pair
            return pair
        raise PortsExhausted(
            f"no free RTP/RTCP port pair on {self.host} ports {self.first}-{self.last}: "
            f"{len(self._in_use)} pairs in use by the relay, {busy} held by other programs"
        )

    def release(self, pair: PortPair) -> None:
        """Close the pair's sockets and return its ports; releasing twice is harmless.

        Sockets handed to an asyncio transport must be closed through the transport first
        (and ``connection_lost`` awaited): the transport owns the file descriptor then.
        """
        if self._in_use.get(pair.rtp_port) is not pair:
            return
        del self._in_use[pair.rtp_port]
        pair.rtp_socket.close()
        pair.rtcp_socket.close()
        self._free.append(pair.rtp_port)

    def _bind_pair(self, port: int) -> PortPair | None:
        rtp = self._bind(port)
        if rtp is None:
            return None
        rtcp = self._bind(port + 1)
        if rtcp is None:
            rtp.close()
            return None
        return PortPair(self.host, port, rtp, rtcp)

    def _bind(self, port: int) -> socket.socket | None:
        sock = socket.socket(self.family, socket.SOCK_DGRAM)
        try:
            if self.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((self.host, port))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                return None
            raise PortBindError(f"cannot bind {self.host} port {port}: {exc}") from exc
        sock.setblocking(False)
        self._set_options(sock)
        return sock

    def _set_options(self, sock: socket.socket) -> None:
        try:
            if self._tos is not None:
                if self.family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, self._tos)
                else:
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, self._tos)
            if self._receive_buffer is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._receive_buffer)
        except OSError:  # a nicety: media flows without it
            pass
