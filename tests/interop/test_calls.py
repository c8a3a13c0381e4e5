"""Calls through the box (registrar + B2BUA + media relay) with SIPp on both ends.

The caller is a SIPp UAC authenticating as extension 101; the callee a SIPp UAS bound to
extension 102 (a binding put in the store, as a REGISTER would). The box answers on 127.0.0.1
with its real endpoint, store (SQLite in a temp folder) and relay.
"""

from __future__ import annotations

import asyncio
import re
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from support.agent import Agent, AgentConfig, loopback_binding
from support.ports import free_port
from support.sipp import run_sipp, start_sipp
from support.wait import wait_for

from appliance.store import open_store
from pbx.rtp.packet import TelephoneEvent
from pbx.service import SipCore
from pbx.settings import SipSettings
from pbx.sip.events import Peer
from pbx.sip.message import Request, make_response
from pbx.sip.parser import parse
from pbx.sip.timers import TimerConfig
from pbx.store import Disposition, Extension, Store

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]
PASSWORD = "Secret-101"


@pytest.fixture
async def box(tmp_path: Path) -> AsyncIterator[tuple[SipCore, Store]]:
    store = open_store(tmp_path / "data")
    settings = SipSettings(port=free_port(), t1=0.1, t2=0.8, rtp_port_min=40000, rtp_port_max=40999)
    for number in ("101", "102", "103"):
        store.directory.create(Extension(number=number, display_name=f"User {number}"))
        store.directory.set_password(number, PASSWORD, settings.domain)
    core = SipCore(settings, store, b"k" * 32)
    await core.start()
    yield core, store
    await core.close()
    store.close()


def bind(store: Store, number: str, port: int, transport: str = "UDP") -> None:
    store.bindings.put(loopback_binding(number, port, transport))


async def test_call_101_to_102_through_the_box(box: tuple[SipCore, Store], tmp_path: Path) -> None:
    core, store = box
    port = core.endpoint.local("UDP")[1]
    with start_sipp(scenario="uas_call", workdir=tmp_path, timeout_s=60) as callee:
        bind(store, "102", callee.port)
        result = await asyncio.to_thread(
            run_sipp,
            f"127.0.0.1:{port}",
            scenario="uac_call_auth",
            workdir=tmp_path,
            calls=3,
            rate=5,
            service="102",
            auth_user="101",
            auth_password=PASSWORD,
            auth_uri=f"102@127.0.0.1:{port}",
            duration_ms=200,
            timeout_s=40,
        )
    assert result.successful == 3 and result.failed == 0, result.describe()
    records = store.cdr.search()
    assert len(records) == 3
    for record in records:
        assert record.disposition is Disposition.ANSWERED
        assert (record.caller_number, record.dialed, record.callee_number) == ("101", "102", "102")
        assert record.hangup_side.value == "caller"
        assert record.codec == "PCMU"
        assert record.billable > 0
    assert not core.calls.calls and not core.relay.sessions


# ------------------------------------------------ scenarios with stack agents on both ends

FAST = TimerConfig(t1=0.05, t2=0.4, t4=0.5)


async def agent(**config: object) -> Agent:
    ua = Agent(AgentConfig(timers=FAST, **config))  # type: ignore[arg-type]
    await ua.start("UDP")
    return ua


async def place_call(core: SipCore, dialed: str, **options: object) -> tuple[int, Agent]:
    caller = await agent()
    box = Peer("UDP", "127.0.0.1", core.endpoint.local("UDP")[1])
    status = await asyncio.wait_for(
        caller.call(box, dialed, auth_as=("101", PASSWORD), **options),  # type: ignore[arg-type]
        20,
    )
    return status, caller


async def settle(core: SipCore) -> None:
    for _ in range(100):
        if not core.calls.calls and not core.relay.sessions:
            # the per-number call counts (call limits) went back to zero with the calls
            assert all(core.calls.active_calls(n) == 0 for n in ("101", "102", "103"))
            return
        await asyncio.sleep(0.02)


async def test_call_limits(box: tuple[SipCore, Store]) -> None:
    """An extension with call limit 1 that is in a call is busy for a second caller."""
    core, store = box
    store.directory.update(replace(store.directory.get("102"), call_limit=1))  # type: ignore[type-var]
    callee = await agent()
    bind(store, "102", callee.endpoint.local("UDP")[1])
    first = asyncio.ensure_future(place_call(core, "102", talk=1.0))
    for _ in range(100):
        if core.calls.calls and callee.counts["answered"]:
            break
        await asyncio.sleep(0.02)
    status, second = await place_call(core, "102")
    assert status == 486
    first_status, first_caller = await first
    assert first_status == 200
    await settle(core)
    dispositions = sorted(r.disposition.value for r in store.cdr.search())
    assert dispositions == ["ANSWERED", "BUSY"]
    for ua in (callee, second, first_caller):
        await ua.close()


async def test_busy_callee(box: tuple[SipCore, Store]) -> None:
    core, store = box
    callee = await agent(answer_status=486)
    bind(store, "102", callee.endpoint.local("UDP")[1])
    status, caller = await place_call(core, "102")
    await settle(core)
    assert status == 486
    (record,) = store.cdr.search()
    assert record.disposition is Disposition.BUSY and record.sip_code == 486
    await caller.close()
    await callee.close()


async def test_no_answer_times_out_and_cancels_the_callee(box: tuple[SipCore, Store]) -> None:
    core, store = box
    store.directory.update(replace(store.directory.get("102"), ring_timeout=1))  # type: ignore[type-var]
    callee = await agent(ring_seconds=30)
    bind(store, "102", callee.endpoint.local("UDP")[1])
    status, caller = await place_call(core, "102")
    await settle(core)
    assert status == 480
    assert callee.counts["CANCEL"] == 1 and callee.counts["answered"] == 0
    (record,) = store.cdr.search()
    assert record.disposition is Disposition.NO_ANSWER
    await caller.close()
    await callee.close()


async def test_caller_cancels_while_ringing(box: tuple[SipCore, Store]) -> None:
    core, store = box
    callee = await agent(ring_seconds=30)
    bind(store, "102", callee.endpoint.local("UDP")[1])
    status, caller = await place_call(core, "102", cancel_after=0.2)
    await settle(core)
    assert status == 487
    assert caller.counts["got-180"] >= 1
    assert callee.counts["CANCEL"] == 1
    (record,) = store.cdr.search()
    assert record.disposition is Disposition.CANCELLED and record.hangup_side.value == "caller"
    await caller.close()
    await callee.close()


async def test_forking_first_answer_wins_the_other_is_cancelled(
    box: tuple[SipCore, Store],
) -> None:
    core, store = box
    desk = await agent(ring_seconds=0.3)
    soft = await agent(ring_seconds=30)
    bind(store, "102", desk.endpoint.local("UDP")[1])
    store.bindings.put(
        replace(
            store.bindings.list("102")[0],
            contact=f"<sip:102@127.0.0.1:{soft.endpoint.local('UDP')[1]}>",
            source_port=soft.endpoint.local("UDP")[1],
        )
    )
    status, caller = await place_call(core, "102", talk=0.1)
    await settle(core)
    assert status == 200
    assert desk.counts["answered"] == 1 and desk.counts["BYE"] == 1
    assert soft.counts["CANCEL"] == 1 and soft.counts["answered"] == 0
    (record,) = store.cdr.search()
    assert record.disposition is Disposition.ANSWERED
    for ua in (caller, desk, soft):
        await ua.close()


class SilentPhone(asyncio.DatagramProtocol):
    """A contact that receives INVITEs but sends nothing until told to ring."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, tuple[str, int]]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment] (uvloop's is no subclass)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append((data, addr))

    def methods(self) -> list[str]:
        return [data.split(b" ", 1)[0].decode() for data, _ in self.received]

    def ring(self) -> None:
        data, addr = self.received[0]
        invite = parse(data)
        assert isinstance(invite, Request) and self.transport is not None
        self.transport.sendto(bytes(make_response(invite, 180, to_tag="silent")), addr)


async def test_a_losing_fork_is_cancelled_only_after_it_rang(
    box: tuple[SipCore, Store],
) -> None:
    """§9.1: no CANCEL before a provisional response; it follows the fork's first 18x."""
    core, store = box
    desk = await agent(ring_seconds=0.3)
    bind(store, "102", desk.endpoint.local("UDP")[1])
    loop = asyncio.get_running_loop()
    transport, silent = await loop.create_datagram_endpoint(
        SilentPhone, local_addr=("127.0.0.1", 0)
    )
    silent_port = transport.get_extra_info("sockname")[1]
    bind(store, "102", silent_port)
    status, caller = await place_call(core, "102", talk=0.1)
    await settle(core)
    assert status == 200 and desk.counts["answered"] == 1
    assert "INVITE" in silent.methods() and "CANCEL" not in silent.methods()
    silent.ring()
    await wait_for(lambda: "CANCEL" in silent.methods(), "the CANCEL after the 180", timeout=10)
    transport.close()
    for ua in (caller, desk):
        await ua.close()


async def test_offline_and_unknown_numbers(box: tuple[SipCore, Store]) -> None:
    core, store = box
    status, caller = await place_call(core, "103")  # an extension with no binding
    assert status == 480
    status_unknown, caller2 = await place_call(core, "999")
    assert status_unknown == 404
    # Refused before anyone rang, and still on record.
    records = {r.dialed: r for r in store.cdr.search()}
    assert records["103"].sip_code == 480 and records["103"].disposition is Disposition.FAILED
    assert records["999"].sip_code == 404 and records["999"].hangup_cause == "No such extension"
    await caller.close()
    await caller2.close()


async def test_hold_and_resume_by_reinvite(box: tuple[SipCore, Store]) -> None:
    core, store = box
    callee = await agent()
    bind(store, "102", callee.endpoint.local("UDP")[1])
    status, caller = await place_call(core, "102", hold=True, talk=0.05)
    await settle(core)
    assert status == 200
    assert caller.counts["reinvite-sendonly-200"] == 1
    assert caller.counts["reinvite-sendrecv-200"] == 1
    assert callee.counts["INVITE"] == 3  # the call and both re-INVITEs reached the callee
    assert b"a=sendrecv" in callee.last_offer  # the resume offer, rewritten by the box
    assert b"a=recvonly" not in caller.last_sdp  # the caller's last answer is for resume
    assert b"127.0.0.1" in callee.last_offer  # media still anchored on the box
    await caller.close()
    await callee.close()


async def test_wrong_password_and_unauthenticated_calls_are_refused(
    box: tuple[SipCore, Store],
) -> None:
    core, _ = box
    caller = await agent()
    target = Peer("UDP", "127.0.0.1", core.endpoint.local("UDP")[1])
    assert await caller.call(target, "102", auth_as=("101", "wrong")) == 403
    assert await caller.call(target, "102") == 401
    await caller.close()


@pytest.mark.parametrize("late_offer", [False, True], ids=["offer-in-invite", "late-offer"])
async def test_rtp_flows_both_ways_through_the_box(
    box: tuple[SipCore, Store], late_offer: bool
) -> None:
    """Two "phones" (UDP sockets at the ports their SDP names) exchange RTP through the
    relay: each only ever talks to the box's address, packets arrive unchanged, and the
    call record counts them.

    With ``late_offer`` the caller's INVITE has no SDP (RFC 3261 §13.2.1): the box forwards
    it without SDP, carries the callee's offer (in its 200) to the caller rewritten to the
    box's leg-A port, and the caller's answer (in its ACK) to the callee rewritten to the
    box's leg-B port."""
    core, store = box
    loop = asyncio.get_running_loop()
    phones = []
    for _ in range(2):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        phones.append(sock)
    caller_rtp, callee_rtp = phones
    callee = await agent(media_port=callee_rtp.getsockname()[1])
    bind(store, "102", callee.endpoint.local("UDP")[1])
    caller = Agent(AgentConfig(timers=FAST, media_port=caller_rtp.getsockname()[1]))
    await caller.start("UDP")
    target = Peer("UDP", "127.0.0.1", core.endpoint.local("UDP")[1])
    call = asyncio.ensure_future(
        caller.call(target, "102", talk=1.0, auth_as=("101", PASSWORD), late_offer=late_offer)
    )
    await asyncio.wait_for(caller.answered.wait(), 10)
    box_for_caller = _sdp_port(caller.last_sdp)  # where the caller must send
    if late_offer:
        assert callee.first_offer == b""  # forwarded without SDP
        for _ in range(100):  # the callee's ACK, with the box's answer
            if callee.ack_bodies:
                break
            await asyncio.sleep(0.02)
        (answer,) = callee.ack_bodies
        box_for_callee = _sdp_port(answer)  # where the callee must send
        assert b"c=IN IP4 127.0.0.1" in answer and b"PCMU/8000" in answer
        assert b"telephone-event" in caller.last_sdp  # the callee's offer, rewritten
        ports = {caller_rtp.getsockname()[1], callee_rtp.getsockname()[1]}
        assert not ports & {box_for_caller, box_for_callee}  # the box's ports, not the phones'
    else:
        box_for_callee = _sdp_port(callee.first_offer)  # where the callee must send
    packets = [_rtp(seq) for seq in range(50)]
    for packet in packets:
        caller_rtp.sendto(packet, ("127.0.0.1", box_for_caller))
        callee_rtp.sendto(packet[:12] + b"B" * 160, ("127.0.0.1", box_for_callee))
        await asyncio.sleep(0.002)
    got_callee = [await asyncio.wait_for(loop.sock_recv(callee_rtp, 2048), 2) for _ in packets]
    got_caller = [await asyncio.wait_for(loop.sock_recv(caller_rtp, 2048), 2) for _ in packets]
    assert got_callee == packets  # bytes, SSRC, sequence untouched
    assert all(p.endswith(b"B" * 160) for p in got_caller)
    assert await call == 200
    await settle(core)
    (record,) = store.cdr.search()
    assert record.media_from_caller.packets == 50 and record.media_from_callee.packets == 50
    assert record.media_from_caller.lost == 0 and record.codec == "PCMU"
    for sock in phones:
        sock.close()
    await caller.close()
    await callee.close()


def _rtp(seq: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0x1234ABCD) + b"A" * 160


def _sdp_port(body: bytes) -> int:
    match = re.search(rb"m=audio (\d+)", body)
    assert match, body
    return int(match.group(1))


async def test_blind_transfer_by_refer(box: tuple[SipCore, Store]) -> None:
    """101 calls 102; 102 transfers 101 to 103 with REFER. The box reports progress with
    NOTIFY, connects 101 to 103 on the same media leg and lets 102 go; 101's BYE then ends
    the call at 103."""
    core, store = box
    bob, carol = await agent(), await agent()
    bind(store, "102", bob.endpoint.local("UDP")[1])
    store.bindings.put(
        replace(
            store.bindings.list("102")[0],
            aor="103",
            contact=f"<sip:103@127.0.0.1:{carol.endpoint.local('UDP')[1]}>",
            source_port=carol.endpoint.local("UDP")[1],
        )
    )
    alice = Agent(AgentConfig(timers=FAST))
    await alice.start("UDP")
    target = Peer("UDP", "127.0.0.1", core.endpoint.local("UDP")[1])
    call = asyncio.ensure_future(alice.call(target, "102", talk=1.5, auth_as=("101", PASSWORD)))
    await asyncio.wait_for(alice.answered.wait(), 10)
    assert await bob.refer("103") == 202
    for _ in range(100):  # the transfer completes: carol answered, bob was released
        if carol.counts["answered"] and bob.counts["in-dialog-BYE"]:
            break
        await asyncio.sleep(0.02)
    assert carol.counts["answered"] == 1
    assert bob.counts["in-dialog-BYE"] == 1  # the box released the transferor
    assert [n.split(b"\r\n")[0] for n in bob.notifies] == [b"SIP/2.0 100 Trying", b"SIP/2.0 200 OK"]
    assert await call == 200
    await settle(core)
    assert carol.counts["in-dialog-BYE"] == 1  # alice's hang-up reached the new party
    (record,) = store.cdr.search()
    assert record.disposition is Disposition.ANSWERED and record.callee_number == "103"
    for ua in (alice, bob, carol):
        await ua.close()


# ------------------------------------------- in-dialog INFO and UPDATE, RFC 4733 events


async def answered_call(
    core: SipCore, store: Store, caller_rtp: int = 40000, callee_rtp: int = 40002
) -> tuple[Agent, Agent, asyncio.Future[int]]:
    """101 calls 102 (stack agents) and talks for 2 s; returns once 102 has the ACK."""
    callee = await agent(media_port=callee_rtp)
    bind(store, "102", callee.endpoint.local("UDP")[1])
    caller = await agent(media_port=caller_rtp)
    target = Peer("UDP", "127.0.0.1", core.endpoint.local("UDP")[1])
    call = asyncio.ensure_future(caller.call(target, "102", talk=2.0, auth_as=("101", PASSWORD)))
    await asyncio.wait_for(caller.answered.wait(), 10)
    for _ in range(100):
        if callee.counts["ACK"]:
            break
        await asyncio.sleep(0.02)
    return caller, callee, call


async def test_info_is_relayed_unchanged_both_ways(box: tuple[SipCore, Store]) -> None:
    """INFO with a DTMF relay body (application/dtmf-relay, as many phones send key presses)
    reaches the other phone with its body and Content-Type unchanged, in either direction."""
    core, store = box
    caller, callee, call = await answered_call(core, store)
    keypress = b"Signal=5\r\nDuration=160\r\n"
    reply = await caller.send_in_dialog("INFO", keypress, "application/dtmf-relay")
    assert reply.status == 200
    assert callee.in_dialog == [("INFO", "application/dtmf-relay", keypress)]
    back = b"Signal=#\r\nDuration=250\r\n"
    reply = await callee.send_in_dialog("INFO", back, "application/dtmf-relay")
    assert reply.status == 200
    assert caller.in_dialog == [("INFO", "application/dtmf-relay", back)]
    assert await call == 200
    await settle(core)
    (record,) = store.cdr.search()
    assert record.disposition is Disposition.ANSWERED
    await caller.close()
    await callee.close()


async def test_update_puts_the_call_on_hold_and_back(box: tuple[SipCore, Store]) -> None:
    """UPDATE (RFC 3311) with a sendonly offer reaches the callee rewritten to the box's
    address and port; the callee's recvonly answer comes back rewritten; the relay's legs
    follow the directions, and a sendrecv UPDATE resumes."""
    core, store = box
    caller, callee, call = await answered_call(core, store)
    (session,) = core.relay.sessions
    hold = caller.sdp.replace(b"a=rtpmap:0", b"a=sendonly\r\na=rtpmap:0", 1)
    reply = await caller.send_in_dialog("UPDATE", hold, "application/sdp")
    assert reply.status == 200
    method, ctype, offer = callee.in_dialog[-1]
    assert (method, ctype) == ("UPDATE", "application/sdp")
    assert b"a=sendonly" in offer and b"c=IN IP4 127.0.0.1" in offer
    assert _sdp_port(offer) == session.b.local_address[1]  # the box's leg-B port
    assert b"a=recvonly" in caller.last_sdp  # the callee's answer, through the box
    assert _sdp_port(caller.last_sdp) == session.a.local_address[1]
    assert (session.a.direction, session.b.direction) == ("sendonly", "recvonly")
    reply = await caller.send_in_dialog("UPDATE", caller.sdp, "application/sdp")
    assert reply.status == 200
    assert b"a=sendonly" not in callee.in_dialog[-1][2]
    assert b"a=recvonly" not in caller.last_sdp
    assert (session.a.direction, session.b.direction) == ("sendrecv", "sendrecv")
    assert [m for m, _, _ in callee.in_dialog] == ["UPDATE", "UPDATE"]
    assert await call == 200
    await settle(core)
    await caller.close()
    await callee.close()


async def test_rfc4733_telephone_events_pass_through(box: tuple[SipCore, Store]) -> None:
    """A key press sent as RFC 4733 telephone-event RTP (payload type 101, as both phones
    offered) arrives at the other phone byte for byte; the relay sees the digit once."""
    core, store = box
    loop = asyncio.get_running_loop()
    socks = []
    for _ in range(2):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        socks.append(sock)
    caller_rtp, callee_rtp = socks
    caller, callee, call = await answered_call(
        core, store, caller_rtp.getsockname()[1], callee_rtp.getsockname()[1]
    )
    (session,) = core.relay.sessions
    seen: list[tuple[str, TelephoneEvent]] = []
    session.on_dtmf = lambda leg, event: seen.append(("A" if leg is session.a else "B", event))
    # Digit 5: a marked start, two updates, and the end packet three times (§2.5.1.4), all
    # with the event's start timestamp.
    durations = [(160, False), (320, False), (480, False), (640, True), (640, True), (640, True)]
    packets = [
        struct.pack("!BBHII", 0x80, (0x80 if i == 0 else 0) | 101, 7 + i, 16000, 0x5EED)
        + bytes(TelephoneEvent(event=5, end=end, volume=10, duration=duration))
        for i, (duration, end) in enumerate(durations)
    ]
    box_for_caller = _sdp_port(caller.last_sdp)
    for packet in packets:
        caller_rtp.sendto(packet, ("127.0.0.1", box_for_caller))
        await asyncio.sleep(0.005)
    got = [await asyncio.wait_for(loop.sock_recv(callee_rtp, 2048), 2) for _ in packets]
    assert got == packets
    assert [(side, e.digit, e.end) for side, e in seen] == [("A", "5", True)]
    assert await call == 200
    await settle(core)
    for sock in socks:
        sock.close()
    await caller.close()
    await callee.close()
