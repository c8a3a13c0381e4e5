"""The door guard (pbx/guard.py): bans for password guessing and floods, on its own and in a
real core (with and without registrar workers) over UDP on loopback, where the test clears
the trusted networks so 127.0.0.x sources are judged like strangers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.phone import UdpPhone
from support.wait import wait_for

from appliance.service.registrar_worker import worker_spawner
from appliance.store import open_store
from pbx.guard import Guard, GuardSettings
from pbx.service import SipCore
from pbx.settings import SipSettings
from pbx.store import Extension

DOMAIN = "edgepbx.local"
PASSWORD = "gu4rd-Pw"
KEY = b"guard-test-nonce-key-0123456789ab"

# ------------------------------------------------------------------------------ the guard alone


def test_ten_failures_in_a_minute_ban_and_the_ban_ends() -> None:
    guard = Guard(GuardSettings(trusted=()))
    for i in range(9):
        guard.failed("198.51.100.7", 100.0 + i)
    assert guard.allows("198.51.100.7", 110.0)
    guard.failed("198.51.100.7", 110.0)
    assert not guard.allows("198.51.100.7", 111.0)
    assert guard.allows("198.51.100.8", 111.0)  # only that address
    assert [h for h, _ in guard.banned(111.0)] == ["198.51.100.7"]
    assert not guard.allows("198.51.100.7", 110.0 + 599)
    assert guard.allows("198.51.100.7", 110.0 + 600)


def test_failures_spread_beyond_the_window_do_not_ban() -> None:
    guard = Guard(GuardSettings(trusted=()))
    for i in range(50):
        guard.failed("198.51.100.7", 100.0 + 7 * i)  # 8-9 in any minute
    assert guard.allows("198.51.100.7", 500.0) and guard.bans == 0


def test_a_flood_is_banned_after_its_burst() -> None:
    guard = Guard(GuardSettings(max_rate=100, trusted=()))
    passed = sum(guard.allows("203.0.113.5", 1000.0 + i * 0.0001) for i in range(1000))
    assert passed in range(200, 203)  # the burst (twice the rate), then the ban
    assert guard.bans == 1 and not guard.allows("203.0.113.5", 1001.0)


def test_a_steady_phone_under_the_rate_is_never_banned() -> None:
    guard = Guard(GuardSettings(max_rate=10, trusted=()))
    assert all(guard.allows("192.0.2.1", i * 0.11) for i in range(5000))


@given(
    events=st.lists(
        st.tuples(
            st.sampled_from(["allow", "fail"]),
            st.sampled_from(["127.0.0.1", "::1", "10.0.0.1", "10.0.0.2", "bogus", "fe80::1"]),
            st.floats(0, 0.5),
        ),
        max_size=300,
    )
)
def test_trusted_sources_always_pass_and_tables_stay_bounded(
    events: list[tuple[str, str, float]],
) -> None:
    guard = Guard(GuardSettings(max_failures=2, max_rate=5, max_sources=3))
    now = 0.0
    for kind, host, step in events:
        now += step
        if kind == "fail":
            guard.failed(host, now)
        elif host in ("127.0.0.1", "::1"):
            assert guard.allows(host, now)
        else:
            guard.allows(host, now)
        assert len(guard._sources) <= 3 and len(guard._banned) <= 3


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="not-a-network"):
        GuardSettings(trusted=("not-a-network",))
    with pytest.raises(ValueError):
        GuardSettings(max_failures=0)


# ------------------------------------------------------------------------------ in a real core


@pytest.fixture(params=[0, 2], ids=["core", "workers"])
async def core(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SipCore]:
    data = tmp_path / "data"
    store = open_store(data, write_behind=True)
    store.directory.create(Extension("4001"))
    store.directory.set_password("4001", PASSWORD, DOMAIN)
    (data / "nonce.key").write_bytes(KEY)
    settings = SipSettings(
        port=0,
        transports=("UDP",),
        registrar_workers=request.param,
        trusted_networks=(),
        ban_after_failures=5,
        max_requests_per_second=50,
    )
    box = SipCore(settings, store, KEY, spawn_worker=worker_spawner(settings, data))
    await box.start()
    try:
        if box.pool is not None:
            await wait_for(lambda: box.pool is not None and box.pool.workers_up == 2, timeout=20)
        yield box
    finally:
        await box.close()
        store.close()


async def test_a_password_guesser_is_banned_and_others_are_served(core: SipCore) -> None:
    target = core.endpoint.local("UDP")
    with contextlib.ExitStack() as stack:
        phones = [
            stack.enter_context(UdpPhone("4001", f"guess-{n}", domain=DOMAIN, host="127.0.0.1"))
            for n in range(5)
        ]
        right = stack.enter_context(UdpPhone("4001", PASSWORD, domain=DOMAIN, host="127.0.0.1"))
        office = stack.enter_context(UdpPhone("4001", PASSWORD, domain=DOMAIN, host="127.0.0.2"))
        for guesser in phones:
            assert await status(guesser, target) == 403
        await wait_for(lambda: core.guard.bans == 1)  # from a worker, the news travels
        # Now even the right password gets no answer from that address: nothing to learn.
        assert await status(right, target) is None
        assert await status(office, target) == 200  # other addresses are served
        # The operator lifts the ban: the right password works from there again.
        assert core.guard.unban("127.0.0.1") and not core.guard.unban("127.0.0.1")
        assert await status(right, target) == 200


async def status(phone: UdpPhone, target: tuple[str, int]) -> int | None:
    answer = await asyncio.to_thread(phone.register, target)
    return None if answer is None else answer.status


async def test_a_flood_gets_its_burst_answered_then_silence(core: SipCore) -> None:
    target = core.endpoint.local("UDP")
    with UdpPhone("4001", PASSWORD, domain=DOMAIN, host="127.0.0.3") as flood:

        def send_and_count() -> tuple[int, float]:
            started = time.monotonic()
            for i in range(400):
                options = (
                    f"OPTIONS sip:{DOMAIN} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP 127.0.0.3:{flood.phone.port};branch=z9hG4bK-flood{i}\r\n"
                    f"From: <sip:scan@x>;tag=f{i}\r\nTo: <sip:{i}@{DOMAIN}>\r\n"
                    f"Call-ID: flood{i}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                    "Content-Length: 0\r\n\r\n"
                )
                flood.sock.sendto(options.encode(), target)
                if i % 20 == 19:
                    time.sleep(0.01)  # 2,000/s: 40 times the limit, within the socket buffer
            sending = time.monotonic() - started
            answers = 0
            while flood.answer() is not None:
                answers += 1
            return answers, sending

        # In a thread, so the core (on this loop) reads while the flood comes.
        answers, sending = await asyncio.to_thread(send_and_count)
        # The burst (twice 50/s) and at most what refilled while it lasted; then the ban.
        assert 95 <= answers <= 100 + 50 * sending + 2
        assert core.guard.bans == 1 and core.guard.dropped >= 200
