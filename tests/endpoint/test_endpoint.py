"""The asyncio endpoint with the whole stack on real sockets: two agents on 127.0.0.1."""

from __future__ import annotations

import asyncio
from typing import TypeVar, cast

import pytest
from support.agent import Agent, AgentConfig

from pbx.sip import Request, Response, make_response, parse
from pbx.sip.events import Peer
from pbx.sip.timers import TimerConfig

FAST = TimerConfig(t1=0.05, t2=0.4, t4=0.5)


@pytest.mark.parametrize("transport", ["UDP", "TCP"])
async def test_call_between_two_agents(transport: str) -> None:
    callee, caller = Agent(AgentConfig(timers=FAST)), Agent(AgentConfig(timers=FAST))
    port = await callee.start(transport)
    await caller.start(transport)
    try:
        status = await asyncio.wait_for(
            caller.call(Peer(transport, "127.0.0.1", port), talk=0.05), 10
        )
        assert status == 200
        assert callee.counts["INVITE"] == 1 and callee.counts["answered"] == 1
        await asyncio.sleep(0.05)
        # Over UDP a slow ACK lets a 200 retransmission through, which is ACKed again.
        acks = callee.counts["ACK"]
        assert acks == 1 or (transport == "UDP" and acks > 1)
        assert callee.counts["BYE"] == 1 and caller.counts["late-2xx"] == 0
        assert len(callee.dialogs) == 0 and len(caller.dialogs) == 0
    finally:
        await caller.close()
        await callee.close()


async def test_call_to_nobody_times_out_as_408() -> None:
    caller = Agent(AgentConfig(timers=FAST))
    await caller.start("UDP")
    silent = await asyncio.get_running_loop().create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    try:
        port = silent[0].get_extra_info("sockname")[1]
        status = await asyncio.wait_for(caller.call(Peer("UDP", "127.0.0.1", port)), 10)
        assert status == 408  # Timer B = 64*T1 fired and the endpoint synthesized 408
    finally:
        silent[0].close()
        await caller.close()


# ------------------------------------------- 2xx retransmissions and re-ACK (§13.2.2.4, §13.3.1.4)

QUICK = TimerConfig(t1=0.02, t2=0.16, t4=0.2)  # 64*T1 = 1.28 s
WINDOW = 64 * QUICK.t1


def kind(message: Request | Response) -> str:
    """The method of a request ("ACK"); status and CSeq method of a response ("200 INVITE")."""
    if isinstance(message, Request):
        return message.method
    return f"{message.status} {message.cseq.method}"


class UdpSocket(asyncio.DatagramProtocol):
    """A bare UDP socket on 127.0.0.1 (see :func:`bind`)."""

    transport: asyncio.DatagramTransport | None = None

    @property
    def port(self) -> int:
        assert self.transport is not None
        port: int = self.transport.get_extra_info("sockname")[1]
        return port

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


SocketT = TypeVar("SocketT", bound=UdpSocket)


async def bind(protocol: SocketT) -> SocketT:
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(lambda: protocol, local_addr=("127.0.0.1", 0))
    return protocol


class Wire(UdpSocket):
    """A peer played by the test: records what it receives, parsed."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[tuple[Request | Response, tuple[str, int]]] = asyncio.Queue()
        self.seen: list[str] = []
        self.messages: list[Request | Response] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        message = parse(data)
        self.seen.append(kind(message))
        self.messages.append(message)
        self.inbox.put_nowait((message, addr))

    async def expect(self, wanted: str, timeout: float = 5.0) -> tuple[Request, tuple[str, int]]:
        """The next request with method ``wanted``, skipping everything else."""
        async with asyncio.timeout(timeout):
            while True:
                message, addr = await self.inbox.get()
                if isinstance(message, Request) and message.method == wanted:
                    return message, addr

    async def quiet(self, wanted: str, seconds: float) -> int:
        """How many ``wanted`` arrive within ``seconds``."""
        before = self.seen.count(wanted)
        await asyncio.sleep(seconds)
        return self.seen.count(wanted) - before


class Relay(UdpSocket):
    """A UDP hop between a caller and the callee at ``callee``: forwards both ways and drops
    the first datagram of each kind listed in ``drop`` (e.g. "200 INVITE", "ACK")."""

    def __init__(self, callee: tuple[str, int], drop: set[str]) -> None:
        self.callee = callee
        self.caller: tuple[str, int] | None = None
        self.drop = set(drop)
        self.forwarded: list[tuple[str, bytes]] = []
        self.dropped: list[tuple[str, bytes]] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if addr == self.callee:
            to = self.caller
        else:
            self.caller, to = addr, self.callee
        what = kind(parse(data))
        if what in self.drop:
            self.drop.discard(what)
            self.dropped.append((what, data))
            return
        if to is not None:
            self.forwarded.append((what, data))
            self.send(data, to)

    def count(self, what: str) -> int:
        return len(self.data(what))

    def data(self, what: str) -> list[bytes]:
        return [data for k, data in self.forwarded if k == what]


async def relayed_call(drop: set[str]) -> tuple[Agent, Agent, Relay]:
    """caller -> relay -> callee over UDP, the relay dropping ``drop``; the call is over."""
    callee, caller = Agent(AgentConfig(timers=QUICK)), Agent(AgentConfig(timers=QUICK))
    port = await callee.start("UDP")
    await caller.start("UDP")
    relay = await bind(Relay(("127.0.0.1", port), drop))
    try:
        status = await asyncio.wait_for(
            caller.call(Peer("UDP", "127.0.0.1", relay.port), talk=0.3), 10
        )
        assert status == 200
        await asyncio.sleep(0.1)  # the BYE's answer is in; L and M still run
    except BaseException:
        relay.close()
        await caller.close()
        await callee.close()
        raise
    return callee, caller, relay


async def test_callee_retransmits_a_lost_200_and_gets_its_ack() -> None:
    callee, caller, relay = await relayed_call({"200 INVITE"})
    try:
        (dropped,) = relay.dropped
        assert dropped[0] == "200 INVITE"
        # the retransmission (T1 later) got through: the very same 200; more of them only if
        # the ACK was slow to arrive, each answered with the same ACK
        oks = relay.data("200 INVITE")
        assert len(oks) >= 1 and set(oks) == {dropped[1]}
        acks = relay.data("ACK")
        assert len(acks) == len(oks) and len(set(acks)) == 1
        assert callee.counts["ACK"] == len(acks) and callee.counts["BYE"] == 1
        assert caller.counts["late-2xx"] == 0 and caller.counts["stray-2xx"] == 0
        sent_200s = len(oks)
        await asyncio.sleep(WINDOW)  # past Timer L: the ACK came, so no AckTimeout
        assert callee.counts["ack-timeout"] == 0 and callee.counts["bye-sent"] == 0
        assert len(callee.endpoint.layer) == 0 and len(callee.dialogs) == 0
        assert relay.count("200 INVITE") == sent_200s  # the ACK stopped the retransmissions
    finally:
        relay.close()
        await caller.close()
        await callee.close()


async def test_caller_acks_a_retransmitted_200_again() -> None:
    callee, caller, relay = await relayed_call({"ACK"})
    try:
        # The first ACK was lost: the callee's 200 came again and the caller's endpoint
        # answered it with the same ACK, without bothering the agent.
        (dropped,) = relay.dropped
        assert dropped[0] == "ACK"
        oks = relay.data("200 INVITE")
        assert len(oks) >= 2  # a third only if the re-ACK was slow to arrive
        acks = relay.data("ACK")
        assert len(acks) == len(oks) - 1  # one ACK per 200, the first one lost
        assert set(acks) == {dropped[1]}  # the same ACK each time
        assert callee.counts["ACK"] == len(acks)
        assert caller.counts["late-2xx"] == 0 and caller.counts["stray-2xx"] == 0
        assert callee.counts["BYE"] == 1
        sent_200s = len(oks)
        await asyncio.sleep(WINDOW)
        assert callee.counts["ack-timeout"] == 0
        assert relay.count("200 INVITE") == sent_200s
    finally:
        relay.close()
        await caller.close()
        await callee.close()


async def test_caller_sends_the_ack_again_for_every_200_retransmission() -> None:
    """A bare UAS that sends its 200 again and again: one identical ACK per 200, while the
    INVITE transaction lives (Timer M) and after it is gone (a stray 2xx), for 64*T1."""
    callee = await bind(Wire())
    caller = Agent(AgentConfig(timers=QUICK))
    await caller.start("UDP")
    call = asyncio.create_task(caller.call(Peer("UDP", "127.0.0.1", callee.port), talk=3.0))
    try:
        invite, addr = await callee.expect("INVITE")
        contact = [("Contact", f"<sip:uas@127.0.0.1:{callee.port}>")]
        ok = bytes(make_response(invite, 200, to_tag="uas-1", extra=contact))
        callee.send(ok, addr)
        first, _ = await callee.expect("ACK")
        assert first.to.tag == "uas-1" and first.cseq.seq == invite.cseq.seq
        assert first.top_via.branch != invite.top_via.branch  # a 2xx's ACK has its own branch
        for _ in range(3):  # 200 retransmissions while the client transaction is Accepted
            callee.send(ok, addr)
            again, _ = await callee.expect("ACK")
            assert bytes(again) == bytes(first)
        # The INVITE transaction is gone (e.g. Timer M): the 200 is a stray now, same answer.
        caller.endpoint.layer.terminate(f"{invite.top_via.branch}|INVITE")
        callee.send(ok, addr)
        again, _ = await callee.expect("ACK")
        assert bytes(again) == bytes(first)
        # A 200 for another dialog (a fork: another To tag) is not re-ACKed: the TU gets it.
        callee.send(bytes(make_response(invite, 200, to_tag="uas-2", extra=contact)), addr)
        assert await callee.quiet("ACK", 0.2) == 0
        assert caller.counts["stray-2xx"] == 1 and caller.counts["late-2xx"] == 0
        # 64*T1 after the ACK was sent the endpoint forgets it: the 200 goes to the TU.
        await asyncio.sleep(WINDOW)
        callee.send(ok, addr)
        assert await callee.quiet("ACK", 0.2) == 0
        assert caller.counts["stray-2xx"] == 2
        assert not caller.endpoint._acks
        assert callee.seen.count("ACK") == 5
        bye, addr = await callee.expect("BYE")
        callee.send(bytes(make_response(bye, 200)), addr)
        assert await asyncio.wait_for(call, 5) == 200
    finally:
        call.cancel()
        callee.close()
        await caller.close()


async def test_callee_without_ack_gets_ack_timeout_and_hangs_up() -> None:
    """A bare UAC that never ACKs: the agent's 200 is retransmitted T1, 2T1, 4T1, ... T2 for
    64*T1, then the endpoint says AckTimeout and the agent ends the dialog with BYE."""
    callee = Agent(AgentConfig(timers=QUICK))
    port = await callee.start("UDP")
    caller = await bind(Wire())
    target = ("127.0.0.1", port)
    me = f"127.0.0.1:{caller.port}"
    invite = parse(
        (
            f"INVITE sip:service@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {me};branch=z9hG4bK-noack-1;rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:uac@{me}>;tag=uac-1\r\n"
            f"To: <sip:service@127.0.0.1:{port}>\r\n"
            "Call-ID: noack-1@127.0.0.1\r\n"
            "CSeq: 7 INVITE\r\n"
            f"Contact: <sip:uac@{me}>\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
    )
    assert isinstance(invite, Request)
    try:
        loop = asyncio.get_running_loop()
        start = loop.time()
        caller.send(bytes(invite), target)
        bye, addr = await caller.expect("BYE", timeout=10)
        elapsed = loop.time() - start
        assert elapsed >= WINDOW  # Timer L, 64*T1 after the 200
        # the 200 and its retransmissions (T1 doubling to T2 within 64*T1: 10 of them)
        assert 5 <= caller.seen.count("200 INVITE") <= 11  # fewer if the loop runs late
        assert callee.counts["ack-timeout"] == 1 and callee.counts["bye-sent"] == 1
        # the BYE is in the dialog the 200 made, sent to the caller's Contact (this socket)
        oks = [m for m in caller.messages if kind(m) == "200 INVITE"]
        assert len({bytes(m) for m in oks}) == 1  # the very same 200 each time
        ok = oks[0]
        assert addr == target
        assert bye.call_id == "noack-1@127.0.0.1"
        assert bye.from_.tag == ok.to.tag and bye.to.tag == "uac-1"
        assert bye.cseq.method == "BYE"
        caller.send(bytes(make_response(bye, 200)), addr)
        await asyncio.sleep(0.1)
        assert callee.counts["bye-200"] == 1
        assert len(callee.dialogs) == 0
        assert await caller.quiet("200 INVITE", 0.2) == 0  # the transaction is over
        assert len(callee.endpoint.layer) <= 1  # at most the BYE's client (Timer K)
    finally:
        caller.close()
        await callee.close()
