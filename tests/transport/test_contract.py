"""One contract for every transport: the same scenarios against real UDP and TCP sockets on
127.0.0.1 (on the stock loop and on uvloop) and against the in-memory twin.

A harness puts the transport under test inside a TransportManager fed to a QueueSink, and
gives a "raw" peer that sends and reads plain bytes, so malformed input can be sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Protocol

import pytest
import uvloop
from support.sip_messages import REGISTER, RESPONSE_200, sip

from pbx.sip.events import Peer, Transmit
from pbx.sip.message import Request, Response, make_response
from pbx.sip.parser import StreamFramer, parse
from pbx.transport.base import TransportManager
from pbx.transport.memory import MemoryNetwork, Packet, QueueSink
from pbx.transport.tcp import TcpTransport
from pbx.transport.udp import UdpTransport

TIMEOUT = 5.0

# A request whose header block is broken but whose Via, From, Call-ID and CSeq are usable:
# it must be answered with 400 (§8.1.1, §21.4.1).
BROKEN_REQUEST = REGISTER.replace(b"Expires: 3600\r\n", b"Expires 3600 no colon\r\n")
# A response without Via cannot be routed: dropped (§18.1.2), even though it frames fine.
BROKEN_RESPONSE = b"".join(
    line for line in RESPONSE_200.splitlines(keepends=True) if not line.startswith(b"Via")
)
OPTIONS = sip(
    """
OPTIONS sip:box.example.com SIP/2.0
Via: SIP/2.0/UDP 192.0.2.5:5060;branch=z9hG4bK-contract
Max-Forwards: 70
From: <sip:probe@example.com>;tag=c1
To: <sip:box.example.com>
Call-ID: contract-1@192.0.2.5
CSeq: 1 OPTIONS
Content-Length: 0

"""
)


class Harness(Protocol):
    sink: QueueSink
    manager: TransportManager
    transport: str  # "UDP" or "TCP"
    raw_address: tuple[str, int]  # where the raw peer's bytes come from

    async def raw_send(self, data: bytes) -> None: ...
    async def raw_message(self) -> Request | Response: ...


class _RealUdp:
    transport = "UDP"

    def __init__(self, sink: QueueSink, manager: TransportManager) -> None:
        self.sink, self.manager = sink, manager
        self._inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._raw: asyncio.DatagramTransport | None = None
        self.raw_address = ("", 0)

    async def start(self) -> None:
        inbox = self._inbox

        class Raw(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str | bytes | int, ...]) -> None:
                inbox.put_nowait(data)

        loop = asyncio.get_running_loop()
        self._raw, _ = await loop.create_datagram_endpoint(Raw, local_addr=("127.0.0.1", 0))
        self.raw_address = self._raw.get_extra_info("sockname")[:2]

    async def raw_send(self, data: bytes) -> None:
        assert self._raw is not None
        self._raw.sendto(data, self.manager.local_address("UDP"))

    async def raw_message(self) -> Request | Response:
        return parse(await asyncio.wait_for(self._inbox.get(), TIMEOUT))

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()


class _RealTcp:
    transport = "TCP"

    def __init__(self, sink: QueueSink, manager: TransportManager) -> None:
        self.sink, self.manager = sink, manager
        self._framer = StreamFramer()
        self.raw_address = ("", 0)

    async def start(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(
            *self.manager.local_address("TCP")
        )
        self.raw_address = self._writer.get_extra_info("sockname")[:2]

    async def raw_send(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def raw_message(self) -> Request | Response:
        while (message := self._framer.next_message()) is None:
            data = await asyncio.wait_for(self._reader.read(65536), TIMEOUT)
            assert data, "connection closed"
            self._framer.feed(data)
        return message

    def close(self) -> None:
        self._writer.close()


class _Memory:
    def __init__(self, sink: QueueSink, manager: TransportManager, transport: str) -> None:
        self.sink, self.manager, self.transport = sink, manager, transport
        self.network = MemoryNetwork(delivery="loop")
        manager.add(self.network.attach(sink, "10.0.0.1", 5060, transport))
        self._raw = self.network.attach_raw("10.0.0.2", 5062, transport)
        self.raw_address = self._raw.local_address
        self._inbox: asyncio.Queue[Packet] = asyncio.Queue()
        self._raw.on_receive = self._inbox.put_nowait
        self._framer = StreamFramer()

    async def raw_send(self, data: bytes) -> None:
        self._raw.send(data, "10.0.0.1", 5060)

    async def raw_message(self) -> Request | Response:
        if self.transport == "UDP":
            return parse((await asyncio.wait_for(self._inbox.get(), TIMEOUT)).data)
        while (message := self._framer.next_message()) is None:
            self._framer.feed((await asyncio.wait_for(self._inbox.get(), TIMEOUT)).data)
        return message


@asynccontextmanager
async def harness(kind: str) -> AsyncIterator[Harness]:
    sink = QueueSink()
    manager = TransportManager(sink)
    try:
        if kind == "udp":
            manager.add(await UdpTransport.listen(sink, "127.0.0.1", 0))
            udp = _RealUdp(sink, manager)
            await udp.start()
            try:
                yield udp
            finally:
                udp.close()
        elif kind == "tcp":
            manager.add(await TcpTransport.listen(sink, "127.0.0.1", 0))
            tcp = _RealTcp(sink, manager)
            await tcp.start()
            try:
                yield tcp
            finally:
                tcp.close()
        else:
            yield _Memory(sink, manager, "UDP" if kind == "memory-udp" else "TCP")
    finally:
        await manager.close()


# ------------------------------------------------------------------------------ scenarios


async def request_is_delivered_with_its_source(h: Harness) -> None:
    await h.raw_send(OPTIONS)
    message, source = await h.sink.next_message()
    assert isinstance(message, Request)
    assert message.method == "OPTIONS"
    assert (source.transport, source.host, source.port) == (h.transport, *h.raw_address)
    assert (source.connection is not None) == (h.transport == "TCP")
    assert h.manager.stats.received == 1


async def answer_goes_back_to_the_source(h: Harness) -> None:
    await h.raw_send(OPTIONS)
    request, source = await h.sink.next_message()
    assert isinstance(request, Request)
    h.manager.send(Transmit(bytes(make_response(request, 200)), source))
    answer = await h.raw_message()
    assert isinstance(answer, Response)
    assert answer.status == 200
    assert answer.call_id == "contract-1@192.0.2.5"
    assert h.manager.stats.sent == 1


async def broken_request_gets_400(h: Harness) -> None:
    await h.raw_send(BROKEN_REQUEST)
    answer = await h.raw_message()
    assert isinstance(answer, Response)
    assert answer.status == 400
    assert answer.call_id == "1j9FpLxk3uxtm8tn@192.0.2.10"
    assert answer.cseq.method == "REGISTER"
    assert h.sink.messages.empty()
    stats = h.manager.stats
    assert (stats.parse_errors, stats.received, stats.sent) == (1, 0, 1)


async def broken_response_is_dropped(h: Harness) -> None:
    await h.raw_send(BROKEN_RESPONSE)
    await h.raw_send(OPTIONS)  # still heard afterwards (the stream stays usable)
    message, _ = await h.sink.next_message()
    assert isinstance(message, Request)
    stats = h.manager.stats
    assert (stats.parse_errors, stats.dropped, stats.received, stats.sent) == (1, 1, 1, 0)


async def keepalive_is_not_a_message(h: Harness) -> None:
    await h.raw_send(b"\r\n\r\n")  # a ping on streams (answered there), noise on UDP
    await h.raw_send(OPTIONS)
    message, _ = await h.sink.next_message()
    assert isinstance(message, Request)
    stats = h.manager.stats
    assert (stats.keepalives, stats.parse_errors, stats.received) == (1, 0, 1)


async def transport_errors_are_reported(h: Harness) -> None:
    bad = Peer(h.transport, "127.0.0.1", 0)
    h.manager.send(Transmit(OPTIONS, bad))
    peer, _ = await h.sink.next_error()
    assert peer == bad
    assert h.manager.stats.send_errors == 1


SCENARIOS: list[Callable[[Harness], Awaitable[None]]] = [
    request_is_delivered_with_its_source,
    answer_goes_back_to_the_source,
    broken_request_gets_400,
    broken_response_is_dropped,
    keepalive_is_not_a_message,
    transport_errors_are_reported,
]
LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
TARGETS = [
    ("udp", "asyncio"),
    ("udp", "uvloop"),
    ("tcp", "asyncio"),
    ("tcp", "uvloop"),
    ("memory-udp", "asyncio"),
    ("memory-tcp", "asyncio"),
]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
@pytest.mark.parametrize(("kind", "loop"), TARGETS, ids=["-".join(t) for t in TARGETS])
def test_contract(kind: str, loop: str, scenario: Callable[[Harness], Awaitable[None]]) -> None:
    async def run() -> None:
        async with harness(kind) as h:
            await asyncio.wait_for(scenario(h), TIMEOUT * 2)

    # Each run gets its own loop of the chosen kind; pytest-asyncio only knows one.
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        runner.run(run())
