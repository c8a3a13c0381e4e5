"""The in-memory twin: delivery modes, deterministic faults, and stream links that behave like
TCP connections (ids, reuse, 400-then-close, ping/pong, refused connects)."""

from __future__ import annotations

import pytest
from support.sip_messages import INVITE, REGISTER, RESPONSE_200

from pbx.sip.events import Peer, Transmit
from pbx.sip.message import Request, Response, make_response
from pbx.sip.parser import StreamFramer, parse
from pbx.transport.base import ConnectFailed, TransportManager
from pbx.transport.memory import MemoryNetwork, QueueSink

PHONE = Peer("UDP", "10.0.0.2", 5062)


def messages(sink: QueueSink) -> list[Request | Response]:
    out = []
    while not sink.messages.empty():
        out.append(sink.messages.get_nowait()[0])
    return out


def numbered(n: int) -> bytes:
    return REGISTER.replace(b"CSeq: 1826", f"CSeq: {n}".encode())


def cseqs(sink: QueueSink) -> list[int]:
    return [m.cseq.seq for m in messages(sink)]


# ---------------------------------------------------------------------------- delivery


def test_manual_delivery_waits_for_flush() -> None:
    net = MemoryNetwork()
    sink = QueueSink()
    net.attach(sink, "10.0.0.1")
    phone = net.attach_raw("10.0.0.2", 5062)
    phone.send(REGISTER, "10.0.0.1", 5060)
    assert sink.messages.empty()
    assert net.in_flight == 1
    assert net.flush() == 1
    message, source = sink.messages.get_nowait()
    assert isinstance(message, Request)
    assert source == PHONE


def test_sync_delivery_happens_inside_send() -> None:
    net = MemoryNetwork(delivery="sync")
    sink = QueueSink()
    net.attach(sink, "10.0.0.1")
    net.attach_raw("10.0.0.2", 5062).send(REGISTER, "10.0.0.1", 5060)
    assert len(messages(sink)) == 1


async def test_loop_delivery_happens_on_the_event_loop() -> None:
    net = MemoryNetwork(delivery="loop")
    sink = QueueSink()
    net.attach(sink, "10.0.0.1")
    net.attach_raw("10.0.0.2", 5062).send(REGISTER, "10.0.0.1", 5060)
    assert sink.messages.empty()
    message, _ = await sink.next_message()
    assert isinstance(message, Request)


def test_two_stacks_talk_through_their_managers() -> None:
    net = MemoryNetwork(delivery="sync")
    alice_sink, bob_sink = QueueSink(), QueueSink()
    alice, bob = TransportManager(alice_sink), TransportManager(bob_sink)
    alice.add(net.attach(alice_sink, "10.0.0.1"))
    bob.add(net.attach(bob_sink, "10.0.0.9"))
    alice.send(Transmit(REGISTER, Peer("UDP", "10.0.0.9", 5060)))
    request, source = bob_sink.messages.get_nowait()
    assert isinstance(request, Request)
    bob.send(Transmit(bytes(make_response(request, 200)), source))
    answer, from_bob = alice_sink.messages.get_nowait()
    assert isinstance(answer, Response)
    assert answer.status == 200
    assert from_bob == Peer("UDP", "10.0.0.9", 5060)
    assert alice.local_address("UDP") == ("10.0.0.1", 5060)


def test_a_message_loop_is_caught() -> None:
    net = MemoryNetwork()

    class Echo(QueueSink):
        def on_message(self, message: Request | Response, source: Peer) -> None:
            transport.send(Transmit(bytes(message), source))

    transport = net.attach(Echo(), "10.0.0.1")
    other = net.attach(Echo(), "10.0.0.2")
    other.send(Transmit(REGISTER, Peer("UDP", "10.0.0.1", 5060)))
    with pytest.raises(RuntimeError, match="does not settle"):
        net.flush(max_steps=50)


# ------------------------------------------------------------------------------ faults


@pytest.mark.parametrize(
    ("pattern", "expected", "lost"),
    [
        ("", [1, 2, 3, 4], 0),
        ("x.", [2, 4], 2),  # every other datagram lost
        ("2...", [1, 1, 2, 3, 4], 0),  # the first one duplicated
        ("r...", [2, 1, 3, 4], 0),  # the first one overtaken by the second
        ("...r", [1, 2, 3, 4], 0),  # held with nothing after it: goes out at the end
    ],
)
def test_fault_patterns_are_deterministic(pattern: str, expected: list[int], lost: int) -> None:
    net = MemoryNetwork(pattern)
    sink = QueueSink()
    net.attach(sink, "10.0.0.1")
    phone = net.attach_raw("10.0.0.2", 5062)
    for n in (1, 2, 3, 4):
        phone.send(numbered(n), "10.0.0.1", 5060)
    net.flush()
    assert cseqs(sink) == expected
    assert net.lost == lost
    assert len(net.wire) == 4  # what was sent, faults or not


def test_datagram_to_nobody_is_lost_silently() -> None:
    net = MemoryNetwork()
    sink = QueueSink()
    transport = net.attach(sink, "10.0.0.1")
    transport.send(Transmit(REGISTER, Peer("UDP", "10.0.0.77", 5060)))
    net.flush()
    assert net.lost == 1
    assert sink.errors.empty()


def test_bad_pattern_and_busy_address_are_refused() -> None:
    with pytest.raises(ValueError, match="fault pattern"):
        MemoryNetwork("xq")
    net = MemoryNetwork()
    net.attach(QueueSink(), "10.0.0.1")
    with pytest.raises(ValueError, match="in use"):
        net.attach_raw("10.0.0.1", 5060)


def test_udp_parse_errors_behave_like_the_socket() -> None:
    net = MemoryNetwork()
    sink = QueueSink()
    transport = net.attach(sink, "10.0.0.1")
    phone = net.attach_raw("10.0.0.2", 5062)
    phone.send(REGISTER.replace(b"Max-Forwards: 70", b"Max-Forwards 70"), "10.0.0.1", 5060)
    phone.send(RESPONSE_200.replace(b"CSeq: 314159", b"CSeq: x"), "10.0.0.1", 5060)
    net.flush()
    assert sink.messages.empty()
    [answer] = [parse(p.data) for p in phone.received]
    assert isinstance(answer, Response)
    assert answer.status == 400
    assert (transport.stats.parse_errors, transport.stats.dropped) == (2, 1)


# ----------------------------------------------------------------------------- streams


def tcp_stack() -> tuple[MemoryNetwork, QueueSink, TransportManager]:
    net = MemoryNetwork()
    sink = QueueSink()
    manager = TransportManager(sink)
    manager.add(net.attach(sink, "10.0.0.1", 5060, "TCP"))
    return net, sink, manager


def test_stream_source_names_the_link_and_answers_reuse_it() -> None:
    net, sink, manager = tcp_stack()
    phone = net.attach_raw("10.0.0.2", 5062, "TCP")
    for i in range(0, len(INVITE), 50):  # one message in many chunks
        phone.send(INVITE[i : i + 50], "10.0.0.1", 5060)
    net.flush()
    request, source = sink.messages.get_nowait()
    assert isinstance(request, Request)
    assert source.connection is not None
    assert (source.transport, source.host, source.port) == ("TCP", "10.0.0.2", 5062)
    manager.send(Transmit(bytes(make_response(request, 180)), source))
    manager.send(Transmit(REGISTER, source.without_connection()))  # reuse by address
    net.flush()
    assert [p.source.connection for p in phone.received] == [source.connection] * 2


def test_stream_without_content_length_gets_400_then_close() -> None:
    net, sink, _manager = tcp_stack()
    phone = net.attach_raw("10.0.0.2", 5062, "TCP")
    phone.send(REGISTER.replace(b"Content-Length: 0\r\n", b""), "10.0.0.1", 5060)
    net.flush()
    framer = StreamFramer()
    framer.feed(b"".join(p.data for p in phone.received))
    answer = framer.next_message()
    assert isinstance(answer, Response)
    assert answer.status == 400
    assert phone.closed == [phone.received[0].source.connection]
    assert sink.messages.empty()


def test_stream_ping_gets_pong() -> None:
    net, _sink, _manager = tcp_stack()
    phone = net.attach_raw("10.0.0.2", 5062, "TCP")
    phone.send(b"\r\n\r\n", "10.0.0.1", 5060)
    net.flush()
    assert [p.data for p in phone.received] == [b"\r\n"]


def test_stream_connect_to_nobody_is_reported_later() -> None:
    net, sink, manager = tcp_stack()
    peer = Peer("TCP", "10.0.0.99", 5060)
    manager.send(Transmit(REGISTER, peer))
    assert sink.errors.empty()  # like a real connect: the failure comes asynchronously
    net.flush()
    failed, error = sink.errors.get_nowait()
    assert failed == peer
    assert isinstance(error, ConnectFailed)


def test_streams_are_never_faulted() -> None:
    net = MemoryNetwork("x")
    sink = QueueSink()
    net.attach(sink, "10.0.0.1", 5060, "TCP")
    phone = net.attach_raw("10.0.0.2", 5062, "TCP")
    phone.send(numbered(1) + numbered(2), "10.0.0.1", 5060)
    net.flush()
    assert cseqs(sink) == [1, 2]


async def test_closing_a_transport_closes_its_links() -> None:
    net, sink, manager = tcp_stack()
    phone = net.attach_raw("10.0.0.2", 5062, "TCP")
    phone.send(REGISTER, "10.0.0.1", 5060)
    net.flush()
    _, source = sink.messages.get_nowait()
    await manager.close()
    net.flush()
    assert phone.closed == [source.connection]
    phone.send(REGISTER, "10.0.0.1", 5060)
    net.flush()
    assert [type(e) for _, e in phone.errors] == [ConnectFailed]
