"""The TCP transport on real loopback sockets (127.0.0.1 and ::1 only): framing, keep-alive,
connection reuse, failures, idle close and the connection limit."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from support.sip_messages import INVITE, REGISTER, RESPONSE_200

from pbx.sip.events import Peer, Transmit
from pbx.sip.message import Request, Response, make_response
from pbx.sip.parser import Limits, StreamFramer
from pbx.transport.base import (
    ConnectFailed,
    ConnectionLimit,
    TransportManager,
    TransportOptions,
    WriteBufferFull,
)
from pbx.transport.memory import QueueSink
from pbx.transport.tcp import TcpTransport

pytestmark = pytest.mark.timeout(30)
TIMEOUT = 5.0

NO_LENGTH = REGISTER.replace(b"Content-Length: 0\r\n", b"")


class Client:
    """A raw TCP peer: writes bytes as told, reads whole messages with its own framer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.framer = StreamFramer()

    @classmethod
    async def connect(cls, address: tuple[str, int]) -> Client:
        return cls(*await asyncio.open_connection(*address))

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.writer.get_extra_info("sockname")[:2]
        return host, port

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def message(self) -> Request | Response:
        while (message := self.framer.next_message()) is None:
            data = await asyncio.wait_for(self.reader.read(65536), TIMEOUT)
            assert data, "closed by the other side"
            self.framer.feed(data)
        return message

    async def closed_by_peer(self) -> bytes:
        """Read until EOF (or reset); returns what came before it."""
        out = b""
        try:
            while data := await asyncio.wait_for(self.reader.read(65536), TIMEOUT):
                out += data
        except ConnectionResetError:
            pass
        return out

    def close(self) -> None:
        self.writer.close()


@dataclass
class Server:
    """A raw TCP server playing a remote proxy: counts connections, frames what arrives."""

    connections: list[asyncio.StreamWriter] = field(default_factory=list)
    inbox: asyncio.Queue[tuple[Request | Response, int]] = field(default_factory=asyncio.Queue)
    closed: asyncio.Queue[int] = field(default_factory=asyncio.Queue)  # indexes, at EOF
    server: asyncio.Server | None = None

    async def start(self, host: str = "127.0.0.1") -> tuple[str, int]:
        self.server = await asyncio.start_server(self._serve, host, 0)
        address: tuple[str, int] = self.server.sockets[0].getsockname()[:2]
        return address

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = len(self.connections)
        self.connections.append(writer)
        framer = StreamFramer()
        while data := await reader.read(65536):
            framer.feed(data)
            while (message := framer.next_message()) is not None:
                self.inbox.put_nowait((message, index))
        self.closed.put_nowait(index)
        writer.close()

    async def message(self) -> tuple[Request | Response, int]:
        return await asyncio.wait_for(self.inbox.get(), TIMEOUT)

    async def close(self) -> None:
        for writer in self.connections:
            writer.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@dataclass
class Setup:
    sink: QueueSink
    manager: TransportManager
    tcp: TcpTransport
    clients: list[Client] = field(default_factory=list)

    @property
    def address(self) -> tuple[str, int]:
        return self.tcp.local_address

    async def client(self) -> Client:
        client = await Client.connect(self.address)
        self.clients.append(client)
        return client

    async def close(self) -> None:
        for client in self.clients:
            client.close()
        await self.manager.close()


async def setup(host: str = "127.0.0.1", **options: Any) -> Setup:
    sink = QueueSink()
    manager = TransportManager(sink)
    tcp = await TcpTransport.listen(sink, host, 0, TransportOptions(**options))
    manager.add(tcp)
    return Setup(sink, manager, tcp)


@pytest.fixture
async def s() -> AsyncIterator[Setup]:
    setup_ = await setup()
    yield setup_
    await setup_.close()


# --------------------------------------------------------------------------------- framing


async def test_request_carries_the_connection_it_came_on(s: Setup) -> None:
    client = await s.client()
    await client.send(INVITE)
    message, source = await s.sink.next_message()
    assert isinstance(message, Request)
    assert message.body.startswith(b"v=0")
    assert (source.transport, source.host, source.port) == ("TCP", *client.address)
    assert source.connection is not None
    assert s.tcp.owns(source.connection)
    assert s.tcp.stats.connections_accepted == 1


async def test_two_messages_in_one_write(s: Setup) -> None:
    client = await s.client()
    await client.send(REGISTER + INVITE)
    first, _ = await s.sink.next_message()
    second, _ = await s.sink.next_message()
    assert [m.method for m in (first, second) if isinstance(m, Request)] == ["REGISTER", "INVITE"]


async def test_one_message_split_across_many_writes(s: Setup) -> None:
    client = await s.client()
    for i in range(0, len(INVITE), 7):
        await client.send(INVITE[i : i + 7])
    message, _ = await s.sink.next_message()
    assert isinstance(message, Request)
    assert message.body == INVITE.split(b"\r\n\r\n", 1)[1]
    assert s.sink.messages.empty()


async def test_missing_content_length_answers_400_then_closes(s: Setup) -> None:
    client = await s.client()
    await client.send(NO_LENGTH)
    rest = await client.closed_by_peer()
    framer = StreamFramer()
    framer.feed(rest)
    answer = framer.next_message()
    assert isinstance(answer, Response)
    assert answer.status == 400
    assert answer.call_id == "1j9FpLxk3uxtm8tn@192.0.2.10"
    assert s.sink.messages.empty()
    assert s.tcp.connection_count == 0


async def test_unframeable_header_block_closes_without_answer() -> None:
    s = await setup(limits=Limits(max_message=2000))
    try:
        client = await s.client()
        await client.send(b"INVITE sip:x SIP/2.0\r\nX-Pad: " + b"a" * 3000)
        assert await client.closed_by_peer() == b""
        assert (s.tcp.stats.parse_errors, s.tcp.stats.dropped) == (1, 1)
    finally:
        await s.close()


async def test_bad_message_with_good_framing_keeps_the_connection(s: Setup) -> None:
    client = await s.client()
    broken = REGISTER.replace(b"Max-Forwards: 70", b"Max-Forwards: many")
    await client.send(broken + INVITE)
    answer = await client.message()
    assert isinstance(answer, Response)
    assert answer.status == 400
    message, _ = await s.sink.next_message()
    assert isinstance(message, Request)
    assert message.method == "INVITE"


async def test_crlf_ping_gets_a_crlf_pong(s: Setup) -> None:
    client = await s.client()
    await client.send(b"\r\n\r\n")
    pong = await asyncio.wait_for(client.reader.readexactly(2), TIMEOUT)
    assert pong == b"\r\n"
    await client.send(b"\r\n\r\n" + REGISTER)  # a ping right before a message
    assert await asyncio.wait_for(client.reader.readexactly(2), TIMEOUT) == b"\r\n"
    await s.sink.next_message()
    assert s.tcp.stats.keepalives == 2


# ------------------------------------------------------------------------ connection reuse


async def test_answer_goes_back_on_the_same_connection(s: Setup) -> None:
    client = await s.client()
    await client.send(REGISTER)
    request, source = await s.sink.next_message()
    assert isinstance(request, Request)
    s.manager.send(Transmit(bytes(make_response(request, 200)), source))
    answer = await client.message()
    assert isinstance(answer, Response)
    assert answer.status == 200


async def test_request_to_a_peer_that_connected_reuses_its_connection(s: Setup) -> None:
    # The phone's connection is the only way to it through NAT: the address (no connection
    # id) must find it rather than try to connect to the phone's ephemeral port.
    client = await s.client()
    await client.send(REGISTER)
    _, source = await s.sink.next_message()
    s.manager.send(Transmit(INVITE, source.without_connection()))
    message = await client.message()
    assert isinstance(message, Request)
    assert message.method == "INVITE"
    assert s.tcp.stats.connections_opened == 0


async def test_requests_to_one_address_share_one_connection(s: Setup) -> None:
    server = Server()
    address = await server.start()
    try:
        peer = Peer("TCP", *address)
        s.manager.send(Transmit(REGISTER, peer))  # queued while connecting
        s.manager.send(Transmit(INVITE, peer))
        first, index1 = await server.message()
        second, index2 = await server.message()
        assert [m.method for m in (first, second) if isinstance(m, Request)] == [
            "REGISTER",
            "INVITE",
        ]
        s.manager.send(Transmit(REGISTER, peer))  # connected now: written at once
        _, index3 = await server.message()
        assert index1 == index2 == index3 == 0
        assert len(server.connections) == 1
        assert s.tcp.stats.connections_opened == 1
    finally:
        await server.close()


async def test_responses_on_an_outbound_connection_name_it(s: Setup) -> None:
    server = Server()
    address = await server.start()
    try:
        s.manager.send(Transmit(INVITE, Peer("TCP", *address)))
        await server.message()
        server.connections[0].write(RESPONSE_200)
        message, source = await s.sink.next_message()
        assert isinstance(message, Response)
        assert (source.host, source.port) == address
        assert source.connection is not None
        assert s.tcp.owns(source.connection)
    finally:
        await server.close()


async def test_dead_connection_id_falls_back_to_the_address(s: Setup) -> None:
    server = Server()
    address = await server.start()
    try:
        s.manager.send(Transmit(REGISTER, Peer("TCP", *address, connection=999_999)))
        _, index = await server.message()
        assert index == 0
    finally:
        await server.close()


# --------------------------------------------------------------------------------- failures


async def test_connect_refused_is_reported(s: Setup) -> None:
    # A bound socket that does not listen: connecting to it is refused (RST), and the port
    # cannot be taken by anyone else meanwhile.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        peer = Peer("TCP", *closed.getsockname())
        s.manager.send(Transmit(REGISTER, peer))
        s.manager.send(Transmit(INVITE, peer))  # queued on the same attempt: one report
        failed, error = await s.sink.next_error()
    assert failed == peer
    assert isinstance(error, ConnectFailed)
    assert s.sink.errors.empty()
    assert s.tcp.stats.send_errors == 2
    assert s.tcp.connection_count == 0


async def test_write_queue_is_bounded() -> None:
    s = await setup(max_write_buffer=len(REGISTER) + 10)
    server = Server()
    address = await server.start()
    try:
        peer = Peer("TCP", *address)
        s.manager.send(Transmit(REGISTER, peer))
        s.manager.send(Transmit(REGISTER, peer))  # over the bound while connecting
        failed, error = await s.sink.next_error()
        assert failed == peer
        assert isinstance(error, WriteBufferFull)
        await server.message()  # the first one still goes out
    finally:
        await server.close()
        await s.close()


# ------------------------------------------------------------------------ limits and idling


async def test_idle_connections_are_closed() -> None:
    s = await setup(idle_timeout=0.2, inbound_idle_timeout=0.2)
    server = Server()
    address = await server.start()
    try:
        client = await s.client()
        await client.send(REGISTER)
        s.manager.send(Transmit(REGISTER, Peer("TCP", *address)))
        await s.sink.next_message()
        await server.message()
        assert s.tcp.connection_count == 2
        assert await client.closed_by_peer() == b""  # inbound: closed by us
        assert await asyncio.wait_for(server.closed.get(), TIMEOUT) == 0  # outbound too
        assert s.tcp.connection_count == 0
    finally:
        await server.close()
        await s.close()


async def test_connection_limit() -> None:
    s = await setup(max_connections=2)
    try:
        first, second = await s.client(), await s.client()
        for client in (first, second):
            await client.send(REGISTER)
            await s.sink.next_message()
        third = await s.client()
        assert await third.closed_by_peer() == b""
        assert s.tcp.stats.connections_rejected == 1
        s.manager.send(Transmit(REGISTER, Peer("TCP", "127.0.0.1", 9)))
        _, error = await s.sink.next_error()
        assert isinstance(error, ConnectionLimit)
        await first.send(INVITE)  # the admitted ones still work
        await s.sink.next_message()
    finally:
        await s.close()


# ------------------------------------------------------------------------- IPv6 and TLS


async def test_ipv6_loopback() -> None:
    s = await setup("::1")
    try:
        assert s.manager.local_address("TCP", ipv6=True)[0] == "::1"
        client = await s.client()
        await client.send(REGISTER)
        request, source = await s.sink.next_message()
        assert isinstance(request, Request)
        assert source.host == "::1"
        s.manager.send(Transmit(bytes(make_response(request, 200)), source))
        answer = await client.message()
        assert isinstance(answer, Response)
        assert answer.status == 200
    finally:
        await s.close()


async def test_an_ssl_context_makes_it_tls() -> None:
    sink = QueueSink()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # no certificate: only naming is checked
    tls = await TcpTransport.listen(sink, "127.0.0.1", 0, ssl=context)
    try:
        manager = TransportManager(sink)
        manager.add(tls)
        assert tls.name == "TLS"
        assert manager.local_address("TLS") == tls.local_address
    finally:
        await tls.close()


async def test_close_fails_what_is_still_queued(s: Setup) -> None:
    server = Server()
    address = await server.start()
    try:
        peer = Peer("TCP", *address)
        s.manager.send(Transmit(REGISTER, peer))
        await s.manager.close()  # before the connect completes
        failed, _ = await s.sink.next_error()
        assert failed == peer
    finally:
        await server.close()
