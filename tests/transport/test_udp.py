"""The UDP transport on real loopback sockets (127.0.0.1 and ::1 only)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import cast

import pytest
from support.sip_messages import REGISTER, RESPONSE_200

from pbx.sip.events import Peer, Transmit
from pbx.sip.message import Request, Response
from pbx.sip.parser import Limits, parse
from pbx.transport.base import (
    AddressError,
    NoTransport,
    TransportManager,
    TransportOptions,
)
from pbx.transport.memory import QueueSink
from pbx.transport.udp import UdpTransport

pytestmark = pytest.mark.timeout(30)
TIMEOUT = 5.0


class RawUdp(asyncio.DatagramProtocol):
    """A plain socket playing the phone: sends bytes, queues what comes back with its source."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | bytes | int, ...]) -> None:
        self.inbox.put_nowait((data, (str(addr[0]), int(addr[1]))))

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port

    def send(self, data: bytes, to: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, to)

    async def receive(self) -> tuple[bytes, tuple[str, int]]:
        return await asyncio.wait_for(self.inbox.get(), TIMEOUT)


async def raw_socket(host: str = "127.0.0.1") -> RawUdp:
    loop = asyncio.get_running_loop()
    _, raw = await loop.create_datagram_endpoint(RawUdp, local_addr=(host, 0))
    return raw


@dataclass
class Setup:
    sink: QueueSink
    manager: TransportManager
    udp: UdpTransport
    raw: RawUdp

    @property
    def address(self) -> tuple[str, int]:
        return self.udp.local_address

    async def close(self) -> None:
        await self.manager.close()
        assert self.raw.transport is not None
        self.raw.transport.close()


async def setup(host: str = "127.0.0.1", options: TransportOptions | None = None) -> Setup:
    sink = QueueSink()
    manager = TransportManager(sink)
    udp = await UdpTransport.listen(sink, host, 0, options)
    manager.add(udp)
    return Setup(sink, manager, udp, await raw_socket(host))


@pytest.fixture
async def s() -> AsyncIterator[Setup]:
    setup_ = await setup()
    yield setup_
    await setup_.close()


async def test_port_zero_binds_a_real_port(s: Setup) -> None:
    host, port = s.manager.local_address("UDP")
    assert host == "127.0.0.1"
    assert port > 0
    assert (host, port) == s.udp.local_address
    assert s.udp.name == "UDP"


async def test_request_is_delivered_with_its_source(s: Setup) -> None:
    s.raw.send(REGISTER, s.address)
    message, source = await s.sink.next_message()
    assert isinstance(message, Request)
    assert message.method == "REGISTER"
    assert source == Peer("UDP", *s.raw.address)


async def test_sends_come_from_the_listening_port(s: Setup) -> None:
    # NAT bindings and rport rely on the box answering from its SIP port.
    s.manager.send(Transmit(RESPONSE_200, Peer("UDP", *s.raw.address)))
    data, source = await s.raw.receive()
    assert data == RESPONSE_200
    assert source == s.address
    assert s.udp.stats.sent == 1


async def test_malformed_request_gets_400_to_its_source(s: Setup) -> None:
    broken = REGISTER.replace(b"Max-Forwards: 70", b"Max-Forwards 70")
    s.raw.send(broken, s.address)
    data, source = await s.raw.receive()
    answer = parse(data)
    assert isinstance(answer, Response)
    assert answer.status == 400
    assert answer.headers.get("Via") == parse(REGISTER).headers.get("Via")
    assert source == s.address
    assert s.sink.messages.empty()
    assert (s.udp.stats.parse_errors, s.udp.stats.sent) == (1, 1)


async def test_malformed_response_is_dropped(s: Setup) -> None:
    s.raw.send(RESPONSE_200.replace(b"CSeq: 314159 INVITE", b"CSeq: x INVITE"), s.address)
    s.raw.send(RESPONSE_200, s.address)  # heard after it: the first one was looked at
    message, _ = await s.sink.next_message()
    assert isinstance(message, Response)
    assert message.cseq.seq == 314159
    assert s.raw.inbox.empty()
    assert (s.udp.stats.parse_errors, s.udp.stats.dropped, s.udp.stats.sent) == (1, 1, 0)


async def test_malformed_ack_is_not_answered(s: Setup) -> None:
    ack = (
        b"ACK sip:bob@192.0.2.4 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa\r\n"
        b"From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: ack1\r\nCSeq: 1 ACK\r\n"
        b"Max-Forwards: 70\r\nbroken line\r\nContent-Length: 0\r\n\r\n"
    )
    s.raw.send(ack, s.address)
    s.raw.send(REGISTER, s.address)
    await s.sink.next_message()
    assert s.raw.inbox.empty()
    assert (s.udp.stats.parse_errors, s.udp.stats.dropped) == (1, 1)


async def test_whitespace_datagrams_are_ignored(s: Setup) -> None:
    s.raw.send(b"\r\n", s.address)
    s.raw.send(b"\r\n\r\n", s.address)
    s.raw.send(REGISTER, s.address)
    await s.sink.next_message()
    assert s.raw.inbox.empty()  # no pong on UDP
    assert (s.udp.stats.keepalives, s.udp.stats.parse_errors) == (2, 0)


async def test_datagram_over_the_parser_limit_is_dropped() -> None:
    s = await setup(options=TransportOptions(limits=Limits(max_message=1000)))
    try:
        padded = REGISTER.replace(b"Expires: 3600", b"X-Pad: " + b"a" * 1200 + b"\r\nExpires: 1")
        s.raw.send(padded, s.address)
        s.raw.send(REGISTER, s.address)
        message, _ = await s.sink.next_message()
        assert message.expires == 3600
        assert s.raw.inbox.empty()
        assert (s.udp.stats.dropped, s.udp.stats.received) == (1, 1)
    finally:
        await s.close()


async def test_a_failing_sink_does_not_stop_the_socket(s: Setup) -> None:
    class Failing(QueueSink):
        def on_message(self, message: Request | Response, source: Peer) -> None:
            if isinstance(message, Request):
                raise RuntimeError("bug in the stack")
            super().on_message(message, source)

    sink = Failing()
    udp = await UdpTransport.listen(sink, "127.0.0.1", 0)
    try:
        s.raw.send(REGISTER, udp.local_address)
        s.raw.send(RESPONSE_200, udp.local_address)
        message, _ = await sink.next_message()
        assert isinstance(message, Response)
        assert udp.stats.received == 2
    finally:
        await udp.close()


@pytest.mark.parametrize(
    "peer", [Peer("UDP", "pbx.example.com", 5060), Peer("UDP", "127.0.0.1", 70000)]
)
async def test_unusable_address_is_a_transport_error(s: Setup, peer: Peer) -> None:
    # Names are resolved above the transport: no blocking DNS inside the event loop.
    s.manager.send(Transmit(REGISTER, peer))
    failed, error = await s.sink.next_error()
    assert failed == peer
    assert isinstance(error, AddressError)
    # The socket is still there (plain asyncio closes it on a bad port if not guarded).
    s.raw.send(REGISTER, s.address)
    await s.sink.next_message()


async def test_no_transport_for_the_address_family(s: Setup) -> None:
    peer = Peer("UDP", "::1", 5060)
    s.manager.send(Transmit(REGISTER, peer))
    failed, error = await s.sink.next_error()
    assert failed == peer
    assert isinstance(error, NoTransport)
    assert s.manager.stats.send_errors == 1


async def test_ipv6_loopback() -> None:
    s = await setup("::1")
    try:
        host, port = s.manager.local_address("UDP", ipv6=True)
        assert host == "::1"
        s.raw.send(REGISTER, (host, port))
        _message, source = await s.sink.next_message()
        assert source == Peer("UDP", "::1", s.raw.address[1])
        s.manager.send(Transmit(RESPONSE_200, Peer("UDP", "[::1]", source.port)))
        data, _ = await s.raw.receive()
        assert data == RESPONSE_200
    finally:
        await s.close()


async def test_manager_routes_by_address_family() -> None:
    sink = QueueSink()
    manager = TransportManager(sink)
    v4 = manager.add(await UdpTransport.listen(sink, "127.0.0.1", 0))
    v6 = manager.add(await UdpTransport.listen(sink, "::1", 0))
    raw4, raw6 = await raw_socket("127.0.0.1"), await raw_socket("::1")
    try:
        manager.send(Transmit(b"four", Peer("UDP", *raw4.address)))
        manager.send(Transmit(b"six", Peer("UDP", *raw6.address)))
        assert await raw4.receive() == (b"four", v4.local_address)
        assert await raw6.receive() == (b"six", v6.local_address)
        assert manager.local_address("UDP", ipv6=False) == v4.local_address
        assert manager.local_address("UDP", ipv6=True) == v6.local_address
        with pytest.raises(NoTransport):
            manager.local_address("TLS")
    finally:
        await manager.close()
        for raw in (raw4, raw6):
            assert raw.transport is not None
            raw.transport.close()
