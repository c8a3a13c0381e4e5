"""Transport adapters (RFC 3261 §18): the thin asyncio ring around the sans-IO SIP core.

``TransportManager`` owns the listening sockets (UDP, TCP, TLS) and routes each outgoing
``Transmit``; the transports parse what arrives and hand messages to a ``MessageSink``.
``pbx.transport.memory`` is the in-memory twin for tests; ``install_best_loop`` picks uvloop.
"""

from pbx.transport.base import (
    AddressError,
    ConnectFailed,
    ConnectionClosed,
    ConnectionLimit,
    MessageSink,
    NoTransport,
    SendFailed,
    Transport,
    TransportError,
    TransportManager,
    TransportOptions,
    TransportStats,
    WriteBufferFull,
)
from pbx.transport.loop import best_loop_factory, install_best_loop
from pbx.transport.tcp import TcpTransport
from pbx.transport.udp import UdpTransport

__all__ = [
    "AddressError",
    "ConnectFailed",
    "ConnectionClosed",
    "ConnectionLimit",
    "MessageSink",
    "NoTransport",
    "SendFailed",
    "TcpTransport",
    "Transport",
    "TransportError",
    "TransportManager",
    "TransportOptions",
    "TransportStats",
    "UdpTransport",
    "WriteBufferFull",
    "best_loop_factory",
    "install_best_loop",
]
