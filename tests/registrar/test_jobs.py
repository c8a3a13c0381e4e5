"""The registrar's background jobs: the sans-IO keep-alive schedule, and RegistrarJobs on a real
endpoint pinging UDP sockets of the test (one answers, one stays silent) with short intervals."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import cast

import pytest
from support.phone import KEY, NOW, REALM

from pbx.endpoint import Listen, SipEndpoint
from pbx.registrar import (
    Authenticator,
    KeepaliveSchedule,
    Registrar,
    RegistrarJobs,
    behind_nat,
    options_ping,
)
from pbx.sip import Request, make_response, parse
from pbx.sip.timers import TimerConfig
from pbx.store import Binding, Extension, MemoryStore

QUICK = TimerConfig(t1=0.01, t2=0.08, t4=0.1)  # a ping times out after 64*T1 = 0.64 s


def binding(
    contact: str = "sip:1001@192.168.1.20:5060",
    source: tuple[str, str, int] = ("UDP", "203.0.113.7", 40123),
    *,
    aor: str = "1001",
    expires_at: float = NOW + 3600,
    updated_at: float = NOW,
) -> Binding:
    transport, host, port = source
    return Binding(
        aor=aor,
        contact=contact,
        expires_at=expires_at,
        call_id="c1",
        cseq=1,
        source_transport=transport,
        source_host=host,
        source_port=port,
        updated_at=updated_at,
    )


# -------------------------------------------------------------------------------- behind_nat


@pytest.mark.parametrize(
    ("contact", "source", "nat"),
    [
        ("sip:1001@192.168.1.20:5060", ("UDP", "203.0.113.7", 40123), True),
        ("sip:1001@192.168.1.20", ("UDP", "192.168.1.20", 5060), False),  # default port
        ("sip:1001@192.168.1.20:5062", ("UDP", "192.168.1.20", 5062), False),
        ("sip:1001@192.168.1.20:5060", ("UDP", "192.168.1.20", 33333), True),  # port mapped
        ("sip:1001@192.168.1.20:5060", ("TCP", "203.0.113.7", 40123), False),  # CRLF keeps it
        ("sip:1001@192.168.1.20;transport=tcp", ("UDP", "203.0.113.7", 1), False),
        ("sip:1001@[2001:db8::1]:5060", ("UDP", "2001:db8::1", 5060), False),
        ("tel:+4930123", ("UDP", "203.0.113.7", 40123), False),
    ],
)
def test_behind_nat(contact: str, source: tuple[str, str, int], nat: bool) -> None:
    assert behind_nat(binding(contact, source)) is nat


def test_bindings_with_a_path_are_not_pinged_directly() -> None:
    assert not behind_nat(replace(binding(), path=("<sip:edge.example;lr>",)))


# ------------------------------------------------------------------------- KeepaliveSchedule


def schedule(interval: float = 25.0) -> KeepaliveSchedule:
    return KeepaliveSchedule(interval, 3, jitter=lambda: 0.0)


def test_nat_bindings_are_pinged_once_per_interval_one_at_a_time() -> None:
    s = schedule()
    b, lan = binding(), binding("sip:1002@192.168.1.21", ("UDP", "192.168.1.21", 5060), aor="1002")
    assert s.due([b, lan], NOW) == [b]  # the LAN phone is reachable without help
    assert s.due([b, lan], NOW + 30) == []  # still in flight: never two at once
    s.answered(b)
    assert s.due([b], NOW + 30) == [b]  # overdue: at once
    s.answered(b)
    assert s.due([b], NOW + 40) == []
    assert s.due([b], NOW + 55) == [b]


def test_new_bindings_start_at_a_random_point_of_the_first_interval() -> None:
    s = KeepaliveSchedule(20.0, jitter=lambda: 0.5)
    b = binding()
    assert s.due([b], NOW) == []
    assert s.due([b], NOW + 9.9) == []
    assert s.due([b], NOW + 10) == [b]


def test_three_misses_in_a_row_condemn_a_binding() -> None:
    s = schedule()
    b = binding()
    for i, condemned in enumerate([False, False, True]):
        assert s.due([b], NOW + 25 * i) == [b]
        assert s.missed(b) is condemned
    assert len(s) == 0


def test_an_answer_or_a_refresh_resets_the_misses() -> None:
    s = schedule()
    b = binding()
    for i in range(2):
        s.due([b], NOW + 25 * i)
        s.missed(b)
    s.due([b], NOW + 50)
    s.answered(b)
    for i in range(2):
        s.due([b], NOW + 75 + 25 * i)
        assert not s.missed(b)
    refreshed = replace(b, updated_at=NOW + 120)  # the phone registered again
    assert s.due([refreshed], NOW + 125) == [refreshed]
    assert not s.missed(refreshed)
    # A miss of a ping sent before the refresh does not count against the new binding.
    s.due([refreshed], NOW + 150)
    assert not s.missed(b)


def test_gone_bindings_leave_the_schedule() -> None:
    s = schedule()
    b = binding()
    s.due([b], NOW)
    s.answered(b)
    assert len(s) == 1
    s.due([], NOW + 1)
    assert len(s) == 0
    moved = binding(source=("UDP", "203.0.113.7", 50000))  # NAT mapping changed
    s.due([moved], NOW + 2)
    assert len(s) == 1


def test_the_ping_is_an_out_of_dialog_options_to_the_contact() -> None:
    request = options_ping(
        binding(), "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx", ("10.0.0.1", 5060)
    )
    again = parse(bytes(request))
    assert isinstance(again, Request)
    assert again.method == "OPTIONS" and str(again.uri) == "sip:1001@192.168.1.20:5060"
    assert again.from_.tag and again.to.tag is None and again.cseq.method == "OPTIONS"


# ------------------------------------------------------------------------- on real sockets


@dataclass
class FakePhone(asyncio.DatagramProtocol):
    """A UDP socket standing in for a NAT'd phone: records OPTIONS, answers 200 if asked."""

    answer: bool
    received: list[tuple[float, Request]] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        request = parse(data)
        assert isinstance(request, Request) and request.method == "OPTIONS"
        self.received.append((time.monotonic(), request))
        if self.answer and self.transport is not None:
            self.transport.sendto(bytes(make_response(request, 200, to_tag="phone")), addr)

    @property
    def port(self) -> int:
        assert self.transport is not None
        port: int = self.transport.get_extra_info("sockname")[1]
        return port

    def pings(self) -> list[tuple[float, Request]]:
        """First transmissions only (the client transaction retransmits over UDP)."""
        seen: set[str] = set()
        out = []
        for at, request in self.received:
            if request.call_id not in seen:
                seen.add(request.call_id)
                out.append((at, request))
        return out


@dataclass
class Box:
    store: MemoryStore
    registrar: Registrar
    endpoint: SipEndpoint
    phone: Callable[[bool], Awaitable[FakePhone]]


@pytest.fixture
async def box() -> AsyncIterator[Box]:
    store = MemoryStore()
    store.directory.create(Extension("1001"))
    authenticator = Authenticator(store.directory, REALM, KEY)
    registrar = Registrar(store.directory, store.bindings, authenticator)
    endpoint = SipEndpoint(None, timers=QUICK)
    await endpoint.start([Listen("UDP", "127.0.0.1", 0)])
    loop = asyncio.get_running_loop()
    sockets: list[asyncio.DatagramTransport] = []

    async def open_phone(answer: bool) -> FakePhone:
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: FakePhone(answer), local_addr=("127.0.0.1", 0)
        )
        sockets.append(transport)
        return protocol

    yield Box(store, registrar, endpoint, open_phone)
    for transport in sockets:
        transport.close()
    await endpoint.close()


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def nat_binding(port: int, *, expires_in: float = 3600) -> Binding:
    now = time.time()
    return binding(source=("UDP", "127.0.0.1", port), expires_at=now + expires_in, updated_at=now)


async def test_a_nat_binding_is_kept_alive_with_options(box: Box) -> None:
    phone = await box.phone(True)
    box.store.bindings.put(nat_binding(phone.port))
    jobs = RegistrarJobs(box.registrar, box.endpoint, interval=0.02, keepalive_interval=0.2)
    task = asyncio.create_task(jobs.run())
    try:
        await wait_for(lambda: len(phone.pings()) >= 4)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    times = [at for at, _ in phone.pings()]
    assert all(b - a >= 0.15 for a, b in itertools.pairwise(times))  # not hammered
    assert len(box.store.bindings.list("1001")) == 1
    assert len(phone.received) == len(phone.pings())  # answered: no retransmissions


async def test_a_binding_whose_pings_go_unanswered_three_times_is_removed(
    box: Box, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="pbx.registrar")
    silent = await box.phone(False)
    box.store.bindings.put(nat_binding(silent.port))
    jobs = RegistrarJobs(box.registrar, box.endpoint, interval=0.02, keepalive_interval=0.1)
    task = asyncio.create_task(jobs.run())
    try:
        await wait_for(lambda: not box.store.bindings.list("1001"))
        await asyncio.sleep(0.3)  # no further ping after the removal
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert len(silent.pings()) == 3
    assert "binding unreachable, removed: 1001" in caplog.text


async def test_bindings_on_the_lan_are_not_pinged(box: Box) -> None:
    phone = await box.phone(True)
    now = time.time()
    box.store.bindings.put(
        binding(
            f"sip:1001@127.0.0.1:{phone.port}",
            ("UDP", "127.0.0.1", phone.port),
            expires_at=now + 3600,
            updated_at=now,
        )
    )
    jobs = RegistrarJobs(box.registrar, box.endpoint, interval=0.02, keepalive_interval=0.05)
    task = asyncio.create_task(jobs.run())
    await asyncio.sleep(0.3)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert phone.received == []


async def test_expired_bindings_are_swept_and_logged(
    box: Box, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="pbx.registrar")
    phone = await box.phone(True)
    box.store.bindings.put(nat_binding(phone.port, expires_in=0.1))
    jobs = RegistrarJobs(box.registrar, box.endpoint, interval=0.02, keepalive_interval=10)
    task = asyncio.create_task(jobs.run())
    try:
        # list() without now shows expired rows too: gone means swept, not just filtered.
        await wait_for(lambda: not box.store.bindings.list("1001"), timeout=3)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert "binding expired: 1001 -> sip:1001@192.168.1.20:5060" in caplog.text


async def test_cancelling_the_jobs_cancels_pings_in_flight(box: Box) -> None:
    silent = await box.phone(False)
    box.store.bindings.put(nat_binding(silent.port))
    jobs = RegistrarJobs(box.registrar, box.endpoint, interval=0.02, keepalive_interval=0.05)
    task = asyncio.create_task(jobs.run())
    await wait_for(lambda: bool(silent.received))
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert not jobs._pings  # nothing left running behind the cancelled job
