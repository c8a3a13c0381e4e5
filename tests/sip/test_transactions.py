"""The transaction layer (pbx.sip.transactions): matching (RFC 3261 §17.1.3, §17.2.3, §9.2,
the RFC 2543 fallback), stamping and addressing (§18.2.1, §18.2.2, RFC 3581), the timers with
their exact schedules, RFC 6026 Accepted, reliable transports, transport errors, no leaks.

Time is only ever passed in: every timer is driven through ``next_timer``/``handle_timer``.
"""

from __future__ import annotations

import gc
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from pbx.sip import LocalProtocolError, Request, Response, make_response, parse
from pbx.sip.events import (
    AckReceived,
    AckTimeout,
    CancelReceived,
    Event,
    Peer,
    RequestReceived,
    ResponseReceived,
    StrayResponse,
    TransactionTerminated,
    TransactionTimeout,
    Transmit,
    TransportFailed,
)
from pbx.sip.timers import TimerConfig
from pbx.sip.transaction import State
from pbx.sip.transactions import TransactionLayer, derived_tag, response_target, stamp_request

PHONE = Peer("UDP", "192.0.2.10", 5060)
PHONE_TCP = Peer("TCP", "192.0.2.10", 49152, connection=3)
GATEWAY = Peer("UDP", "192.0.2.20", 5060)
GATEWAY_TCP = Peer("TCP", "192.0.2.20", 5060)

SDP = (
    b"v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=-\r\n"
    b"c=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8\r\n"
)


def phone(
    method: str = "INVITE",
    *,
    branch: str | None = "z9hG4bK-inv-1",
    sent_by: str = "192.0.2.10:5060",
    transport: str = "UDP",
    rport: bool = False,
    cseq: int = 1,
    cseq_method: str | None = None,
    to_tag: str | None = None,
    call_id: str = "call-1@192.0.2.10",
    uri: str = "sip:200@pbx.example.com",
    more_vias: str = "",
) -> Request:
    """A request as a desk phone (Alice, 100) sends it to the PBX."""
    params = (f";branch={branch}" if branch else "") + (";rport" if rport else "")
    to = "<sip:200@pbx.example.com>" + (f";tag={to_tag}" if to_tag else "")
    body = SDP if method == "INVITE" else b""
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/{transport} {sent_by}{params}{more_vias}",
        "Max-Forwards: 70",
        'From: "Alice" <sip:100@pbx.example.com>;tag=a1b2c3',
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
    ]
    if method == "INVITE":
        lines += [f"Contact: <sip:100@{sent_by}>", "Content-Type: application/sdp"]
    lines += ["User-Agent: Yealink SIP-T46S 66.86.0.15", f"Content-Length: {len(body)}"]
    message = parse(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    assert isinstance(message, Request)
    return message


def ours(
    method: str = "INVITE", *, branch: str = "z9hG4bKpbx-1", cseq: int = 1, transport: str = "UDP"
) -> Request:
    """A request the PBX sends to a gateway."""
    body = SDP if method == "INVITE" else b""
    text = (
        f"{method} sip:+15551234567@192.0.2.20 SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 192.0.2.1:5060;branch={branch};rport\r\n"
        "Route: <sip:192.0.2.20;lr>\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:100@pbx.example.com>;tag=pbx77\r\n"
        "To: <sip:+15551234567@192.0.2.20>\r\n"
        "Call-ID: out-1@pbx.example.com\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Contact: <sip:100@192.0.2.1:5060>\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    message = parse(text.encode() + body)
    assert isinstance(message, Request)
    return message


def reply(req: Request, status: int, to_tag: str | None = "gw-9") -> Response:
    """A response as it comes off the wire (serialized and parsed again)."""
    message = parse(bytes(make_response(req, status, to_tag=None if status == 100 else to_tag)))
    assert isinstance(message, Response)
    return message


def sent(layer: TransactionLayer) -> list[tuple[str, Peer]]:
    """What the layer transmitted since the last call: (method or status, peer)."""
    out = []
    for transmit in layer.transmits():
        message = parse(transmit.data)
        kind = message.method if isinstance(message, Request) else str(message.status)
        out.append((kind, transmit.peer))
    return out


def run_timers(layer: TransactionLayer, until: float) -> list[tuple[float, str]]:
    """Fire every timer up to ``until`` exactly at its deadline; (time, kind) of each send."""
    log: list[tuple[float, str]] = []
    while (deadline := layer.next_timer()) is not None and deadline <= until:
        layer.handle_timer(deadline)
        log.extend((deadline, kind) for kind, _ in sent(layer))
    return log


def received(layer: TransactionLayer, req: Request, source: Peer = PHONE) -> str:
    """Deliver a new request; returns the server transaction key the TU was given."""
    layer.receive(req, source, 0.0)
    (event,) = layer.events()
    assert isinstance(event, RequestReceived)
    return event.key


# ----------------------------------------------------------------- server INVITE


def test_new_invite_is_stamped_answered_with_100_and_passed_to_the_tu() -> None:
    layer = TransactionLayer()
    nat = Peer("UDP", "203.0.113.9", 61000)
    invite = phone(sent_by="10.0.0.5:5060", rport=True)
    layer.receive(invite, nat, 0.0)
    (event,) = layer.events()
    assert isinstance(event, RequestReceived)
    assert event.key == "z9hG4bK-inv-1|INVITE|10.0.0.5:5060"
    assert event.source == nat
    # §18.2.1 + RFC 3581 §4: received and rport filled in on a new Request; the rest intact
    via = event.request.headers.values("Via")[0]
    assert via == "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-inv-1;rport=61000;received=203.0.113.9"
    assert event.request.top_via.rport == 61000
    assert event.request.body == SDP and event.request.call_id == invite.call_id
    assert invite.headers.values("Via")[0].endswith(";rport")  # the original is unchanged
    # §17.2.1: 100 Trying at once, to the address RFC 3581 says
    (transmit,) = layer.transmits()
    trying = parse(transmit.data)
    assert isinstance(trying, Response) and trying.status == 100
    assert trying.to.tag is None
    assert trying.headers.values("Via")[0] == via
    assert transmit.peer == nat
    assert layer.state(event.key) is State.PROCEEDING
    assert len(layer) == 1


def test_invite_retransmission_is_absorbed_and_the_last_response_resent() -> None:
    layer = TransactionLayer()
    key = received(layer, phone())
    assert sent(layer) == [("100", PHONE)]
    layer.receive(phone(), PHONE, 0.5)
    assert layer.events() == []
    assert sent(layer) == [("100", PHONE)]
    layer.send_response(key, make_response(phone(), 180, to_tag="pbx-t"), 1.0)
    assert sent(layer) == [("180", PHONE)]
    layer.receive(phone(), PHONE, 1.5)
    assert layer.events() == []
    assert sent(layer) == [("180", PHONE)]


def test_non_2xx_final_retransmitted_by_timer_g_capped_at_t2_until_timer_h() -> None:
    layer = TransactionLayer()
    key = received(layer, phone())
    sent(layer)
    layer.send_response(key, make_response(phone(), 486, to_tag="pbx-t"), 1.0)
    assert sent(layer) == [("486", PHONE)]
    log = run_timers(layer, 100.0)
    # G: T1, 2T1, 4T1, then T2 (4 s) each time; H = 64*T1 after the final
    times = [1.5, 2.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5, 32.5]
    assert log == [(t, "486") for t in times]
    assert layer.events() == [TransactionTimeout(key), TransactionTerminated(key)]
    assert len(layer) == 0 and layer.next_timer() is None


def test_ack_for_non_2xx_is_absorbed_and_timer_i_ends_the_transaction() -> None:
    layer = TransactionLayer()
    key = received(layer, phone())
    layer.send_response(key, make_response(phone(), 486, to_tag="pbx-t"), 0.0)
    sent(layer)
    assert run_timers(layer, 0.6) == [(0.5, "486")]
    ack = phone("ACK", to_tag="pbx-t")
    layer.receive(ack, PHONE, 0.7)
    assert layer.events() == [] and sent(layer) == []
    assert layer.state(key) is State.CONFIRMED
    layer.receive(ack, PHONE, 1.0)  # a retransmitted ACK: absorbed too
    layer.receive(phone(), PHONE, 1.1)  # and a late INVITE retransmission
    assert layer.events() == [] and sent(layer) == []
    assert layer.next_timer() == pytest.approx(0.7 + 5.0)  # Timer I = T4, G and H stopped
    assert run_timers(layer, 100.0) == []
    assert layer.events() == [TransactionTerminated(key)]
    assert len(layer) == 0


def test_accepted_state_rfc_6026() -> None:
    layer = TransactionLayer()
    key = received(layer, phone())
    sent(layer)
    ok = make_response(phone(), 200, to_tag="pbx-t", body=SDP)
    layer.send_response(key, ok, 0.0)
    assert sent(layer) == [("200", PHONE)]
    assert layer.state(key) is State.ACCEPTED
    assert layer.next_timer() == 0.5  # Timer G: the layer retransmits the 2xx (§13.3.1.4)
    # an INVITE retransmission is absorbed: not passed to the TU, nothing resent
    layer.receive(phone(), PHONE, 0.3)
    assert layer.events() == [] and sent(layer) == []
    # the TU's 2xx retransmissions pass
    layer.send_response(key, ok, 0.5)
    assert sent(layer) == [("200", PHONE)]
    # anything but a 2xx is a bug of the TU
    for status in (180, 486):
        with pytest.raises(LocalProtocolError):
            layer.send_response(key, make_response(phone(), status, to_tag="pbx-t"), 0.6)
    assert sent(layer) == []
    # the ACK for a 2xx is its own transaction (new branch): it reaches the TU, stamped
    ack = phone("ACK", branch="z9hG4bK-ack-1", to_tag="pbx-t", sent_by="pc.example.com")
    layer.receive(ack, PHONE, 0.7)
    (event,) = layer.events()
    assert isinstance(event, AckReceived) and event.source == PHONE
    assert event.invite_key == key
    assert event.request.top_via.received == "192.0.2.10"
    assert run_timers(layer, 100.0) == []  # the ACK stopped G before it fired
    assert layer.events() == [TransactionTerminated(key)]
    assert len(layer) == 0


def test_ack_reusing_the_invite_branch_in_accepted_reaches_the_tu() -> None:
    layer = TransactionLayer()
    key = received(layer, phone())
    layer.send_response(key, make_response(phone(), 200, to_tag="pbx-t"), 0.0)
    ack = phone("ACK", to_tag="pbx-t")  # same branch as the INVITE (seen in the wild)
    layer.receive(ack, PHONE, 0.1)
    (event,) = layer.events()
    assert isinstance(event, AckReceived) and event.request.method == "ACK"
    assert event.invite_key == key
    assert layer.state(key) is State.ACCEPTED


def test_ack_matching_nothing_reaches_the_tu() -> None:
    layer = TransactionLayer()
    layer.receive(phone("ACK", branch="z9hG4bK-lost", to_tag="x"), PHONE, 0.0)
    (event,) = layer.events()
    assert isinstance(event, AckReceived)
    assert len(layer) == 0 and sent(layer) == []


# ------------------------------------------- 2xx retransmissions (§13.3.1.4) in Accepted


def ack_for_2xx(
    *,
    to_tag: str = "pbx-t",
    cseq: int = 1,
    branch: str = "z9hG4bK-ack-1",
    call_id: str = "call-1@192.0.2.10",
    sent_by: str = "192.0.2.10:5060",
    transport: str = "UDP",
) -> Request:
    """The phone's ACK for the PBX's 2xx: a new branch, the INVITE's CSeq number."""
    return phone(
        "ACK",
        branch=branch,
        to_tag=to_tag,
        cseq=cseq,
        call_id=call_id,
        sent_by=sent_by,
        transport=transport,
    )


def accepted(layer: TransactionLayer, source: Peer = PHONE, transport: str = "UDP") -> str:
    """An INVITE from the phone answered 200 (To tag pbx-t) at 0.0; transmits drained."""
    invite = phone(transport=transport)
    key = received(layer, invite, source)
    layer.send_response(key, make_response(invite, 200, to_tag="pbx-t", body=SDP), 0.0)
    assert [kind for kind, _ in sent(layer)] == ["100", "200"]
    assert layer.state(key) is State.ACCEPTED
    return key


G_SCHEDULE = [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]  # T1, 2T1, 4T1, T2...


def test_2xx_is_retransmitted_t1_doubling_to_t2_until_timer_l_then_ack_timeout() -> None:
    layer = TransactionLayer()
    key = accepted(layer)
    log = run_timers(layer, 100.0)
    assert log == [(t, "200") for t in G_SCHEDULE]  # the last one before L at 64*T1 = 32
    events = layer.events()
    assert [type(e) for e in events] == [AckTimeout, TransactionTerminated]
    timeout = events[0]
    assert isinstance(timeout, AckTimeout) and timeout.key == key
    assert timeout.request.method == "INVITE" and timeout.request.call_id == "call-1@192.0.2.10"
    assert events[1] == TransactionTerminated(key)
    assert len(layer) == 0 and layer.next_timer() is None and not layer._acks


def test_2xx_retransmissions_follow_the_timer_config() -> None:
    layer = TransactionLayer(TimerConfig(t1=0.1, t2=0.4, t4=1.0))
    key = accepted(layer)
    log = run_timers(layer, 10.0)
    expected = [0.1, 0.3, 0.7, 1.1, 1.5, 1.9, 2.3, 2.7, 3.1, 3.5, 3.9, 4.3, 4.7, 5.1, 5.5, 5.9]
    assert [t for t, _ in log] == pytest.approx([*expected, 6.3])  # L at 6.4
    assert [type(e) for e in layer.events()] == [AckTimeout, TransactionTerminated]
    assert key not in layer and len(layer) == 0


def test_the_matching_ack_stops_the_2xx_retransmissions() -> None:
    layer = TransactionLayer()
    key = accepted(layer)
    assert run_timers(layer, 4.0) == [(0.5, "200"), (1.5, "200"), (3.5, "200")]
    ack = ack_for_2xx()
    layer.receive(ack, PHONE, 4.0)
    (event,) = layer.events()
    assert event == AckReceived(ack, PHONE, key)
    assert sent(layer) == []
    assert layer.next_timer() == 32.0  # G is gone, L still runs (RFC 6026)
    layer.receive(phone(), PHONE, 5.0)  # a late INVITE retransmission: still absorbed
    layer.receive(ack, PHONE, 6.0)  # the ACK again (a re-ACK): to the TU, nothing else
    assert layer.events() == [AckReceived(ack, PHONE, key)]
    assert run_timers(layer, 100.0) == []
    assert layer.events() == [TransactionTerminated(key)]  # no AckTimeout: the ACK came
    assert len(layer) == 0 and layer.next_timer() is None and not layer._acks


@pytest.mark.parametrize(
    "stranger",
    [
        ack_for_2xx(to_tag="other-tag"),
        ack_for_2xx(cseq=2),
        ack_for_2xx(call_id="call-2@192.0.2.10"),
        # the INVITE's own branch, but another To tag: not the ACK for this 2xx
        ack_for_2xx(branch="z9hG4bK-inv-1", to_tag="other-tag"),
    ],
    ids=["to-tag", "cseq", "call-id", "invite-branch-other-to-tag"],
)
def test_an_ack_for_another_2xx_does_not_stop_the_retransmissions(stranger: Request) -> None:
    layer = TransactionLayer()
    key = accepted(layer)
    layer.receive(stranger, PHONE, 0.2)
    assert layer.events() == [AckReceived(stranger, PHONE)]  # for the TU, without a key
    assert run_timers(layer, 4.0) == [(0.5, "200"), (1.5, "200"), (3.5, "200")]
    ack = ack_for_2xx()
    layer.receive(ack, PHONE, 4.0)
    assert layer.events() == [AckReceived(ack, PHONE, key)]
    assert run_timers(layer, 100.0) == []
    assert layer.events() == [TransactionTerminated(key)]


def test_the_ack_may_come_from_elsewhere_and_is_stamped() -> None:
    # The ACK for a 2xx follows the dialog's route, not the INVITE's: any source matches.
    layer = TransactionLayer()
    key = accepted(layer)
    assert run_timers(layer, 1.0) == [(0.5, "200")]
    proxy = Peer("UDP", "198.51.100.5", 5060)
    layer.receive(ack_for_2xx(sent_by="proxy.example.com:5080"), proxy, 1.0)
    (event,) = layer.events()
    assert isinstance(event, AckReceived) and event.invite_key == key
    assert event.source == proxy and event.request.top_via.received == "198.51.100.5"
    assert run_timers(layer, 2.0) == []


def test_reliable_transports_do_not_retransmit_the_2xx() -> None:
    layer = TransactionLayer()
    key = accepted(layer, PHONE_TCP, "TCP")
    assert layer.next_timer() == 32.0  # Timer L only
    assert run_timers(layer, 100.0) == []
    assert [type(e) for e in layer.events()] == [AckTimeout, TransactionTerminated]
    assert len(layer) == 0 and not layer._acks
    # with an ACK: nothing sent either, no AckTimeout
    key = accepted(layer, PHONE_TCP, "TCP")
    ack = ack_for_2xx(transport="TCP")
    layer.receive(ack, PHONE_TCP, 1.0)
    assert layer.events() == [AckReceived(ack, PHONE_TCP, key)]
    assert run_timers(layer, 100.0) == []
    assert layer.events() == [TransactionTerminated(key)]
    assert len(layer) == 0 and not layer._acks


def test_a_2xx_from_the_tu_in_accepted_replaces_the_stored_one() -> None:
    layer = TransactionLayer()
    invite = phone()
    key = accepted(layer)
    assert run_timers(layer, 1.0) == [(0.5, "200")]
    # the TU retransmits itself: sent at once, the schedule goes on (1.5, 3.5, ...)
    layer.send_response(key, make_response(invite, 200, to_tag="pbx-t", body=SDP), 1.0)
    assert sent(layer) == [("200", PHONE)]
    assert layer.next_timer() == 1.5
    # another 2xx (another To tag): it is what gets retransmitted, and what the ACK must name
    other = make_response(invite, 200, to_tag="pbx-2")
    layer.send_response(key, other, 1.2)
    assert [t.data for t in layer.transmits()] == [bytes(other)]
    layer.handle_timer(1.5)
    assert [t.data for t in layer.transmits()] == [bytes(other)]
    old = ack_for_2xx()
    layer.receive(old, PHONE, 2.0)
    assert layer.events() == [AckReceived(old, PHONE)]
    new = ack_for_2xx(to_tag="pbx-2")
    layer.receive(new, PHONE, 2.1)
    assert layer.events() == [AckReceived(new, PHONE, key)]
    assert run_timers(layer, 100.0) == []
    assert layer.events() == [TransactionTerminated(key)]
    assert len(layer) == 0 and not layer._acks


def test_an_accepted_transaction_that_ends_early_leaves_no_ack_index() -> None:
    layer = TransactionLayer()
    key = accepted(layer)
    layer.terminate(key)  # the TU gives up
    assert layer.events() == [TransactionTerminated(key)]
    assert not layer._acks and layer.next_timer() is None
    ack = ack_for_2xx()
    layer.receive(ack, PHONE, 0.1)
    assert layer.events() == [AckReceived(ack, PHONE)]  # a late ACK: the TU still hears it
    key = accepted(layer)
    layer.transport_error(PHONE, 0.2)
    assert layer.events() == [TransactionTerminated(key)]
    assert not layer._acks and len(layer) == 0 and layer.next_timer() is None


def test_many_accepted_invites_each_stop_on_their_own_ack() -> None:
    layer = TransactionLayer()
    keys = []
    for n in range(50):
        invite = phone(branch=f"z9hG4bK-{n}", call_id=f"c{n}")
        key = received(layer, invite)
        layer.send_response(key, make_response(invite, 200, to_tag=f"t{n}"), 0.0)
        keys.append(key)
    layer.transmits()
    for n in range(0, 50, 2):  # every other one is ACKed
        layer.receive(ack_for_2xx(to_tag=f"t{n}", call_id=f"c{n}"), PHONE, 0.1)
    assert [e.invite_key for e in layer.events() if isinstance(e, AckReceived)] == keys[::2]
    layer.handle_timer(0.5)
    assert len(layer.transmits()) == 25  # only the unacknowledged ones retransmit
    run_timers(layer, 100.0)
    timeouts = [e.key for e in layer.events() if isinstance(e, AckTimeout)]
    assert timeouts == keys[1::2]
    assert len(layer) == 0 and not layer._acks


def test_second_final_is_refused() -> None:
    layer = TransactionLayer()
    key = received(layer, phone())
    layer.send_response(key, make_response(phone(), 486, to_tag="t"), 0.0)
    with pytest.raises(LocalProtocolError):
        layer.send_response(key, make_response(phone(), 200, to_tag="t"), 0.1)
    with pytest.raises(LocalProtocolError):
        layer.send_response("no-such-key", make_response(phone(), 200, to_tag="t"), 0.1)


# ------------------------------------------------------------- server non-INVITE


def test_non_invite_server_absorbs_retransmissions_and_ends_on_timer_j() -> None:
    layer = TransactionLayer()
    bye = phone("BYE", branch="z9hG4bK-bye-1", cseq=2, to_tag="pbx-t")
    key = received(layer, bye)
    assert key == "z9hG4bK-bye-1|BYE|192.0.2.10:5060"
    assert sent(layer) == []  # no automatic 100 for non-INVITE
    layer.receive(bye, PHONE, 0.5)  # Trying: discarded
    assert layer.events() == [] and sent(layer) == []
    layer.send_response(key, make_response(bye, 200), 1.0)
    assert sent(layer) == [("200", PHONE)]
    assert layer.state(key) is State.COMPLETED
    layer.receive(bye, PHONE, 2.0)
    assert layer.events() == [] and sent(layer) == [("200", PHONE)]
    assert layer.next_timer() == 33.0  # Timer J = 64*T1
    run_timers(layer, 100.0)
    assert layer.events() == [TransactionTerminated(key)]
    assert len(layer) == 0


def test_a_completed_non_invite_server_keeps_only_the_bytes_it_resends() -> None:
    """Completed lasts 64*T1 only to resend the final response: the parsed request and
    response (dozens of objects the cyclic GC would scan) are let go at once."""
    layer = TransactionLayer()
    register = phone("REGISTER", branch="z9hG4bK-reg-1", uri="sip:pbx.example.com")
    key = received(layer, register)
    final = make_response(register, 200, to_tag="pbx-r")
    watched = weakref.ref(final)
    layer.send_response(key, final, 1.0)
    wire = bytes(final)
    del final
    gc.collect()
    assert watched() is None  # nothing holds the parsed response any more
    tx = layer._servers[key]
    assert tx.request is None and tx.response is None
    layer.receive(register, PHONE, 2.0)  # a retransmission gets the very same bytes
    assert [t.data for t in layer.transmits()] == [wire, wire]


def test_same_branch_different_method_or_sent_by_are_different_transactions() -> None:
    layer = TransactionLayer()
    a = received(layer, phone("OPTIONS", branch="z9hG4bK-same"))
    b = received(layer, phone("INFO", branch="z9hG4bK-same"))
    c = received(layer, phone("OPTIONS", branch="z9hG4bK-same", sent_by="192.0.2.11:5060"))
    assert len({a, b, c}) == 3 and len(layer) == 3


# ------------------------------------------------------------------------- CANCEL


def test_cancel_matching_an_invite_gets_200_and_the_tu_is_told() -> None:
    layer = TransactionLayer()
    invite_key = received(layer, phone())
    sent(layer)
    cancel = phone("CANCEL")
    layer.receive(cancel, PHONE, 1.0)
    (event,) = layer.events()
    assert isinstance(event, CancelReceived)
    assert event.invite_key == invite_key and event.source == PHONE
    (transmit,) = layer.transmits()
    ok = parse(transmit.data)
    assert isinstance(ok, Response) and ok.status == 200 and ok.cseq.method == "CANCEL"
    assert ok.to.tag == derived_tag(invite_key)  # only 100 was sent: no TU tag yet
    assert len(layer) == 2  # the CANCEL has its own transaction
    # the TU ends the INVITE with 487; the ACK for it is absorbed
    layer.send_response(invite_key, make_response(phone(), 487, to_tag="pbx-t"), 1.1)
    assert sent(layer) == [("487", PHONE)]
    layer.receive(phone("ACK", to_tag="pbx-t"), PHONE, 1.2)
    assert layer.events() == []
    # a CANCEL retransmission: the 200 again, the TU is not told twice
    layer.receive(cancel, PHONE, 1.3)
    assert layer.events() == [] and sent(layer) == [("200", PHONE)]
    run_timers(layer, 100.0)
    assert sorted(e.key for e in layer.events() if isinstance(e, TransactionTerminated)) == (
        sorted([invite_key, "z9hG4bK-inv-1|CANCEL|192.0.2.10:5060"])
    )
    assert len(layer) == 0


def test_cancel_200_carries_the_to_tag_the_tu_already_used() -> None:
    layer = TransactionLayer()
    key = received(layer, phone())
    layer.send_response(key, make_response(phone(), 180, to_tag="pbx-t"), 0.0)
    sent(layer)
    layer.receive(phone("CANCEL"), PHONE, 1.0)
    (transmit,) = layer.transmits()
    ok = parse(transmit.data)
    assert isinstance(ok, Response) and ok.to.tag == "pbx-t"


def test_cancel_matching_nothing_gets_481() -> None:
    layer = TransactionLayer()
    cancel = phone("CANCEL", branch="z9hG4bK-nothing")
    layer.receive(cancel, PHONE, 0.0)
    assert layer.events() == []
    assert sent(layer) == [("481", PHONE)]
    layer.receive(cancel, PHONE, 0.5)  # retransmitted: the 481 again
    assert sent(layer) == [("481", PHONE)]
    run_timers(layer, 100.0)
    assert len(layer) == 0


def test_cancel_from_another_sent_by_does_not_match() -> None:
    layer = TransactionLayer()
    received(layer, phone())
    sent(layer)
    layer.receive(phone("CANCEL", sent_by="192.0.2.99:5060"), PHONE, 0.0)
    assert layer.events() == [] and sent(layer) == [("481", PHONE)]


def test_cancel_after_the_final_gets_200_but_changes_nothing() -> None:
    layer = TransactionLayer()
    key = received(layer, phone())
    layer.send_response(key, make_response(phone(), 200, to_tag="pbx-t"), 0.0)
    sent(layer)
    layer.receive(phone("CANCEL"), PHONE, 0.1)
    assert layer.events() == []  # §9.2: no effect once a final was sent
    assert sent(layer) == [("200", PHONE)]
    assert layer.state(key) is State.ACCEPTED


# ----------------------------------------------------------- RFC 2543 fallback


@pytest.mark.parametrize("branch", [None, "1234abcd", "z9hG4bK"])
def test_rfc2543_requests_match_by_dialog_fields_and_top_via(branch: str | None) -> None:
    layer = TransactionLayer()
    invite = phone(branch=branch)
    key = received(layer, invite)
    assert not key.startswith("z9hG4bK|")
    sent(layer)
    layer.receive(phone(branch=branch), PHONE, 0.5)  # retransmission: absorbed
    assert layer.events() == [] and sent(layer) == [("100", PHONE)]
    # a different CSeq is a different transaction
    other = received(layer, phone(branch=branch, cseq=2))
    assert other != key
    layer.send_response(key, make_response(invite, 486, to_tag="pbx-t"), 1.0)
    sent(layer)
    # the ACK matches by the To tag of the response sent (§17.2.3) and is absorbed
    layer.receive(phone("ACK", branch=branch, to_tag="pbx-t"), PHONE, 1.1)
    assert layer.events() == [] and layer.state(key) is State.CONFIRMED
    # an ACK with another To tag is not for this transaction
    layer.receive(phone("ACK", branch=branch, to_tag="other", cseq=2), PHONE, 1.2)
    assert [type(e) for e in layer.events()] == [AckReceived]
    # CANCEL (RFC 2543 style) matches the pending INVITE with CSeq 2
    layer.receive(phone("CANCEL", branch=branch, cseq=2), PHONE, 1.3)
    (event,) = layer.events()
    assert isinstance(event, CancelReceived) and event.invite_key == other
    assert sent(layer) == [("200", PHONE)]


TORTURE = Path(__file__).resolve().parent.parent / "data" / "torture"


def torture(name: str) -> Request:
    message = parse((TORTURE / f"{name}.sip").read_bytes())
    assert isinstance(message, Request)
    return message


def test_rfc4475_missing_transaction_identifier_falls_back_to_rfc2543() -> None:
    # RFC 4475 §3.2.1 (badbranch): branch=z9hG4bK alone identifies nothing.
    layer = TransactionLayer()
    options = torture("badbranch")
    source = Peer("UDP", "192.0.2.1", 5060)
    key = received(layer, options, source)
    assert key.startswith("OPTIONS|sip:user@example.com|")
    layer.receive(options, source, 0.1)
    assert layer.events() == []
    layer.send_response(key, make_response(options, 200, to_tag="pbx-t"), 0.2)
    layer.receive(options, source, 0.3)
    assert layer.events() == [] and sent(layer) == [("200", source)] * 2


def test_rfc4475_invite_with_rfc2543_syntax() -> None:
    # RFC 4475 §3.4.1 (inv2543): no branch, no From tag, a name in sent-by.
    layer = TransactionLayer()
    invite = torture("inv2543")
    source = Peer("UDP", "192.0.2.5", 5060)
    key = received(layer, invite, source)
    assert sent(layer) == [("100", source)]
    layer.receive(invite, source, 0.5)
    assert layer.events() == [] and sent(layer) == [("100", source)]
    layer.send_response(key, make_response(invite, 486, to_tag="pbx-t"), 1.0)
    ack = parse(
        b"ACK sip:UserB@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP iftgw.example.com\r\n"
        b"From: <sip:+13035551111@ift.client.example.net;user=phone>\r\n"
        b"To: <sip:+16505552222@ss1.example.net;user=phone>;tag=pbx-t\r\n"
        b"Call-ID: inv2543.1717@ift.client.example.com\r\n"
        b"CSeq: 56 ACK\r\n"
        b"\r\n"
    )
    layer.receive(ack, source, 1.1)
    assert layer.events() == [] and layer.state(key) is State.CONFIRMED


def test_rfc2543_ack_for_a_re_invite_and_for_a_2xx() -> None:
    layer = TransactionLayer()
    reinvite = phone(branch=None, to_tag="pbx-t", cseq=5)
    key = received(layer, reinvite)
    layer.send_response(key, make_response(reinvite, 200), 0.0)
    layer.receive(phone("ACK", branch=None, to_tag="pbx-t", cseq=5), PHONE, 0.1)
    (event,) = layer.events()  # Accepted passes the matching ACK to the TU
    assert isinstance(event, AckReceived) and event.invite_key == key
    assert layer.next_timer() == 32.0  # and stops the 2xx retransmissions


def test_rfc2543_request_uri_and_via_take_part() -> None:
    layer = TransactionLayer()
    a = received(layer, phone("OPTIONS", branch=None))
    b = received(layer, phone("OPTIONS", branch=None, uri="sip:201@pbx.example.com"))
    c = received(layer, phone("OPTIONS", branch=None, sent_by="192.0.2.10:5070"))
    assert len({a, b, c}) == 3


# ------------------------------------------------------------------ client INVITE


def test_client_invite_timer_a_doubles_uncapped_until_timer_b() -> None:
    layer = TransactionLayer()
    key = layer.send_request(ours(), GATEWAY, 0.0)
    assert key == "z9hG4bKpbx-1|INVITE"
    assert sent(layer) == [("INVITE", GATEWAY)]
    log = run_timers(layer, 100.0)
    assert log == [(t, "INVITE") for t in (0.5, 1.5, 3.5, 7.5, 15.5, 31.5)]
    assert layer.events() == [TransactionTimeout(key), TransactionTerminated(key)]
    assert len(layer) == 0


def test_client_invite_provisional_stops_retransmissions_and_timer_b() -> None:
    layer = TransactionLayer()
    invite = ours()
    key = layer.send_request(invite, GATEWAY, 0.0)
    sent(layer)
    assert run_timers(layer, 1.0) == [(0.5, "INVITE")]
    ringing = reply(invite, 180)
    layer.receive(ringing, GATEWAY, 1.0)
    assert layer.events() == [ResponseReceived(key, ringing, GATEWAY)]
    assert layer.next_timer() is None  # Proceeding waits for the final (or the TU)
    layer.receive(ringing, GATEWAY, 2.0)  # each provisional goes up
    assert layer.events() == [ResponseReceived(key, ringing, GATEWAY)]
    layer.terminate(key)  # the TU gives up (§9.1); twice is fine
    layer.terminate(key)
    assert layer.events() == [TransactionTerminated(key)]
    assert len(layer) == 0


def test_client_invite_non_2xx_builds_the_ack_and_absorbs_retransmissions() -> None:
    layer = TransactionLayer()
    invite = ours()
    key = layer.send_request(invite, GATEWAY, 0.0)
    sent(layer)
    busy = reply(invite, 486)
    layer.receive(busy, GATEWAY, 0.2)
    assert layer.events() == [ResponseReceived(key, busy, GATEWAY)]
    (transmit,) = layer.transmits()
    ack = parse(transmit.data)
    assert transmit.peer == GATEWAY
    assert isinstance(ack, Request) and ack.method == "ACK"
    assert ack.top_via.branch == "z9hG4bKpbx-1" and len(ack.via) == 1
    assert ack.uri == invite.uri and ack.to.tag == "gw-9"
    assert ack.headers.lines("Route") == ["<sip:192.0.2.20;lr>"]
    assert (ack.cseq.seq, ack.cseq.method) == (1, "ACK")
    layer.receive(busy, GATEWAY, 0.4)  # retransmitted final: the ACK again, TU not told
    assert layer.events() == []
    assert [t.data for t in layer.transmits()] == [transmit.data]
    assert layer.next_timer() == pytest.approx(0.2 + 32.0)  # Timer D
    assert run_timers(layer, 100.0) == []
    assert layer.events() == [TransactionTerminated(key)]
    assert len(layer) == 0


def test_client_invite_accepted_passes_every_2xx_until_timer_m() -> None:
    layer = TransactionLayer()
    invite = ours()
    key = layer.send_request(invite, GATEWAY, 0.0)
    sent(layer)
    ok = reply(invite, 200)
    layer.receive(ok, GATEWAY, 0.1)
    assert layer.events() == [ResponseReceived(key, ok, GATEWAY)]
    assert sent(layer) == []  # the ACK for a 2xx is the TU's (§13.2.2.4)
    assert layer.state(key) is State.ACCEPTED
    layer.receive(ok, GATEWAY, 0.6)  # retransmission
    forked = reply(invite, 200, to_tag="fork-2")  # another branch of a fork
    layer.receive(forked, GATEWAY, 0.7)
    layer.receive(reply(invite, 180), GATEWAY, 0.8)  # late provisional: dropped
    layer.receive(reply(invite, 486), GATEWAY, 0.9)  # a non-2xx now: dropped
    assert layer.events() == [
        ResponseReceived(key, ok, GATEWAY),
        ResponseReceived(key, forked, GATEWAY),
    ]
    layer.send_stateless(ours("ACK"), GATEWAY)
    assert sent(layer) == [("ACK", GATEWAY)]
    assert layer.next_timer() == pytest.approx(0.1 + 32.0)  # Timer M
    run_timers(layer, 100.0)
    assert layer.events() == [TransactionTerminated(key)]
    layer.receive(ok, GATEWAY, 101.0)  # the transaction is gone: the core re-ACKs
    assert layer.events() == [StrayResponse(ok, GATEWAY)]
    assert len(layer) == 0


def test_client_cancel_is_its_own_transaction() -> None:
    layer = TransactionLayer()
    invite = ours()
    invite_key = layer.send_request(invite, GATEWAY, 0.0)
    layer.receive(reply(invite, 180), GATEWAY, 0.1)
    cancel = ours("CANCEL")  # §9.1: same branch as the INVITE
    cancel_key = layer.send_request(cancel, GATEWAY, 1.0)
    assert cancel_key == "z9hG4bKpbx-1|CANCEL" != invite_key
    layer.events()
    sent(layer)
    cancelled = reply(cancel, 200)
    terminated = reply(invite, 487)
    layer.receive(cancelled, GATEWAY, 1.1)
    layer.receive(terminated, GATEWAY, 1.2)
    assert layer.events() == [
        ResponseReceived(cancel_key, cancelled, GATEWAY),
        ResponseReceived(invite_key, terminated, GATEWAY),
    ]
    assert sent(layer) == [("ACK", GATEWAY)]


# -------------------------------------------------------------- client non-INVITE


def test_client_non_invite_timer_e_doubles_capped_at_t2_until_timer_f() -> None:
    layer = TransactionLayer()
    key = layer.send_request(ours("OPTIONS"), GATEWAY, 0.0)
    sent(layer)
    log = run_timers(layer, 100.0)
    times = [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert log == [(t, "OPTIONS") for t in times]
    assert layer.events() == [TransactionTimeout(key), TransactionTerminated(key)]
    assert len(layer) == 0


def test_client_non_invite_proceeding_retransmits_every_t2() -> None:
    layer = TransactionLayer()
    register = ours("REGISTER")
    key = layer.send_request(register, GATEWAY, 0.0)
    sent(layer)
    assert run_timers(layer, 0.7) == [(0.5, "REGISTER")]
    layer.receive(reply(register, 100), GATEWAY, 0.7)
    assert layer.state(key) is State.PROCEEDING
    log = run_timers(layer, 100.0)
    # E keeps its running deadline (1.5), then T2 each time (§17.1.2.2); F still at 32
    times = [1.5, 5.5, 9.5, 13.5, 17.5, 21.5, 25.5, 29.5]
    assert log == [(t, "REGISTER") for t in times]
    events = layer.events()
    assert events[-2:] == [TransactionTimeout(key), TransactionTerminated(key)]


def test_client_non_invite_final_then_timer_k() -> None:
    layer = TransactionLayer()
    bye = ours("BYE", branch="z9hG4bKpbx-bye", cseq=2)
    key = layer.send_request(bye, GATEWAY, 0.0)
    ok = reply(bye, 200)
    layer.receive(ok, GATEWAY, 0.3)
    assert layer.events() == [ResponseReceived(key, ok, GATEWAY)]
    layer.receive(ok, GATEWAY, 0.4)  # absorbed
    assert layer.events() == []
    assert layer.next_timer() == pytest.approx(0.3 + 5.0)  # Timer K = T4
    assert sent(layer) == [("BYE", GATEWAY)]  # the first send only
    assert run_timers(layer, 100.0) == []
    assert layer.events() == [TransactionTerminated(key)]


def test_responses_match_by_branch_and_cseq_method_only() -> None:
    layer = TransactionLayer()
    options = ours("OPTIONS", branch="z9hG4bKpbx-o")
    layer.send_request(options, GATEWAY, 0.0)
    stray = reply(ours("OPTIONS", branch="z9hG4bKpbx-unknown"), 200)
    layer.receive(stray, GATEWAY, 0.1)
    wrong_method = reply(ours("INFO", branch="z9hG4bKpbx-o"), 200)
    layer.receive(wrong_method, GATEWAY, 0.1)
    assert layer.events() == [StrayResponse(stray, GATEWAY), StrayResponse(wrong_method, GATEWAY)]


def test_send_request_refuses_what_cannot_be_a_client_transaction() -> None:
    layer = TransactionLayer()
    with pytest.raises(LocalProtocolError, match="ACK"):
        layer.send_request(ours("ACK"), GATEWAY, 0.0)
    for branch in ("12345", "z9hG4bK"):
        with pytest.raises(LocalProtocolError, match="branch"):
            layer.send_request(ours(branch=branch), GATEWAY, 0.0)
    no_branch = phone("OPTIONS", branch=None)
    with pytest.raises(LocalProtocolError, match="branch"):
        layer.send_request(no_branch, GATEWAY, 0.0)
    layer.send_request(ours(), GATEWAY, 0.0)
    with pytest.raises(LocalProtocolError, match="already exists"):
        layer.send_request(ours(), GATEWAY, 0.0)
    assert len(layer) == 1


# ----------------------------------------------------- stamping and addressing


@pytest.mark.parametrize(
    ("sent_by", "rport", "source", "via_params", "target"),
    [
        # sent-by is the source address: nothing added; sent-by port (or 5060) used
        ("192.0.2.10:5070", False, ("UDP", "192.0.2.10", 5070), "", ("192.0.2.10", 5070)),
        ("192.0.2.10", False, ("UDP", "192.0.2.10", 5060), "", ("192.0.2.10", 5060)),
        # a name in sent-by always gets received=; the port comes from sent-by
        (
            "pc33.atlanta.example.com:5080",
            False,
            ("UDP", "192.0.2.10", 5080),
            ";received=192.0.2.10",
            ("192.0.2.10", 5080),
        ),
        # behind NAT without rport: received host, sent-by port (the phone's problem)
        (
            "10.0.0.5",
            False,
            ("UDP", "203.0.113.9", 61000),
            ";received=203.0.113.9",
            ("203.0.113.9", 5060),
        ),
        # RFC 3581: rport filled with the source port, received added even if equal
        (
            "10.0.0.5:5060",
            True,
            ("UDP", "203.0.113.9", 61000),
            ";rport=61000;received=203.0.113.9",
            ("203.0.113.9", 61000),
        ),
        (
            "192.0.2.10:5060",
            True,
            ("UDP", "192.0.2.10", 5060),
            ";rport=5060;received=192.0.2.10",
            ("192.0.2.10", 5060),
        ),
        # IPv6: the same address written differently is the same host
        ("[2001:db8::10]:5060", False, ("UDP", "2001:db8::10", 5060), "", ("2001:db8::10", 5060)),
        ("[2001:DB8:0::10]", False, ("UDP", "2001:db8::10", 5060), "", ("2001:DB8:0::10", 5060)),
        (
            "[2001:db8::10]",
            False,
            ("UDP", "2001:db8::99", 5060),
            ";received=2001:db8::99",
            ("2001:db8::99", 5060),
        ),
    ],
)
def test_via_stamping_and_response_address(
    sent_by: str,
    rport: bool,
    source: tuple[str, str, int],
    via_params: str,
    target: tuple[str, int],
) -> None:
    peer = Peer(*source)
    layer = TransactionLayer()
    original = phone("OPTIONS", sent_by=sent_by, rport=rport)
    key = received(layer, original, peer)
    stamped = stamp_request(original, peer)
    expected_via = f"SIP/2.0/UDP {sent_by};branch=z9hG4bK-inv-1{via_params}"
    assert stamped.headers.values("Via")[0] == expected_via
    expected = Peer("UDP", *target)
    assert response_target(original, peer) == expected
    assert response_target(stamped, peer) == expected
    assert layer.response_target(stamped, peer) == expected
    layer.send_response(key, make_response(stamped, 200), 0.0)
    (transmit,) = layer.transmits()
    assert transmit.peer == expected


def test_reliable_responses_go_back_on_the_connection() -> None:
    invite = phone(transport="TCP", sent_by="192.0.2.10:5060")
    assert response_target(invite, PHONE_TCP) == PHONE_TCP
    layer = TransactionLayer()
    received(layer, invite, PHONE_TCP)
    assert sent(layer) == [("100", PHONE_TCP)]


def test_stamping_keeps_every_other_via() -> None:
    req = phone(
        "OPTIONS",
        sent_by="pc33.atlanta.example.com",
        more_vias=", SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx",
    )
    text = bytes(req).replace(
        b"Max-Forwards", b"Via: SIP/2.0/TCP 10.0.0.2;branch=z9hG4bKy\r\nMax-Forwards"
    )
    original = parse(text)
    assert isinstance(original, Request)
    stamped = stamp_request(original, PHONE)
    assert [str(v) for v in stamped.via] == [
        "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK-inv-1;received=192.0.2.10",
        "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx",
        "SIP/2.0/TCP 10.0.0.2;branch=z9hG4bKy",
    ]
    reparsed = parse(bytes(stamped))
    assert isinstance(reparsed, Request)
    assert reparsed.via == stamped.via  # the primed cache says what the bytes say
    assert reparsed.headers == stamped.headers and reparsed.body == stamped.body
    assert stamp_request(stamped, PHONE).headers == stamped.headers  # idempotent
    same = phone("OPTIONS")
    assert stamp_request(same, PHONE) is same  # nothing to add: the very same object


# ------------------------------------------------------------ reliable transports


def test_reliable_client_invite_has_no_timer_a_and_no_timer_d() -> None:
    layer = TransactionLayer()
    invite = ours(transport="TCP")
    key = layer.send_request(invite, GATEWAY_TCP, 0.0)
    assert sent(layer) == [("INVITE", GATEWAY_TCP)]
    assert layer.next_timer() == 32.0  # only Timer B
    busy = reply(invite, 486)
    layer.receive(busy, GATEWAY_TCP, 1.0)
    assert sent(layer) == [("ACK", GATEWAY_TCP)]
    assert layer.events() == [ResponseReceived(key, busy, GATEWAY_TCP), TransactionTerminated(key)]
    assert len(layer) == 0 and layer.next_timer() is None


def test_reliable_client_non_invite_times_out_without_retransmitting() -> None:
    layer = TransactionLayer()
    key = layer.send_request(ours("OPTIONS", transport="TCP"), GATEWAY_TCP, 0.0)
    sent(layer)
    assert run_timers(layer, 100.0) == []
    assert layer.events() == [TransactionTimeout(key), TransactionTerminated(key)]


def test_reliable_server_transactions() -> None:
    layer = TransactionLayer()
    invite = phone(transport="TCP")
    key = received(layer, invite, PHONE_TCP)
    layer.send_response(key, make_response(invite, 486, to_tag="t"), 0.0)
    assert layer.next_timer() == 32.0  # H, no G
    layer.receive(phone("ACK", transport="TCP", to_tag="t"), PHONE_TCP, 0.1)
    assert layer.events() == [TransactionTerminated(key)]  # Timer I is zero
    bye = phone("BYE", transport="TCP", branch="z9hG4bK-bye", to_tag="t", cseq=2)
    bye_key = received(layer, bye, PHONE_TCP)
    layer.send_response(bye_key, make_response(bye, 200), 0.2)
    assert layer.events() == [TransactionTerminated(bye_key)]  # Timer J is zero
    assert len(layer) == 0 and layer.next_timer() is None
    assert [peer for _, peer in sent(layer)] == [PHONE_TCP] * 3


# ---------------------------------------------------------------- transport errors


def test_transport_error_fails_client_and_ends_server_transactions() -> None:
    layer = TransactionLayer()
    to_gateway = layer.send_request(ours(), GATEWAY, 0.0)
    options = layer.send_request(ours("OPTIONS", branch="z9hG4bKpbx-2"), GATEWAY, 0.0)
    elsewhere = layer.send_request(ours(branch="z9hG4bKpbx-3"), PHONE, 0.0)
    from_gateway = received(layer, phone(branch="z9hG4bK-gw"), GATEWAY)
    layer.transport_error(GATEWAY, 0.1)
    events = layer.events()
    assert TransportFailed(to_gateway) in events and TransportFailed(options) in events
    terminated = {e.key for e in events if isinstance(e, TransactionTerminated)}
    assert terminated == {to_gateway, options, from_gateway}
    assert not any(isinstance(e, TransportFailed) and e.key == from_gateway for e in events)
    assert len(layer) == 1 and elsewhere in layer
    with pytest.raises(LocalProtocolError):
        layer.send_response(from_gateway, make_response(phone(), 486, to_tag="t"), 0.2)
    layer.transport_error(Peer("UDP", "198.51.100.1", 5060), 0.3)  # nobody there: nothing
    assert layer.events() == []


def test_transport_error_on_one_connection_spares_the_others() -> None:
    layer = TransactionLayer()
    first = Peer("TCP", "192.0.2.10", 49152, connection=3)
    second = Peer("TCP", "192.0.2.10", 49152, connection=4)
    a = received(layer, phone(transport="TCP", branch="z9hG4bK-a"), first)
    b = received(layer, phone(transport="TCP", branch="z9hG4bK-b"), second)
    layer.transport_error(first, 1.0)
    assert layer.events() == [TransactionTerminated(a)]
    assert b in layer and a not in layer
    layer.transport_error(first.without_connection(), 1.0)  # the whole address failed
    assert layer.events() == [TransactionTerminated(b)]


def test_transport_error_after_the_final_ends_the_client_quietly() -> None:
    layer = TransactionLayer()
    invite = ours()
    key = layer.send_request(invite, GATEWAY, 0.0)
    layer.receive(reply(invite, 486), GATEWAY, 0.1)
    layer.events()
    layer.transport_error(GATEWAY, 0.2)
    assert layer.events() == [TransactionTerminated(key)]  # the TU already has its answer


# ------------------------------------------------------------------ timers, leaks


def test_a_late_handle_timer_fires_each_due_timer_once() -> None:
    layer = TransactionLayer()
    key = received(layer, phone())
    layer.send_response(key, make_response(phone(), 486, to_tag="t"), 0.0)
    sent(layer)
    layer.handle_timer(100.0)  # the loop was asleep: G fires once, H ends it
    assert sent(layer) == [("486", PHONE)]
    assert layer.events() == [TransactionTimeout(key), TransactionTerminated(key)]
    assert layer.next_timer() is None


def test_custom_timer_config() -> None:
    layer = TransactionLayer(TimerConfig(t1=0.1, t2=0.4, t4=1.0))
    key = layer.send_request(ours("OPTIONS"), GATEWAY, 0.0)
    sent(layer)
    log = run_timers(layer, 10.0)
    assert [t for t, _ in log] == pytest.approx(
        [0.1, 0.3, 0.7, 1.1, 1.5, 1.9, 2.3, 2.7, 3.1, 3.5, 3.9, 4.3, 4.7, 5.1, 5.5, 5.9, 6.3]
    )
    assert layer.events()[-1] == TransactionTerminated(key)


def test_no_transaction_is_left_behind() -> None:
    layer = TransactionLayer()
    for n in range(200):
        t = n * 0.01
        invite = phone(branch=f"z9hG4bK-{n}", call_id=f"c{n}")
        key = received(layer, invite)
        status = (200, 486, 180)[n % 3]
        layer.send_response(key, make_response(invite, status, to_tag="t"), t)
        if status == 180:
            layer.receive(phone("CANCEL", branch=f"z9hG4bK-{n}", call_id=f"c{n}"), PHONE, t)
            layer.send_response(key, make_response(invite, 487, to_tag="t"), t)
        if status != 200:
            layer.receive(
                phone("ACK", branch=f"z9hG4bK-{n}", call_id=f"c{n}", to_tag="t"), PHONE, t
            )
        out = ours("OPTIONS" if n % 2 else "INVITE", branch=f"z9hG4bKpbx-{n}")
        layer.send_request(out, GATEWAY, t)
        if n % 4 == 0:
            layer.receive(reply(out, 200), GATEWAY, t + 0.05)
        layer.events()
    assert len(layer) > 0
    run_timers(layer, 1000.0)
    layer.events()
    layer.transmits()
    assert len(layer) == 0
    assert layer.next_timer() is None
    assert not layer._acks


# ------------------------------------------------------- stateful: random interleavings


@dataclass
class Pending:
    request: Request
    source: Peer
    finals: int = 0
    tags: list[str] = field(default_factory=list)


class LayerMachine(RuleBasedStateMachine):
    """Random interleavings of peers, TU and clock. Invariants: the layer's count matches the
    transactions created minus those reported terminated, nothing terminates twice, and once
    everything is answered and the clock runs on, nothing is left."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = TransactionLayer()
        self.now = 0.0
        self.n = 0
        self.server: dict[str, Pending] = {}  # live server keys the TU knows
        self.client: dict[str, Request] = {}
        self.live: set[str] = set()
        self.ended: set[str] = set()
        self.hidden: set[str] = set()  # CANCEL transactions the layer made itself

    def _collect(self) -> None:
        for event in self.layer.events():
            self._see(event)
        for transmit in self.layer.transmits():
            assert isinstance(transmit, Transmit)
            parse(transmit.data)  # everything sent parses

    def _see(self, event: Event) -> None:
        if isinstance(event, RequestReceived):
            assert event.key not in self.live
            self.live.add(event.key)
            self.server[event.key] = Pending(event.request, event.source)
        elif isinstance(event, AckTimeout):
            assert event.key in self.live and self.layer.state(event.key) is None
        elif isinstance(event, TransactionTerminated):
            # once each; only the layer's CANCEL transactions come back (a late retransmission)
            assert event.key not in self.ended
            if "|CANCEL|" not in event.key:
                self.ended.add(event.key)
            if event.key in self.live:
                self.live.discard(event.key)
            else:
                assert "|CANCEL|" in event.key  # one of the layer's own (maybe just made)
                self.hidden.discard(event.key)
            self.server.pop(event.key, None)
            self.client.pop(event.key, None)

    @rule(method=st.sampled_from(["INVITE", "OPTIONS", "BYE"]), tcp=st.booleans())
    def peer_sends(self, method: str, tcp: bool) -> None:
        self.n += 1
        transport = "TCP" if tcp else "UDP"
        req = phone(method, branch=f"z9hG4bK-r{self.n}", transport=transport, call_id=f"c{self.n}")
        source = PHONE_TCP if tcp else PHONE
        self.layer.receive(req, source, self.now)
        self._collect()

    @precondition(lambda self: self.server)
    @rule(data=st.data())
    def peer_retransmits(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.server)))
        pending = self.server[key]
        self.layer.receive(pending.request, pending.source, self.now)
        events = self.layer.events()
        assert not any(isinstance(e, RequestReceived) for e in events)
        for event in events:
            self._see(event)
        self._collect()

    @precondition(lambda self: self.server)
    @rule(data=st.data(), status=st.sampled_from([180, 200, 486]))
    def tu_answers(self, data: st.DataObject, status: int) -> None:
        key = data.draw(st.sampled_from(sorted(self.server)))
        pending = self.server[key]
        response = make_response(pending.request, status, to_tag="tu")
        state = self.layer.state(key)
        try:
            self.layer.send_response(key, response, self.now)
        except LocalProtocolError:
            allowed_2xx = state is State.ACCEPTED and status == 200
            assert pending.finals and not allowed_2xx
        else:
            if status >= 200:
                pending.finals += 1
                assert pending.finals == 1 or state is State.ACCEPTED
        self._collect()

    @precondition(lambda self: self.server)
    @rule(data=st.data())
    def peer_acks_or_cancels(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.server)))
        pending = self.server[key]
        req = pending.request
        if req.method != "INVITE":
            return
        method = data.draw(st.sampled_from(["ACK", "CANCEL"]))
        branch = req.top_via.branch
        transport = pending.source.transport
        msg = phone(
            method, branch=branch, transport=transport, call_id=req.call_id,
            to_tag="tu" if method == "ACK" else None,
        )  # fmt: skip
        self.layer.receive(msg, pending.source, self.now)
        cancel_key = f"{branch}|CANCEL|192.0.2.10:5060"
        if method == "CANCEL" and cancel_key in self.layer:
            self.hidden.add(cancel_key)
        self._collect()

    @rule(method=st.sampled_from(["INVITE", "OPTIONS"]), tcp=st.booleans())
    def tu_sends(self, method: str, tcp: bool) -> None:
        self.n += 1
        req = ours(method, branch=f"z9hG4bKpbx-{self.n}", transport="TCP" if tcp else "UDP")
        key = self.layer.send_request(req, GATEWAY_TCP if tcp else GATEWAY, self.now)
        self.live.add(key)
        self.client[key] = req
        self._collect()

    @precondition(lambda self: self.client)
    @rule(data=st.data(), status=st.sampled_from([100, 180, 200, 486]))
    def gateway_answers(self, data: st.DataObject, status: int) -> None:
        key = data.draw(st.sampled_from(sorted(self.client)))
        self.layer.receive(reply(self.client[key], status), GATEWAY, self.now)
        self._collect()

    @rule(dt=st.sampled_from([0.1, 0.5, 2.0, 5.0, 40.0]))
    def time_passes(self, dt: float) -> None:
        self.now += dt
        while (deadline := self.layer.next_timer()) is not None and deadline <= self.now:
            assert deadline >= self.now - dt  # never a deadline in the past we skipped
            self.layer.handle_timer(deadline)
            self._collect()

    @rule(tcp=st.booleans())
    def link_fails(self, tcp: bool) -> None:
        self.layer.transport_error(GATEWAY_TCP if tcp else PHONE, self.now)
        self._collect()

    @invariant()
    def counts_agree(self) -> None:
        assert len(self.layer) == len(self.live) + len(self.hidden)

    def teardown(self) -> None:
        # Answer everything still waiting, let the clock run: nothing may be left.
        for key, pending in list(self.server.items()):
            if self.layer.state(key) in (State.PROCEEDING, State.TRYING):
                self.layer.send_response(key, make_response(pending.request, 486), self.now)
        for req in list(self.client.values()):
            self.layer.receive(reply(req, 486), GATEWAY, self.now)
        self._collect()
        self.now += 1000.0
        self.layer.handle_timer(self.now)
        self._collect()
        assert len(self.layer) == 0 and self.layer.next_timer() is None
        assert not self.layer._acks
        assert not self.live and not self.hidden


TestLayerMachine = LayerMachine.TestCase
TestLayerMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
