"""Stream transports: TCP, and TLS when given an ``ssl.SSLContext`` (RFC 3261 §18, §26.2).

Each connection has an integer id, reported as ``Peer.connection`` on the messages it
delivers. Sending prefers the connection named in the :class:`Transmit`, then any live
connection to the same address, whoever opened it (connection reuse, RFC 5923 in spirit), and
opens a new one only when there is none; bytes wait in a bounded queue while it connects.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import ssl as ssl_module
from typing import cast

from pbx.sip.events import Peer, Transmit
from pbx.transport.base import (
    ConnectFailed,
    ConnectionClosed,
    ConnectionLimit,
    MessageSink,
    StreamReceiver,
    TransportError,
    TransportOptions,
    TransportStats,
    WriteBufferFull,
    checked_address,
    normalize_host,
    report,
    source_host,
)

log = logging.getLogger(__name__)

# Ids are unique in the process, so the manager can tell which transport owns a connection.
_connection_ids = itertools.count(1)


class _State(enum.Enum):
    CONNECTING = "connecting"
    OPEN = "open"
    CLOSED = "closed"


class _Connection(asyncio.Protocol):
    """One connection: receives through a :class:`StreamReceiver`, writes with a bound."""

    def __init__(self, owner: TcpTransport, remote: tuple[str, int] | None, inbound: bool):
        self.owner = owner
        self.id = next(_connection_ids)
        self.remote = remote  # known at once when we connect; from the socket when accepted
        self.inbound = inbound
        self.state = _State.CONNECTING
        self.transport: asyncio.Transport | None = None
        self.receiver: StreamReceiver | None = None
        self.pending: list[Transmit] = []  # written while connecting
        self.pending_size = 0
        self.last_activity = 0.0
        self.idle_timer: asyncio.TimerHandle | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def usable(self) -> bool:
        if self.state is _State.CLOSED:
            return False
        return self.transport is None or not self.transport.is_closing()

    # ---------------------------------------------------------------- asyncio protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.owner._connection_made(self, cast(asyncio.Transport, transport))

    def data_received(self, data: bytes) -> None:
        if self.state is not _State.OPEN or self.receiver is None:
            return
        self.last_activity = asyncio.get_running_loop().time()
        if not self.receiver.feed(data):
            self.close()  # framing lost; close() still flushes the 400 written just before

    def eof_received(self) -> bool:
        return False  # the peer is done: close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            log.debug("connection %d to %s lost: %s", self.id, self.remote, exc)
        self.owner._forget(self)
        if not self.lost.done():
            self.lost.set_result(None)

    # ------------------------------------------------------------------------ sending

    def write(self, transmit: Transmit) -> None:
        data = transmit.data
        limit = self.owner.options.max_write_buffer
        if self.state is _State.CONNECTING:
            if self.pending_size + len(data) > limit:
                raise WriteBufferFull(f"{self.pending_size} bytes already wait for a connect")
            self.pending.append(transmit)
            self.pending_size += len(data)
            return
        transport = self.transport
        if transport is None or not self.usable:
            raise ConnectionClosed(f"connection {self.id} is closed")
        if transport.get_write_buffer_size() + len(data) > limit:
            raise WriteBufferFull(f"connection {self.id}: the peer is not reading")
        transport.write(data)
        self.owner.stats.sent += 1
        self.last_activity = asyncio.get_running_loop().time()

    def reply(self, data: bytes) -> None:
        """Pongs and stateless error answers: written as they come, not counted as sends."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    # ------------------------------------------------------------------------- idling

    def arm_idle_timer(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        self.idle_timer = loop.call_at(self.last_activity + timeout, self._idle_check, timeout)

    def _idle_check(self, timeout: float) -> None:
        # One timer per connection, re-armed lazily: activity only moves a timestamp.
        if self.state is _State.CLOSED:
            return
        deadline = self.last_activity + timeout
        if asyncio.get_running_loop().time() >= deadline:
            log.debug("closing idle connection %d to %s", self.id, self.remote)
            self.close()
        else:
            self.arm_idle_timer(timeout)

    def close(self) -> None:
        self.owner._forget(self)
        if self.transport is not None:
            self.transport.close()


class TcpTransport:
    """A listening stream socket and the connections it owns. Build with :meth:`listen`.

    ``ssl``: a server-side context; the transport then speaks TLS and reports itself as
    "TLS". ``client_ssl``: the context for connections we open (default: the system's
    default context, verifying the peer; ``server_hostname`` is the peer's address until the
    stack passes names down).
    """

    def __init__(
        self,
        sink: MessageSink,
        options: TransportOptions,
        ssl: ssl_module.SSLContext | None = None,
        client_ssl: ssl_module.SSLContext | None = None,
    ) -> None:
        self.name = "TCP" if ssl is None else "TLS"
        self.options = options
        self.stats = TransportStats()
        self._sink = sink
        self._ssl = ssl
        self._client_ssl = client_ssl
        self._server: asyncio.Server | None = None
        self._local: tuple[str, int] = ("", 0)
        self._connections: dict[int, _Connection] = {}
        # Live connections by remote address; dicts keep insertion order, the newest is last.
        self._by_address: dict[tuple[str, int], dict[int, _Connection]] = {}
        self._connects: set[asyncio.Task[None]] = set()
        self._closing = False

    @classmethod
    async def listen(
        cls,
        sink: MessageSink,
        host: str,
        port: int,
        options: TransportOptions | None = None,
        *,
        ssl: ssl_module.SSLContext | None = None,
        client_ssl: ssl_module.SSLContext | None = None,
    ) -> TcpTransport:
        """Listen on ``host:port``, an IP literal (port 0: any free port, see
        :attr:`local_address`). IPv6 sockets are IPv6 only (asyncio's default for servers)."""
        self = cls(sink, options or TransportOptions(), ssl, client_ssl)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self, None, inbound=True), normalize_host(host), port, ssl=ssl
        )
        host, port = self._server.sockets[0].getsockname()[:2]
        self._local = (host, port)
        return self

    # ------------------------------------------------------------------ Transport API

    @property
    def local_address(self) -> tuple[str, int]:
        return self._local

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def owns(self, connection: int) -> bool:
        return connection in self._connections

    def send(self, transmit: Transmit) -> None:
        try:
            self._connection_for(transmit.peer).write(transmit)
        except TransportError as exc:
            self.stats.send_errors += 1
            report(self._sink, transmit.peer, exc)

    async def close(self) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
        for task in self._connects:
            task.cancel()
        connections = list(self._connections.values())
        for conn in connections:
            self._fail_pending(conn, ConnectionClosed("transport closed"))
            conn.close()
        await asyncio.gather(*self._connects, return_exceptions=True)
        opened = [c.lost for c in connections if c.transport is not None]
        if opened:
            await asyncio.wait(opened, timeout=1.0)  # let the sockets close before we return
        if self._server is not None:
            await self._server.wait_closed()

    # ------------------------------------------------------------- choosing a connection

    def _connection_for(self, peer: Peer) -> _Connection:
        if peer.connection is not None:
            conn = self._connections.get(peer.connection)
            if conn is not None and conn.usable:
                return conn
        address = checked_address(peer)
        for conn in reversed(self._by_address.get(address, {}).values()):
            if conn.usable:
                return conn
        return self._open(address)

    def _open(self, address: tuple[str, int]) -> _Connection:
        if self._closing:
            raise ConnectionClosed("the transport is closed")
        if len(self._connections) >= self.options.max_connections:
            raise ConnectionLimit(f"{len(self._connections)} connections already open")
        conn = _Connection(self, address, inbound=False)
        self._remember(conn, address)
        task = asyncio.get_running_loop().create_task(self._connect(conn, address))
        self._connects.add(task)
        task.add_done_callback(self._connects.discard)
        return conn

    async def _connect(self, conn: _Connection, address: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        host, port = address
        context = self._client_context()
        try:
            await asyncio.wait_for(
                loop.create_connection(
                    lambda: conn,
                    host,
                    port,
                    ssl=context,
                    server_hostname=host if context is not None else None,
                ),
                self.options.connect_timeout,
            )
        except OSError as exc:  # refused, unreachable, TLS failure, timeout
            if conn.state is _State.CONNECTING:
                self._forget(conn)
                self._fail_pending(conn, ConnectFailed(f"connect to {host}:{port}: {exc}"))

    def _client_context(self) -> ssl_module.SSLContext | None:
        if self._ssl is None:
            return None
        if self._client_ssl is None:
            self._client_ssl = ssl_module.create_default_context()
        return self._client_ssl

    def _fail_pending(self, conn: _Connection, error: TransportError) -> None:
        pending, conn.pending, conn.pending_size = conn.pending, [], 0
        reported: set[Peer] = set()
        for transmit in pending:
            self.stats.send_errors += 1
            if transmit.peer not in reported:  # one report per peer, not per message
                reported.add(transmit.peer)
                report(self._sink, transmit.peer, error)

    # -------------------------------------------------------------- connection registry

    def _connection_made(self, conn: _Connection, transport: asyncio.Transport) -> None:
        loop = asyncio.get_running_loop()
        conn.transport = transport
        if self._closing or conn.state is _State.CLOSED:
            # Connected while the transport was closing, or after the attempt was given up.
            conn.state = _State.CLOSED
            transport.abort()
            return
        if conn.inbound:
            peername = transport.get_extra_info("peername")
            full = len(self._connections) >= self.options.max_connections
            if peername is None or full:  # no peer name: it is already gone
                self.stats.connections_rejected += 1 if full else 0
                conn.state = _State.CLOSED
                transport.abort()
                return
            conn.remote = (source_host(peername[0]), peername[1])
            self._remember(conn, conn.remote)
            self.stats.connections_accepted += 1
            timeout = self.options.inbound_idle_timeout
        else:
            self.stats.connections_opened += 1
            timeout = self.options.idle_timeout
        assert conn.remote is not None
        conn.state = _State.OPEN
        conn.last_activity = loop.time()
        source = Peer(self.name, conn.remote[0], conn.remote[1], conn.id)
        conn.receiver = StreamReceiver(
            source, self._sink, self.stats, self.options.limits, conn.reply
        )
        conn.arm_idle_timer(timeout)
        pending, conn.pending, conn.pending_size = conn.pending, [], 0
        for transmit in pending:
            try:
                conn.write(transmit)
            except TransportError as exc:
                self.stats.send_errors += 1
                report(self._sink, transmit.peer, exc)

    def _remember(self, conn: _Connection, address: tuple[str, int]) -> None:
        self._connections[conn.id] = conn
        self._by_address.setdefault(address, {})[conn.id] = conn

    def _forget(self, conn: _Connection) -> None:
        """Take a connection out of every lookup; safe to call more than once."""
        conn.state = _State.CLOSED
        if conn.idle_timer is not None:
            conn.idle_timer.cancel()
        self._connections.pop(conn.id, None)
        if conn.remote is not None:
            same = self._by_address.get(conn.remote)
            if same is not None:
                same.pop(conn.id, None)
                if not same:
                    del self._by_address[conn.remote]
