"""Registrar workers (pbx/registrar_workers.py): REGISTERs over UDP answered by child
processes of the core.

The quick look at the To header is checked against the real parser (Hypothesis); the pool
runs real worker processes (``edgepbx part registrar-worker``) on a real SQLite data folder,
driven by SIPp and by a scripted phone over a UDP socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.phone import UdpPhone
from support.sipp import run_sipp, sipp_available, write_users_csv
from support.wait import wait_for

from appliance.service.registrar_worker import worker_spawner
from appliance.store import SqliteStore, open_store
from pbx.registrar_workers import (
    MAX_PACKET,
    Channel,
    aor_of,
    decode_datagram,
    encode_datagram,
    shard_of,
)
from pbx.service import SipCore
from pbx.settings import SipSettings
from pbx.sip import Response, parse
from pbx.sip.events import Peer
from pbx.store import Binding, Extension

DOMAIN = "edgepbx.local"
PASSWORD = "w0rker-Pw"
USERS = [str(n) for n in range(3000, 3040)]
KEY = b"worker-test-nonce-key-0123456789"


# ------------------------------------------------------------------------------ the quick look

_user = st.text(alphabet="0123456789abcXYZ-_.!~*'()&=+$,", min_size=1, max_size=12)
_quoted = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters='"\\'),
    max_size=20,
)


@given(
    user=_user,
    name=st.sampled_from(["To", "to", "TO", "t"]),
    display=st.one_of(
        st.just(""),
        _quoted.map(lambda t: f'"{t}" '),
        st.just('"sip:9999@evil.example" '),
        st.just("Alice "),
    ),
    escaped=st.booleans(),
    params=st.sampled_from(["", ";tag=abc", ";x=y;tag=1"]),
    space=st.sampled_from(["", " ", "\t"]),
)
def test_the_quick_look_finds_the_parsers_aor(
    user: str, name: str, display: str, escaped: bool, params: str, space: str
) -> None:
    spelled = "".join(f"%{ord(c):02X}" if escaped and c.isdigit() else c for c in user)
    to = f"{display}<sip:{spelled}@{DOMAIN}>{params}"
    data = (
        f"REGISTER sip:{DOMAIN} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\n"
        "Max-Forwards: 70\r\n"
        f'From: "To: sip:8888@x" <sip:{spelled}@{DOMAIN}>;tag=1\r\n'
        f"{name}{space}:{space}{to}\r\n"
        "Call-ID: a@b\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    request = parse(data)
    assert aor_of(data) == request.to.uri.user_unescaped == user  # type: ignore[union-attr]


def test_the_quick_look_gives_up_rather_than_guess() -> None:
    folded = b"REGISTER sip:x SIP/2.0\r\nTo:\r\n <sip:100@x>\r\nCall-ID: a\r\n\r\n"
    assert aor_of(folded) is None  # the core parses it itself
    assert aor_of(b"REGISTER sip:x SIP/2.0\r\nCall-ID: a\r\n\r\n") is None
    body_only = b"REGISTER sip:x SIP/2.0\r\nCall-ID: a\r\n\r\nTo: <sip:100@x>\r\n"
    assert aor_of(body_only) is None  # a To in the body is not a header


@given(
    host=st.sampled_from(["127.0.0.1", "::1", "fe80::1", "192.168.100.200"]),
    port=st.integers(0, 65535),
    data=st.binary(max_size=300),
)
def test_a_datagram_crosses_the_channel_unchanged(host: str, port: int, data: bytes) -> None:
    assert decode_datagram(encode_datagram(Peer("UDP", host, port), data)) == (
        Peer("UDP", host, port),
        data,
    )


@settings(max_examples=40, deadline=None)
@given(
    turns=st.lists(
        st.lists(
            st.one_of(st.binary(min_size=1, max_size=2000), st.integers(60_000, MAX_PACKET - 4)),
            max_size=40,
        ),
        max_size=6,
    )
)
def test_the_channel_delivers_every_message_whole_and_in_order(
    turns: list[list[bytes | int]],
) -> None:
    """Messages sent in one loop turn share packets (up to MAX_PACKET); big ones (an int
    here: that many bytes) fill packets of their own. None lost, none split or merged."""

    async def run() -> list[bytes]:
        left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        got: list[bytes] = []
        closed = asyncio.Event()
        sender = Channel(left, lambda m: None, lambda: None)
        Channel(right, got.append, closed.set)
        for n, turn in enumerate(turns):
            for i, item in enumerate(turn):
                message = bytes([n, i % 256]) * (item // 2) if isinstance(item, int) else item
                assert sender.send(message)
            await asyncio.sleep(0)  # the turn ends: its packet goes
        sender.send(b"end")
        await wait_for(lambda: got[-1:] == [b"end"], timeout=10)
        sender.close()
        await asyncio.wait_for(closed.wait(), 5)  # EOF reaches the other end
        return got[:-1]

    sent = [
        bytes([n, i % 256]) * (item // 2) if isinstance(item, int) else item
        for n, turn in enumerate(turns)
        for i, item in enumerate(turn)
    ]
    assert asyncio.run(run()) == sent


def test_shards_are_stable_and_spread() -> None:
    shards = [shard_of(str(n), 2) for n in range(1000, 1100)]
    assert shards == [shard_of(str(n), 2) for n in range(1000, 1100)]
    assert 30 < shards.count(0) < 70  # crc32 spreads extension numbers
    assert {shard_of(str(n), 3) for n in range(100)} == {0, 1, 2}


# ------------------------------------------------------------------------------ a core with workers


@pytest.fixture
async def core(tmp_path: Path) -> AsyncIterator[tuple[SipCore, SqliteStore]]:
    data = tmp_path / "data"
    store = open_store(data, write_behind=True)
    for number in USERS:
        store.directory.create(Extension(number))
        store.directory.set_password(number, PASSWORD, DOMAIN)
    (data / "nonce.key").write_bytes(KEY)
    sip = SipSettings(host="127.0.0.1", port=0, transports=("UDP",), registrar_workers=2)
    box = SipCore(sip, store, KEY, spawn_worker=worker_spawner(sip, data))
    await box.start()
    try:
        assert box.pool is not None
        await wait_for(lambda: box.pool is not None and box.pool.workers_up == 2, timeout=20)
        yield box, store
    finally:
        await box.close()
        store.close()


async def ask(phone: UdpPhone, target: tuple[str, int]) -> Response:
    """Register ``phone`` (in a thread: the core runs on this test's loop)."""
    answer = await asyncio.to_thread(phone.register, target)
    assert answer is not None, "no answer"
    return answer


def new_phone(number: str, password: str = PASSWORD) -> UdpPhone:
    return UdpPhone(number, password, domain=DOMAIN)


def contacts_of(response: Response) -> list[str]:
    return [str(a.uri) for a in response.contacts]


@pytest.mark.skipif(not sipp_available(), reason="sipp is not installed")
async def test_sipp_registers_through_the_workers_and_the_core_knows(
    core: tuple[SipCore, SqliteStore], tmp_path: Path
) -> None:
    box, store = core
    assert box.pool is not None
    udp = next(t for t in box.endpoint.transports.transports if t.name == "UDP")
    port = box.endpoint.local("UDP")[1]
    csv = write_users_csv(tmp_path / "users.csv", USERS, password=PASSWORD)
    result = await asyncio.to_thread(
        run_sipp,
        f"127.0.0.1:{port}",
        scenario="register_auth",
        workdir=tmp_path,
        inf=csv,
        calls=len(USERS),
        rate=100,
        timeout_s=40,
    )
    assert result.successful == len(USERS) and result.failed == 0, result.describe()
    assert udp.stats.received == 0  # not one REGISTER parsed in the core's process
    # The workers' changes reach the core's store, where calls look bindings up.
    await wait_for(lambda: len(store.bindings.all_active(time.time())) == len(USERS))
    assert [b.aor for b in box.registrar.lookup("3007", time.time())] == ["3007"]
    # Both workers took their share: each AoR's shard.
    assert {shard_of(u, 2) for u in USERS} == {0, 1}
    store.bindings.flush()  # type: ignore[attr-defined]
    assert len(store.bindings.all_active(time.time())) == len(USERS)


async def test_a_worker_answers_with_every_binding_of_the_aor_and_the_cores_changes(
    core: tuple[SipCore, SqliteStore],
) -> None:
    box, _store = core
    target = box.endpoint.local("UDP")
    with new_phone("3001") as desk, new_phone("3001") as soft:
        assert (await ask(desk, target)).status == 200
        answer = await ask(soft, target)
        assert answer.status == 200
        assert sorted(contacts_of(answer)) == sorted([desk.phone.contact, soft.phone.contact])
        # The core drops one (as a failed keep-alive does): the worker's copy follows.
        assert box.registrar.bindings.remove("3001", desk.phone.contact)
        await asyncio.sleep(0.2)
        assert contacts_of(await ask(soft, target)) == [soft.phone.contact]


async def test_a_killed_worker_is_replaced_and_gets_its_bindings_back(
    core: tuple[SipCore, SqliteStore],
) -> None:
    box, _store = core
    assert box.pool is not None
    target = box.endpoint.local("UDP")
    with contextlib.ExitStack() as stack:
        phones = [stack.enter_context(new_phone(n)) for n in ("3001", "3002", "3003", "3004")]
        for p in phones:
            assert (await ask(p, target)).status == 200
        victim = box.pool.pids()[0]
        os.kill(victim, signal.SIGKILL)
        await wait_for(lambda: box.pool is not None and box.pool.workers_up == 1)
        # Meanwhile the core answers that shard itself.
        for p in phones:
            assert (await ask(p, target)).status == 200
        await wait_for(
            lambda: (
                box.pool is not None and box.pool.workers_up == 2 and victim not in box.pool.pids()
            ),
            timeout=20,
        )
        # The new worker got the core's bindings: a second phone sees the first one's.
        for p in phones:
            with new_phone(p.phone.number) as other:
                answer = await ask(other, target)
                assert sorted(contacts_of(answer)) == sorted([p.phone.contact, other.phone.contact])


async def test_a_stopped_worker_is_found_silent_and_replaced(
    core: tuple[SipCore, SqliteStore],
) -> None:
    box, _store = core
    assert box.pool is not None
    box.pool.stuck_after = 1.5
    target = box.endpoint.local("UDP")
    frozen = box.pool.pids()[0]
    os.kill(frozen, signal.SIGSTOP)  # alive, holding its socket, answering nothing
    try:
        await wait_for(
            lambda: (
                box.pool is not None and box.pool.workers_up == 2 and frozen not in box.pool.pids()
            ),
            timeout=25,
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(frozen, signal.SIGCONT)
    for number in ("3001", "3002", "3003", "3004"):  # both shards answer
        with new_phone(number) as phone:
            assert (await ask(phone, target)).status == 200


async def test_a_password_change_reaches_the_workers(
    core: tuple[SipCore, SqliteStore],
) -> None:
    box, store = core
    assert box.pool is not None
    target = box.endpoint.local("UDP")
    with new_phone("3005") as old, new_phone("3005", "n3w-Password") as new:
        assert (await ask(old, target)).status == 200
        store.directory.set_password("3005", "n3w-Password", DOMAIN)
        box.pool.directory_changed()
        await asyncio.sleep(0.2)
        assert (await ask(new, target)).status == 200
        assert (await ask(old, target)).status == 403


async def test_the_workers_snapshot_and_deleted_extensions(
    core: tuple[SipCore, SqliteStore],
) -> None:
    box, store = core
    assert box.pool is not None
    target = box.endpoint.local("UDP")
    now = time.time()
    # A binding the core holds (loaded from SQLite at start, or put by it) is the worker's too.
    box.registrar.bindings.put(
        Binding("3010", "sip:3010@127.0.0.9:5062", now + 600, "c", 1, "UDP", "127.0.0.9", 5062, now)
    )
    await asyncio.sleep(0.2)
    with new_phone("3010") as phone:
        answer = await ask(phone, target)
        assert sorted(contacts_of(answer)) == sorted(
            ["sip:3010@127.0.0.9:5062", phone.phone.contact]
        )
        # Deleted: the core forgets it (the API's path) and so does the worker.
        assert store.directory.delete("3010")
        box.pool.directory_changed(["3010"])
        await asyncio.sleep(0.2)
        assert (await ask(phone, target)).status in (403, 404)
