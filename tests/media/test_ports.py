"""The RTP/RTCP port allocator: even pairs, real binds, ports held by others skipped,
exhaustion, release, no leaked sockets."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

import pytest
from support.ports import bindable

from pbx.media.ports import PortAllocator, PortBindError, PortsExhausted

PortBlock = Callable[..., tuple[int, int]]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_pairs_are_even_and_bound(port_block: PortBlock) -> None:
    first, last = port_block(8)
    ports = PortAllocator("127.0.0.1", first, last)
    pair = ports.allocate()
    assert pair.rtp_port % 2 == 0
    assert pair.rtcp_port == pair.rtp_port + 1
    assert pair.rtp_socket.getsockname() == ("127.0.0.1", pair.rtp_port)
    assert pair.rtcp_socket.getsockname() == ("127.0.0.1", pair.rtcp_port)
    assert not pair.rtp_socket.getblocking()
    assert not bindable("127.0.0.1", pair.rtp_port) and not bindable("127.0.0.1", pair.rtcp_port)
    ports.release(pair)
    assert bindable("127.0.0.1", pair.rtp_port) and bindable("127.0.0.1", pair.rtcp_port)


def test_odd_start_is_rounded_up_and_rtcp_must_fit(port_block: PortBlock) -> None:
    first, _ = port_block(8)
    ports = PortAllocator("127.0.0.1", first + 1, first + 6)  # pairs at +2 and +4 only
    assert ports.capacity == 2
    assert [ports.allocate().rtp_port for _ in range(2)] == [first + 2, first + 4]


def test_exhaustion_raises_a_clear_error_and_release_returns_the_pair(
    port_block: PortBlock,
) -> None:
    first, last = port_block(6)
    ports = PortAllocator("127.0.0.1", first, last)
    pairs = [ports.allocate() for _ in range(3)]
    assert ports.in_use == 3
    with pytest.raises(PortsExhausted, match=r"3 pairs in use by the relay, 0 held by other"):
        ports.allocate()
    ports.release(pairs[1])
    again = ports.allocate()
    assert again.rtp_port == pairs[1].rtp_port
    for pair in (pairs[0], pairs[2], again):
        ports.release(pair)
    assert ports.in_use == 0


def test_released_ports_are_reused_last(port_block: PortBlock) -> None:
    first, last = port_block(6)
    ports = PortAllocator("127.0.0.1", first, last)
    a = ports.allocate()
    ports.release(a)
    b = ports.allocate()
    assert b.rtp_port != a.rtp_port
    ports.release(b)


def test_ports_held_by_other_programs_are_skipped(port_block: PortBlock) -> None:
    first, last = port_block(8)
    squatters = []
    for port in (first, first + 3):  # the first pair's RTP, the second pair's RTCP
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", port))
        squatters.append(sock)
    try:
        ports = PortAllocator("127.0.0.1", first, last)
        got = [ports.allocate().rtp_port for _ in range(2)]
        assert got == [first + 4, first + 6]
        with pytest.raises(PortsExhausted, match="2 held by other programs"):
            ports.allocate()
        squatters.pop().close()  # the second pair frees up
        assert ports.allocate().rtp_port == first + 2
    finally:
        for sock in squatters:
            sock.close()


def test_no_sockets_leak(port_block: PortBlock) -> None:
    first, last = port_block(10)
    ports = PortAllocator("127.0.0.1", first, last)
    before = open_fds()
    for _ in range(20):
        pairs = [ports.allocate() for _ in range(5)]
        with pytest.raises(PortsExhausted):
            ports.allocate()
        for pair in pairs:
            ports.release(pair)
            ports.release(pair)  # twice: harmless
    assert open_fds() == before
    assert ports.in_use == 0
    assert all(bindable("127.0.0.1", p) for p in range(first, last + 1))


def test_configuration_errors() -> None:
    with pytest.raises(ValueError, match="holds no"):
        PortAllocator("127.0.0.1", 20000, 20000)
    with pytest.raises(PortBindError, match="not an IP"):
        PortAllocator("localhost", 20000, 20010)
    ports = PortAllocator("192.0.2.1", 20000, 20010)  # not an address of this machine
    with pytest.raises(PortBindError, match="cannot bind"):
        ports.allocate()
    assert ports.in_use == 0


def test_ipv6_loopback(port_block: PortBlock) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        first, last = port_block(4, "::1")
    except RuntimeError:
        pytest.skip("::1 not usable")
    ports = PortAllocator("::1", first, last)
    pair = ports.allocate()
    assert pair.rtp_socket.family == socket.AF_INET6
    assert pair.rtp_socket.getsockname()[:2] == ("::1", pair.rtp_port)
    ports.release(pair)
