"""The media relay end to end with fake phones (UDP sockets on 127.0.0.1), on both loops:
relaying both ways with bytes untouched, latching behind NAT, strangers, re-INVITE, latching
policies, dead media, taps, DTMF, RTCP, counters and clean-up."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from pbx.media.ports import PortsExhausted
from pbx.media.relay import (
    Direction,
    InvalidRemote,
    LatchPolicy,
    Leg,
    MediaRelay,
    MediaSession,
    TapClosed,
)
from pbx.rtp.packet import ReceiverReport, ReportBlock, RtpPacket, TelephoneEvent, build_rtcp

TIMEOUT = 2.0
HOST = "127.0.0.1"


class Phone(asyncio.DatagramProtocol):
    """A UDP socket that records what it receives (and from where)."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def open(cls, host: str = HOST) -> Phone:
        loop = asyncio.get_running_loop()
        _, phone = await loop.create_datagram_endpoint(cls, local_addr=(host, 0))
        return phone

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.received.put_nowait((data, (addr[0], addr[1])))

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port

    def send(self, data: bytes, to: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, to)

    async def recv(self) -> tuple[bytes, tuple[str, int]]:
        return await asyncio.wait_for(self.received.get(), TIMEOUT)

    async def recv_all(self, count: int) -> list[bytes]:
        return [(await self.recv())[0] for _ in range(count)]

    async def nothing(self, wait: float = 0.15) -> None:
        await asyncio.sleep(wait)
        assert self.received.empty(), f"unexpected {self.received.get_nowait()!r}"

    def close(self) -> None:
        assert self.transport is not None
        self.transport.close()


def rtp(seq: int, *, ssrc: int = 0x11111111, pt: int = 0, payload: bytes = b"") -> bytes:
    return bytes(RtpPacket(pt, seq, seq * 160, ssrc, payload=payload or bytes([seq % 256]) * 160))


async def settle() -> None:
    """Let packets on loopback be delivered and handled (a few loop iterations)."""
    for _ in range(5):
        await asyncio.sleep(0.01)


@pytest.fixture
async def relay(port_range: tuple[int, int]) -> AsyncIterator[MediaRelay]:
    async with MediaRelay(HOST, port_range, dead_after=60) as relay:
        yield relay


@pytest.fixture
async def phones() -> AsyncIterator[tuple[Phone, Phone]]:
    a, b = await Phone.open(), await Phone.open()
    yield a, b
    a.close()
    b.close()


async def call(relay: MediaRelay, a: Phone, b: Phone) -> MediaSession:
    session = await relay.create_session("test")
    session.a.set_remote(*a.address)
    session.b.set_remote(*b.address)
    return session


# ------------------------------------------------------------------------------ relaying


async def test_relays_both_ways_with_bytes_unchanged(
    relay: MediaRelay, phones: tuple[Phone, Phone]
) -> None:
    a, b = phones
    session = await call(relay, a, b)
    sent_by_a = [rtp(i, ssrc=0xAAAA) for i in range(50)]
    sent_by_b = [rtp(1000 + i, ssrc=0xBBBB, pt=8) for i in range(50)]
    for pa, pb in zip(sent_by_a, sent_by_b, strict=True):
        a.send(pa, session.a.local_address)
        b.send(pb, session.b.local_address)
    assert await b.recv_all(50) == sent_by_a
    assert await a.recv_all(50) == sent_by_b
    # Each phone hears the other from the box's port it sends to (symmetric RTP).
    a.send(rtp(50, ssrc=0xAAAA), session.a.local_address)
    assert (await b.recv())[1] == session.b.local_address
    counters = session.counters()
    assert counters.a.received_packets == 51
    assert counters.a.received_bytes == 51 * 172
    assert counters.b.sent_packets == 51
    assert counters.b.sent_bytes == 51 * 172
    assert counters.b.received_packets == counters.a.sent_packets == 50
    assert counters.a.strangers == counters.b.strangers == 0
    assert counters.a.stats.lost == counters.b.stats.lost == 0
    assert counters.a.stats.ssrc == 0xAAAA
    ingress, egress = counters.direction(Direction.B_TO_A)
    assert (ingress.name, egress.name) == ("B", "A")


async def test_loss_and_jitter_counters(relay: MediaRelay, phones: tuple[Phone, Phone]) -> None:
    a, b = phones
    session = await call(relay, a, b)
    for seq in [*range(10), *range(11, 20)]:  # seq 10 lost on the way in
        a.send(rtp(seq), session.a.local_address)
    await b.recv_all(19)
    stats = session.a.counters().stats
    assert stats.lost == 1
    assert stats.expected == 19  # A.1 probation: counted from the second packet
    assert stats.jitter_ms >= 0


async def test_before_latching_media_goes_to_the_sdp_address(
    relay: MediaRelay, phones: tuple[Phone, Phone]
) -> None:
    a, b = phones
    session = await call(relay, a, b)
    b.send(rtp(1), session.b.local_address)
    data, source = await a.recv()
    assert data == rtp(1)
    assert source == session.a.local_address
    assert not session.a.latched


async def test_latches_to_the_real_source_behind_nat(
    relay: MediaRelay, phones: tuple[Phone, Phone]
) -> None:
    a_sdp, b = phones
    a_nat = await Phone.open()  # phone A's real (mapped) address differs from its SDP
    try:
        session = await call(relay, a_sdp, b)
        b.send(rtp(1), session.b.local_address)
        assert (await a_sdp.recv())[0] == rtp(1)  # nothing heard from A yet: SDP address
        a_nat.send(rtp(100), session.a.local_address)
        assert (await b.recv())[0] == rtp(100)
        assert session.a.latched_source == a_nat.address
        assert session.a.destination == a_nat.address
        b.send(rtp(2), session.b.local_address)
        assert (await a_nat.recv())[0] == rtp(2)  # answered to the real source
        await a_sdp.nothing()
        assert session.a.counters().latches == 1
    finally:
        a_nat.close()


async def test_strangers_are_dropped_after_latching(
    relay: MediaRelay, phones: tuple[Phone, Phone]
) -> None:
    a, b = phones
    stranger = await Phone.open()
    try:
        session = await call(relay, a, b)
        a.send(rtp(1), session.a.local_address)
        await b.recv()
        for seq in range(5):
            stranger.send(rtp(seq, ssrc=0xBAD), session.a.local_address)
        a.send(rtp(2), session.a.local_address)
        assert (await b.recv())[0] == rtp(2)
        await b.nothing()
        assert session.a.counters().strangers == 5
        assert session.a.latched_source == a.address
    finally:
        stranger.close()


async def test_relatch_after_the_latched_source_went_silent(
    port_range: tuple[int, int], phones: tuple[Phone, Phone]
) -> None:
    a, b = phones
    roamed = await Phone.open()  # the same phone after a NAT rebinding
    async with MediaRelay(HOST, port_range, relatch_after=0.2) as relay:
        session = await call(relay, a, b)
        a.send(rtp(1), session.a.local_address)
        await b.recv()
        roamed.send(rtp(2), session.a.local_address)
        await b.nothing(0.05)  # too soon: a stranger
        await asyncio.sleep(0.25)
        roamed.send(rtp(3), session.a.local_address)
        assert (await b.recv())[0] == rtp(3)
        assert session.a.latched_source == roamed.address
        b.send(rtp(9), session.b.local_address)
        assert (await roamed.recv())[0] == rtp(9)
        assert session.a.counters().strangers == 1
        assert session.a.counters().latches == 2
    roamed.close()


async def test_reinvite_changes_the_remote(relay: MediaRelay, phones: tuple[Phone, Phone]) -> None:
    a, b = phones
    b2 = await Phone.open()  # e.g. the call was transferred to another device
    try:
        session = await call(relay, a, b)
        b.send(rtp(1), session.b.local_address)
        await a.recv()
        assert session.b.latched
        session.b.set_remote(*b.address)  # a re-INVITE with the same SDP keeps the latch
        assert session.b.latched
        session.b.set_remote(*b2.address)
        assert not session.b.latched
        assert session.b.destination == b2.address
        a.send(rtp(2), session.a.local_address)
        assert (await b2.recv())[0] == rtp(2)
        await b.nothing(0.05)
        b2.send(rtp(3, ssrc=0x2222), session.b.local_address)
        assert (await a.recv())[0] == rtp(3, ssrc=0x2222)
        assert session.b.latched_source == b2.address
    finally:
        b2.close()


async def test_open_policy_rejects_other_ips_when_the_sdp_address_is_public(
    relay: MediaRelay, phones: tuple[Phone, Phone]
) -> None:
    a, b = phones
    session = await call(relay, a, b)
    session.a.set_remote("8.8.8.8", 4000)  # only A's own IP may latch now; nothing is sent
    a.send(rtp(1), session.a.local_address)
    await b.nothing()
    assert session.a.counters().strangers == 1
    assert not session.a.latched


async def test_strict_policy_needs_the_sdp_ip(
    port_range: tuple[int, int], phones: tuple[Phone, Phone]
) -> None:
    a, b = phones
    async with MediaRelay(HOST, port_range, latching=LatchPolicy.STRICT) as relay:
        session = await call(relay, a, b)
        session.a.set_remote("127.0.0.2", a.address[1])  # private, but STRICT wants this IP
        a.send(rtp(1), session.a.local_address)
        await b.nothing()
        assert session.a.counters().strangers == 1
        session.a.set_remote(*a.address)
        a.send(rtp(2), session.a.local_address)
        assert (await b.recv())[0] == rtp(2)


async def test_a_leg_can_have_its_own_policy(
    relay: MediaRelay, phones: tuple[Phone, Phone]
) -> None:
    a, b = phones
    session = await call(relay, a, b)
    session.a.set_remote("127.0.0.2", a.address[1])  # not A's source IP; OPEN would accept
    session.a.latching = LatchPolicy.STRICT  # e.g. a trunk: media only from its SDP address
    a.send(rtp(1), session.a.local_address)
    await b.nothing()
    assert session.a.counters().strangers == 1
    assert session.b.latching is LatchPolicy.OPEN


async def test_latching_off_always_sends_to_the_sdp_address(
    port_range: tuple[int, int], phones: tuple[Phone, Phone]
) -> None:
    a, b = phones
    elsewhere = await Phone.open()
    async with MediaRelay(HOST, port_range, latching=LatchPolicy.OFF) as relay:
        session = await call(relay, a, b)
        elsewhere.send(rtp(1), session.a.local_address)
        assert (await b.recv())[0] == rtp(1)
        b.send(rtp(2), session.b.local_address)
        assert (await a.recv())[0] == rtp(2)
        await elsewhere.nothing(0.05)
        assert not session.a.latched
    elsewhere.close()


async def test_rejected_stream_and_unknown_peer_count_no_destination(
    relay: MediaRelay, phones: tuple[Phone, Phone]
) -> None:
    a, _ = phones
    session = await relay.create_session()
    session.a.set_remote(*a.address)
    a.send(rtp(1), session.a.local_address)  # B has no SDP yet
    await settle()
    assert session.a.counters().no_destination == 1
    session.b.set_remote(HOST, 0)  # m=audio 0: rejected
    assert session.b.destination is None
    session.b.set_remote("0.0.0.0", 4000)  # RFC 2543 hold: nowhere to send
    assert session.b.destination is None
    assert session.b.remote is None


async def test_non_rtp_datagrams_are_ignored(
    relay: MediaRelay, phones: tuple[Phone, Phone]
) -> None:
    a, b = phones
    session = await call(relay, a, b)
    a.send(b"\x00\x01\x00\x00" + bytes(16), session.a.local_address)  # STUN-like
    a.send(b"\x80", session.a.local_address)
    a.send(rtp(1), session.a.local_address)
    a.send(b"\x80\x00", session.a.local_address)  # from the latched source: still junk
    assert (await b.recv())[0] == rtp(1)
    await b.nothing(0.05)
    assert session.a.counters().ignored == 3


async def test_invalid_remotes(relay: MediaRelay) -> None:
    session = await relay.create_session()
    with pytest.raises(InvalidRemote, match="not an IP"):
        session.a.set_remote("phone.example.com", 4000)
    with pytest.raises(InvalidRemote, match="family"):
        session.a.set_remote("::1", 4000)
    with pytest.raises(InvalidRemote, match="range"):
        session.a.set_remote(HOST, 70000)
    with pytest.raises(InvalidRemote, match="direction"):
        session.a.set_direction("sideways")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- dead media


async def test_dead_media_callback(
    port_range: tuple[int, int], phones: tuple[Phone, Phone]
) -> None:
    a, b = phones
    dead: list[MediaSession] = []
    async with MediaRelay(HOST, port_range, dead_after=0.3, dead_check_interval=0.05) as relay:
        session = await relay.create_session(on_dead=dead.append)
        session.a.set_remote(*a.address)
        session.b.set_remote(*b.address)
        for seq in range(8):  # media flows for 0.4 s: not dead
            a.send(rtp(seq), session.a.local_address)
            await asyncio.sleep(0.05)
        assert dead == []
        last = session.last_activity
        assert last == session.a.counters().last_received
        await asyncio.sleep(0.45)
        assert dead == [session]  # once, not on every check
        assert relay.clock() - session.last_activity >= 0.3


async def test_held_session_is_not_dead(
    port_range: tuple[int, int], phones: tuple[Phone, Phone]
) -> None:
    a, b = phones
    dead: list[MediaSession] = []
    async with MediaRelay(HOST, port_range, dead_after=0.2, dead_check_interval=0.05) as relay:
        session = await relay.create_session(on_dead=dead.append)
        session.a.set_remote(*a.address, direction="sendonly")
        session.b.set_remote(*b.address, direction="recvonly")
        assert session.on_hold
        await asyncio.sleep(0.4)
        assert dead == []
        session.a.set_direction("sendrecv")
        session.b.set_direction("sendrecv")
        await asyncio.sleep(0.1)
        assert dead == []  # the silence is counted from the end of the hold
        await asyncio.sleep(0.3)
        assert dead == [session]


async def test_hold_keeps_relaying(relay: MediaRelay, phones: tuple[Phone, Phone]) -> None:
    a, b = phones
    session = await call(relay, a, b)
    session.a.set_direction("sendonly")
    a.send(rtp(1), session.a.local_address)  # music on hold from A's side
    assert (await b.recv())[0] == rtp(1)
    assert session.a.counters().received_packets == 1


# -------------------------------------------------------------------------------------- tap


async def test_tap_receives_both_directions_in_order(
    relay: MediaRelay, phones: tuple[Phone, Phone]
) -> None:
    a, b = phones
    session = await call(relay, a, b)
    tap = session.tap(100)
    expected = []
    for i in range(10):
        phone, leg, direction = (a, session.a, Direction.A_TO_B)
        if i % 3 == 2:
            phone, leg, direction = (b, session.b, Direction.B_TO_A)
        packet = rtp(i, ssrc=0xAAAA if phone is a else 0xBBBB)
        phone.send(packet, leg.local_address)
        expected.append((direction, packet))
        await settle()  # one at a time, so the arrival order is known
    items = [await asyncio.wait_for(tap.get(), TIMEOUT) for _ in range(10)]
    assert [(d, p) for d, _, p in items] == expected
    times = [t for _, t, _ in items]
    assert times == sorted(times)
    assert tap.dropped == 0


async def test_full_tap_drops_and_counts_without_slowing_media(
    relay: MediaRelay, phones: tuple[Phone, Phone]
) -> None:
    a, b = phones
    session = await call(relay, a, b)
    tap = session.tap(5)  # nobody reads it
    for seq in range(50):
        a.send(rtp(seq), session.a.local_address)
    assert await b.recv_all(50) == [rtp(seq) for seq in range(50)]
    assert tap.qsize() == 5
    assert tap.dropped == 45
    assert [p for _, _, p in await tap.get_batch()] == [rtp(seq) for seq in range(5)]
    a.send(rtp(50), session.a.local_address)
    a.send(rtp(51), session.a.local_address)
    await b.recv_all(2)
    assert tap.get_nowait() is not None
    assert len(tap.drain()) == 1
    assert tap.get_nowait() is None
    assert tap.drain() == []


async def test_closing_a_tap_stops_copying(relay: MediaRelay, phones: tuple[Phone, Phone]) -> None:
    a, b = phones
    session = await call(relay, a, b)
    tap = session.tap(10)
    other = session.tap(10)
    a.send(rtp(1), session.a.local_address)
    await b.recv()
    tap.close()
    a.send(rtp(2), session.a.local_address)
    await b.recv()
    assert [p for _, _, p in [item async for item in tap]] == [rtp(1)]  # drained, then ends
    with pytest.raises(TapClosed):
        await tap.get()
    assert other.qsize() == 2


async def test_session_close_ends_a_waiting_tap_consumer(
    relay: MediaRelay, phones: tuple[Phone, Phone]
) -> None:
    a, b = phones
    session = await call(relay, a, b)
    tap = session.tap()
    consumer = asyncio.create_task(tap.get())
    await settle()
    await session.close()
    with pytest.raises(TapClosed):
        await asyncio.wait_for(consumer, TIMEOUT)


# ------------------------------------------------------------------------------------- DTMF


async def test_dtmf_observer_sees_each_event_once(
    relay: MediaRelay, phones: tuple[Phone, Phone]
) -> None:
    a, b = phones
    heard: list[tuple[Leg, TelephoneEvent]] = []
    session = await relay.create_session(on_dtmf=lambda leg, event: heard.append((leg, event)))
    session.a.set_remote(*a.address, dtmf_payload_type=101)
    session.b.set_remote(*b.address)

    def event(seq: int, ts: int, digit: int, end: bool, duration: int) -> bytes:
        payload = bytes(TelephoneEvent(digit, end, 10, duration))
        return bytes(RtpPacket(101, seq, ts, 0xAAAA, marker=not duration, payload=payload))

    packets = [rtp(1), event(2, 1000, 7, False, 0), event(3, 1000, 7, False, 160)]
    packets += [event(4, 1000, 7, True, 320)] * 3  # the end packet, sent three times
    packets += [event(7, 2000, 11, True, 400)]
    for packet in packets:
        a.send(packet, session.a.local_address)
    assert await b.recv_all(len(packets)) == packets  # events are relayed untouched
    assert [(leg.name, e.digit, e.duration) for leg, e in heard] == [
        ("A", "7", 320),
        ("A", "#", 400),
    ]
    assert session.a.dtmf_payload_type == 101
    assert session.a.counters().stats.jitter == 0  # event timestamps kept out of jitter


# ------------------------------------------------------------------------------------- RTCP


async def test_rtcp_on_its_own_ports_is_relayed_and_recorded(
    relay: MediaRelay, phones: tuple[Phone, Phone]
) -> None:
    a, b = phones
    a_rtcp, b_rtcp = await Phone.open(), await Phone.open()
    try:
        session = await relay.create_session()
        session.a.set_remote(HOST, a.address[1], a_rtcp.address[1])
        session.b.set_remote(HOST, b.address[1], b_rtcp.address[1])
        # A reports about the stream it receives from B (SSRC 0xBBBB).
        report = build_rtcp([ReceiverReport(0xAAAA, (ReportBlock(0xBBBB, 64, 12, 500, 160),))])
        a_rtcp.send(report, (HOST, session.a.local_rtcp_port))
        data, source = await b_rtcp.recv()
        assert data == report
        assert source == (HOST, session.b.local_rtcp_port)
        far_end = session.b.counters().stats.far_end
        assert far_end is not None
        assert far_end.fraction_lost == 64
        assert session.b.counters().stats.far_end_jitter_ms == 20.0
        assert session.a.counters().rtcp_received == 1
        assert session.b.counters().rtcp_sent == 1
        b_rtcp.send(b"\x80\xc9\x00\x01\x00\x00\xbb\xbb", (HOST, session.b.local_rtcp_port))
        assert (await a_rtcp.recv())[0] == b"\x80\xc9\x00\x01\x00\x00\xbb\xbb"
        assert session.a.latched is False  # RTCP does not latch RTP
    finally:
        a_rtcp.close()
        b_rtcp.close()


async def test_rtcp_socket_latches_to_the_real_source(
    relay: MediaRelay, phones: tuple[Phone, Phone]
) -> None:
    a, b = phones
    a_rtcp_nat, b_rtcp, stranger = await Phone.open(), await Phone.open(), await Phone.open()
    try:
        session = await relay.create_session()
        session.a.set_remote(HOST, a.address[1])  # RTCP expected on a.port + 1: not used
        session.b.set_remote(HOST, b.address[1], b_rtcp.address[1])
        report = build_rtcp([ReceiverReport(0xAAAA)])
        a_rtcp_nat.send(report, (HOST, session.a.local_rtcp_port))
        assert (await b_rtcp.recv())[0] == report
        b_rtcp.send(report, (HOST, session.b.local_rtcp_port))
        assert (await a_rtcp_nat.recv())[0] == report  # answered to the real source
        assert session.a.rtcp_destination == a_rtcp_nat.address
        stranger.send(report, (HOST, session.a.local_rtcp_port))
        stranger.send(b"junk", (HOST, session.a.local_rtcp_port))
        await b_rtcp.nothing()
        counters = session.a.counters()
        assert (counters.strangers, counters.ignored) == (1, 1)
    finally:
        for phone in (a_rtcp_nat, b_rtcp, stranger):
            phone.close()


async def test_rtcp_mux_goes_through_the_rtp_ports(
    relay: MediaRelay, phones: tuple[Phone, Phone]
) -> None:
    a, b = phones
    session = await relay.create_session()
    session.a.set_remote(*a.address, rtcp_mux=True)
    session.b.set_remote(*b.address, rtcp_mux=True)
    a.send(rtp(1), session.a.local_address)
    await b.recv()
    report = build_rtcp([ReceiverReport(0xBBBB, (ReportBlock(0x11111111, 0, 0, 1, 8),))])
    b.send(report, session.b.local_address)
    data, source = await a.recv()
    assert (data, source) == (report, session.a.local_address)
    assert session.a.counters().stats.far_end is not None  # B's report about A's stream
    assert session.a.counters().received_packets == 1  # RTCP is not counted as RTP
    assert session.b.counters().rtcp_received == 1


# --------------------------------------------------------------------------------- clean-up


async def test_closing_releases_ports_and_sockets(
    port_range: tuple[int, int], phones: tuple[Phone, Phone]
) -> None:
    a, b = phones
    before = len(os.listdir("/proc/self/fd"))
    async with MediaRelay(HOST, port_range) as relay:
        sessions = [await call(relay, a, b) for _ in range(5)]
        assert relay.ports.in_use == 10
        await sessions[0].close()
        await sessions[0].close()  # twice: harmless
        assert relay.ports.in_use == 8
        assert len(relay.sessions) == 4
    assert relay.ports.in_use == 0
    assert len(os.listdir("/proc/self/fd")) == before
    with pytest.raises(Exception, match="closed"):
        await relay.create_session()


async def test_exhausted_ports_leave_nothing_behind(
    phones: tuple[Phone, Phone], port_block: Any
) -> None:
    first, last = port_block(6)  # three pairs: one session, and one pair over
    async with MediaRelay(HOST, (first, last)) as relay:
        await relay.create_session()
        with pytest.raises(PortsExhausted):
            await relay.create_session()
        assert relay.ports.in_use == 2
        assert len(relay.sessions) == 1
