"""The SIP stack against SIPp over real UDP and TCP on 127.0.0.1.

The peer on our side is the test agent (tests/support/agent.py), a small UA built on the
stack: transactions, dialogs, digest auth, the asyncio endpoint. SIPp runs in a thread so the
agent's event loop keeps serving while SIPp drives it.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.agent import Agent, AgentConfig
from support.sipp import SippResult, Transport, run_sipp, start_sipp, write_users_csv

from pbx.sip.events import Peer

pytestmark = [pytest.mark.interop, pytest.mark.timeout(90)]
PASSWORD = "s3cret-Pw"
TORTURE = Path(__file__).parent.parent / "data" / "torture"
OPTIONS = (
    b"OPTIONS sip:agent@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-alive\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:t@127.0.0.1>;tag=1\r\nTo: <sip:agent@127.0.0.1>\r\n"
    b"Call-ID: alive-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)


def assert_all_ok(result: SippResult, calls: int) -> None:
    assert result.successful == calls, result.describe()
    assert result.failed == 0, result.describe()


@pytest.fixture
async def agent() -> AsyncIterator[Agent]:
    users = {f"u{i:03d}": PASSWORD for i in range(200)}
    ua = Agent(AgentConfig(users=users, algorithms=("MD5",)))  # SIPp digests with MD5 only
    yield ua
    await ua.close()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_sipp_uac_calls_the_stack(agent: Agent, tmp_path: Path, transport: Transport) -> None:
    port = await agent.start(transport.upper())
    result = await asyncio.to_thread(
        run_sipp,
        f"127.0.0.1:{port}",
        scenario="uac",
        workdir=tmp_path,
        transport=transport,
        calls=20,
        rate=20,
        timeout_s=40,
    )
    assert_all_ok(result, 20)
    assert agent.counts["INVITE"] == 20 and agent.counts["answered"] == 20
    assert agent.counts["ACK"] == 20 and agent.counts["BYE"] == 20
    assert len(agent.dialogs) == 0
    assert len(agent.endpoint.layer) <= 40  # only server transactions in their wait states


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_stack_calls_sipp_uas(agent: Agent, tmp_path: Path, transport: Transport) -> None:
    await agent.start(transport.upper())
    with start_sipp(scenario="uas", workdir=tmp_path, transport=transport, timeout_s=40) as uas:
        peer = Peer(transport.upper(), "127.0.0.1", uas.port)
        statuses = [await agent.call(peer, talk=0.05) for _ in range(5)]
        await asyncio.sleep(0.2)
    served = uas.stop()
    assert statuses == [200] * 5
    assert served.created == 5, served.describe()
    assert agent.counts["calls"] == 5


async def test_calls_survive_packet_loss(agent: Agent, tmp_path: Path) -> None:
    """SIPp drops 10 % of what it sends and receives; the stack's retransmissions (the 2xx
    until ACK, responses to retransmitted requests) and SIPp's own keep every call whole."""
    port = await agent.start("UDP")
    result = await asyncio.to_thread(
        run_sipp,
        f"127.0.0.1:{port}",
        scenario="uac_call",
        workdir=tmp_path,
        calls=20,
        rate=20,
        lost=10,
        duration_ms=100,
        timeout_s=60,
    )
    assert result.retransmissions > 0, result.describe()
    assert_all_ok(result, 20)
    assert agent.counts["answered"] == 20


async def test_register_with_digest_auth(agent: Agent, tmp_path: Path) -> None:
    port = await agent.start("UDP")
    users = [f"u{i:03d}" for i in range(50)]
    csv = write_users_csv(tmp_path / "users.csv", users, password=PASSWORD)
    result = await asyncio.to_thread(
        run_sipp,
        f"127.0.0.1:{port}",
        scenario="register_auth",
        workdir=tmp_path,
        inf=csv,
        calls=50,
        rate=50,
        timeout_s=40,
    )
    assert_all_ok(result, 50)
    assert agent.counts["registered"] == 50
    assert agent.counts["REGISTER"] == 100  # each one challenged once, then accepted
    assert len(agent.bindings) == 50


async def test_register_with_wrong_password_is_refused(agent: Agent, tmp_path: Path) -> None:
    port = await agent.start("UDP")
    csv = write_users_csv(tmp_path / "users.csv", ["u001"], password="not-the-password")
    result = await asyncio.to_thread(
        run_sipp,
        f"127.0.0.1:{port}",
        scenario="register_auth",
        workdir=tmp_path,
        inf=csv,
        calls=1,
        timeout_s=20,
    )
    assert result.failed == 1 and result.successful == 0, result.describe()
    assert agent.counts["registered"] == 0


async def test_torture_messages_on_the_wire() -> None:
    """Every RFC 4475/5118 message sent over UDP gets the reaction the manifest names (or,
    where the RFC allows leniency, is processed); nothing crashes the endpoint. Each message
    goes to a fresh agent: many fixtures share a branch and sent-by, which would make them
    retransmissions of one another (§17.2.3)."""
    manifest = json.loads((TORTURE / "manifest.json").read_text())
    loop = asyncio.get_running_loop()
    # Reactions of this element (a UA that registers users and answers calls) where the RFC
    # leaves the choice to the element's role.
    as_endpoint = {"zeromf": "200", "bcast": "drop", "intmeth": "501", "esc02": "501"}
    for name, entry in sorted(manifest.items()):
        data = _with_rport((TORTURE / f"{name}.sip").read_bytes())
        agent = Agent(AgentConfig(users={"watson": PASSWORD}))
        port = await agent.start("UDP")
        try:
            got = await _exchange(loop, port, data)
            # Still alive and answering after it.
            assert await _exchange(loop, port, _with_rport(OPTIONS)) == "200", name
        finally:
            await agent.close()
        want = as_endpoint.get(name, entry["reaction"])
        acceptable = {want}
        if entry.get("lenient_ok") or want == "accept":
            acceptable |= {"accept", "200", "401", "481", "405"}
        if name in ("mismatch02", "sdp01") or "content_length_mismatch_in_rfc" in entry["quirks"]:
            acceptable.add("400")  # the RFC allows 400, or its own Content-Length is wrong
        if entry["kind"] == "response":
            acceptable = {"drop"}  # a response is never answered; a stray one is dropped
        assert got in acceptable, f"{name}: got {got}, want {sorted(acceptable)}"


async def _exchange(loop: asyncio.AbstractEventLoop, port: int, data: bytes) -> str:
    """Send from a fresh socket; the first final answer (1xx skipped), or "drop" after a
    short silence."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    try:
        sock.sendto(data, ("127.0.0.1", port))
        while True:
            try:
                answer = await asyncio.wait_for(loop.sock_recv(sock, 65535), 0.5)
            except TimeoutError:
                return "drop"
            # Read only the status line: a 400 copies the broken headers of what it answers.
            version, status, _ = answer.split(b" ", 2)
            assert version == b"SIP/2.0"
            if int(status) >= 200:
                return status.decode()
    finally:
        sock.close()


_TOP_VIA_SENT_BY = re.compile(rb"(?im)^((?:via|v)\s*:\s*SIP\s*/\s*2\.0\s*/\s*[a-z]+\s+[^\s;,]+)")


def _with_rport(data: bytes) -> bytes:
    """Ask for the answer at our socket (RFC 3581 rport): the fixtures' Via hosts are
    documentation addresses, and the box answers to the source IP at the Via port otherwise."""
    if data.startswith(b"SIP/2.0"):
        return data
    return _TOP_VIA_SENT_BY.sub(rb"\1;rport", data, count=1)
