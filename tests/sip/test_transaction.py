"""The four transaction machines of pbx.sip.transaction, pair by pair (RFC 3261 §17, RFC 6026).

Every (state, input) pair of every machine is driven on a real transaction: the machine is
brought into the state by real messages, the input is applied, and what comes out (transmits,
TU events, armed timers, next state) is compared with the expectation written out below from
the RFC figures. Pairs not written out must do nothing at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from pbx.sip import LocalProtocolError, Request, Response, make_response, parse
from pbx.sip.events import Peer, ResponseReceived
from pbx.sip.timers import TimerConfig
from pbx.sip.transaction import (
    CLIENT_INVITE,
    CLIENT_NON_INVITE,
    MACHINES,
    SERVER_INVITE,
    SERVER_NON_INVITE,
    TIMER_INPUTS,
    TU_INPUTS,
    Action,
    ClientTransaction,
    Input,
    Machine,
    Outbox,
    Schedule,
    ServerTransaction,
    State,
    Transaction,
    build_ack,
)

CONFIG = TimerConfig()
UDP_PEER = Peer("UDP", "192.0.2.20", 5060)
TCP_PEER = Peer("TCP", "192.0.2.20", 5060, connection=7)

INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8\r\n"
    b"Via: SIP/2.0/UDP bigbox3.site3.atlanta.example.com;branch=z9hG4bK77ef4c2312983.1\r\n"
    b"Route: <sip:ss1.atlanta.example.com;lr>\r\n"
    b"Route: <sip:ss2.biloxi.example.com;lr>\r\n"
    b"Max-Forwards: 69\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)
OPTIONS = (
    b"OPTIONS sip:carol@chicago.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKhjhs8ass877\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: <sip:carol@chicago.example.com>\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710\r\n"
    b"CSeq: 63104 OPTIONS\r\n"
    b"Accept: application/sdp\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)
ACK_FOR_486 = (
    b"ACK sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 ACK\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


def request(data: bytes) -> Request:
    message = parse(data)
    assert isinstance(message, Request)
    return message


def answer(req: Request, status: int) -> Response:
    return make_response(req, status, to_tag=None if status == 100 else "a6c85cf")


# ---------------------------------------------------------------------------- the rig


@dataclass
class Rig:
    """A transaction on its own Outbox, with helpers to see what it produced."""

    tx: Transaction
    out: Outbox
    request: Request

    def drain(self) -> tuple[list[str], list[str]]:
        """(kinds of the transmits, names of the events) since the last drain."""
        sent = []
        for transmit in self.out.transmits:
            assert transmit.peer == self.tx.peer
            message = parse(transmit.data)
            sent.append(message.method if isinstance(message, Request) else str(message.status))
        events = [type(e).__name__ for e in self.out.events]
        self.out.transmits.clear()
        self.out.events.clear()
        return sent, events

    def armed(self) -> set[str]:
        return {timer.name.removeprefix("TIMER_") for timer in self.tx.timers}

    def feed(self, inp: Input, now: float = 1.0) -> None:
        """Apply ``inp`` the way the layer or the Outbox would."""
        statuses = {"1XX": 100 if self.request.method != "INVITE" else 180, "2XX": 200}
        code = statuses.get(inp.name[-3:], 486)
        if isinstance(self.tx, ClientTransaction):
            if inp.name.startswith("RECV_") and inp.name[-3:] in ("1XX", "2XX", "NAL"):
                self.tx.receive(answer(self.request, code), UDP_PEER, now)
                return
        elif isinstance(self.tx, ServerTransaction):
            if inp is Input.RECV_REQUEST:
                self.tx.receive(self.request, UDP_PEER, now)
                return
            if inp is Input.RECV_ACK:
                self.tx.receive(request(ACK_FOR_486), UDP_PEER, now)
                return
            if inp in TU_INPUTS:
                self.tx.send(answer(self.request, code), now)
                return
        if inp in TIMER_INPUTS:
            self.tx.timers.pop(inp, None)  # as the Outbox does before handing the timer over
        self.tx.handle(inp, now)


def client(data: bytes, reliable: bool = False) -> Rig:
    out = Outbox()
    req = request(data)
    peer = TCP_PEER if reliable else UDP_PEER
    tx = ClientTransaction("k", req, peer, schedule=Schedule(CONFIG, reliable), out=out)
    tx.start(0.0)
    return Rig(tx, out, req)


def server(data: bytes, reliable: bool = False) -> Rig:
    out = Outbox()
    req = request(data)
    peer = TCP_PEER if reliable else UDP_PEER
    tx = ServerTransaction("k", req, peer, peer, schedule=Schedule(CONFIG, reliable), out=out)
    if req.method == "INVITE":
        tx.send(answer(req, 100), 0.0)  # the layer answers every INVITE with 100 at once
    return Rig(tx, out, req)


def _then(*inputs: Input) -> Callable[[Rig], None]:
    def drive(rig: Rig) -> None:
        for inp in inputs:
            rig.feed(inp, 0.1)

    return drive


# How to bring a fresh transaction of each machine into each live state.
PATHS: dict[Machine, tuple[Callable[[], Rig], dict[State, Callable[[Rig], None]]]] = {
    CLIENT_INVITE: (
        lambda: client(INVITE),
        {
            State.CALLING: _then(),
            State.PROCEEDING: _then(Input.RECV_1XX),
            State.COMPLETED: _then(Input.RECV_FINAL),
            State.ACCEPTED: _then(Input.RECV_2XX),
        },
    ),
    CLIENT_NON_INVITE: (
        lambda: client(OPTIONS),
        {
            State.TRYING: _then(),
            State.PROCEEDING: _then(Input.RECV_1XX),
            State.COMPLETED: _then(Input.RECV_2XX),
        },
    ),
    SERVER_INVITE: (
        lambda: server(INVITE),
        {
            State.PROCEEDING: _then(),
            State.COMPLETED: _then(Input.SEND_FINAL),
            State.CONFIRMED: _then(Input.SEND_FINAL, Input.RECV_ACK),
            State.ACCEPTED: _then(Input.SEND_2XX),
        },
    ),
    SERVER_NON_INVITE: (
        lambda: server(OPTIONS),
        {
            State.TRYING: _then(),
            State.PROCEEDING: _then(Input.SEND_1XX),
            State.COMPLETED: _then(Input.SEND_2XX),
        },
    ),
}

# ------------------------------------------------ expectations, from the RFC figures

REFUSED = "refused"
Expect = tuple[State, list[str], list[str], set[str]] | str
RR, TO, TT, TF = (
    "ResponseReceived",
    "TransactionTimeout",
    "TransactionTerminated",
    "TransportFailed",
)
C, P, CO, CF, AC, TR, T = (
    State.CALLING,
    State.PROCEEDING,
    State.COMPLETED,
    State.CONFIRMED,
    State.ACCEPTED,
    State.TRYING,
    State.TERMINATED,
)
i = Input

EXPECT: dict[Machine, dict[tuple[State, Input], Expect]] = {
    # RFC 3261 Figure 5 with RFC 6026 §7.2.
    CLIENT_INVITE: {
        (C, i.RECV_1XX): (P, [], [RR], set()),
        (C, i.RECV_2XX): (AC, [], [RR], {"M"}),
        (C, i.RECV_FINAL): (CO, ["ACK"], [RR], {"D"}),
        (C, i.TIMER_A): (C, ["INVITE"], [], {"A", "B"}),
        (C, i.TIMER_B): (T, [], [TO, TT], set()),
        (C, i.TRANSPORT_ERROR): (T, [], [TF, TT], set()),
        (P, i.RECV_1XX): (P, [], [RR], set()),
        (P, i.RECV_2XX): (AC, [], [RR], {"M"}),
        (P, i.RECV_FINAL): (CO, ["ACK"], [RR], {"D"}),
        (P, i.TRANSPORT_ERROR): (T, [], [TF, TT], set()),
        (CO, i.RECV_2XX): (CO, [], [RR], {"D"}),
        (CO, i.RECV_FINAL): (CO, ["ACK"], [], {"D"}),
        (CO, i.TIMER_D): (T, [], [TT], set()),
        (CO, i.TRANSPORT_ERROR): (T, [], [TT], set()),
        (AC, i.RECV_2XX): (AC, [], [RR], {"M"}),
        (AC, i.TIMER_M): (T, [], [TT], set()),
        (AC, i.TRANSPORT_ERROR): (T, [], [TT], set()),
    },
    # RFC 3261 Figure 6.
    CLIENT_NON_INVITE: {
        (TR, i.RECV_1XX): (P, [], [RR], {"E", "F"}),
        (TR, i.RECV_2XX): (CO, [], [RR], {"K"}),
        (TR, i.RECV_FINAL): (CO, [], [RR], {"K"}),
        (TR, i.TIMER_E): (TR, ["OPTIONS"], [], {"E", "F"}),
        (TR, i.TIMER_F): (T, [], [TO, TT], set()),
        (TR, i.TRANSPORT_ERROR): (T, [], [TF, TT], set()),
        (P, i.RECV_1XX): (P, [], [RR], {"E", "F"}),
        (P, i.RECV_2XX): (CO, [], [RR], {"K"}),
        (P, i.RECV_FINAL): (CO, [], [RR], {"K"}),
        (P, i.TIMER_E): (P, ["OPTIONS"], [], {"E", "F"}),
        (P, i.TIMER_F): (T, [], [TO, TT], set()),
        (P, i.TRANSPORT_ERROR): (T, [], [TF, TT], set()),
        (CO, i.TIMER_K): (T, [], [TT], set()),
        (CO, i.TRANSPORT_ERROR): (T, [], [TT], set()),
    },
    # RFC 3261 Figure 7 with RFC 6026 §7.1, and the 2xx retransmissions of §13.3.1.4 on G.
    SERVER_INVITE: {
        (P, i.RECV_REQUEST): (P, ["100"], [], set()),
        (P, i.SEND_1XX): (P, ["180"], [], set()),
        (P, i.SEND_2XX): (AC, ["200"], [], {"G", "L"}),
        (P, i.SEND_FINAL): (CO, ["486"], [], {"G", "H"}),
        (P, i.TRANSPORT_ERROR): (T, [], [TT], set()),
        (CO, i.RECV_REQUEST): (CO, ["486"], [], {"G", "H"}),
        (CO, i.RECV_ACK): (CF, [], [], {"I"}),
        (CO, i.SEND_1XX): REFUSED,
        (CO, i.SEND_2XX): REFUSED,
        (CO, i.SEND_FINAL): REFUSED,
        (CO, i.TIMER_G): (CO, ["486"], [], {"G", "H"}),
        (CO, i.TIMER_H): (T, [], [TO, TT], set()),
        (CO, i.TRANSPORT_ERROR): (T, [], [TT], set()),
        (CF, i.SEND_1XX): REFUSED,
        (CF, i.SEND_2XX): REFUSED,
        (CF, i.SEND_FINAL): REFUSED,
        (CF, i.TIMER_I): (T, [], [TT], set()),
        (CF, i.TRANSPORT_ERROR): (T, [], [TT], set()),
        (AC, i.RECV_ACK): (AC, [], ["AckReceived"], {"L"}),  # G stopped
        (AC, i.SEND_1XX): REFUSED,
        (AC, i.SEND_2XX): (AC, ["200"], [], {"G", "L"}),
        (AC, i.SEND_FINAL): REFUSED,
        (AC, i.TIMER_G): (AC, ["200"], [], {"G", "L"}),
        (AC, i.TIMER_L): (T, [], ["AckTimeout", TT], set()),
        (AC, i.TRANSPORT_ERROR): (T, [], [TT], set()),
    },
    # RFC 3261 Figure 8.
    SERVER_NON_INVITE: {
        (TR, i.SEND_1XX): (P, ["100"], [], set()),
        (TR, i.SEND_2XX): (CO, ["200"], [], {"J"}),
        (TR, i.SEND_FINAL): (CO, ["486"], [], {"J"}),
        (TR, i.TRANSPORT_ERROR): (T, [], [TT], set()),
        (P, i.RECV_REQUEST): (P, ["100"], [], set()),
        (P, i.SEND_1XX): (P, ["100"], [], set()),
        (P, i.SEND_2XX): (CO, ["200"], [], {"J"}),
        (P, i.SEND_FINAL): (CO, ["486"], [], {"J"}),
        (P, i.TRANSPORT_ERROR): (T, [], [TT], set()),
        (CO, i.RECV_REQUEST): (CO, ["200"], [], {"J"}),
        (CO, i.SEND_1XX): REFUSED,
        (CO, i.SEND_2XX): REFUSED,
        (CO, i.SEND_FINAL): REFUSED,
        (CO, i.TIMER_J): (T, [], [TT], set()),
        (CO, i.TRANSPORT_ERROR): (T, [], [TT], set()),
    },
}

CASES = [
    pytest.param(machine, state, inp, id=f"{machine.name.split(' (')[0]}-{state.value}-{inp.name}")
    for machine in MACHINES
    for state in PATHS[machine][1]
    for inp in Input
]


@pytest.mark.parametrize(("machine", "state", "inp"), CASES)
def test_every_state_input_pair(machine: Machine, state: State, inp: Input) -> None:
    make, paths = PATHS[machine]
    rig = make()
    paths[state](rig)
    assert rig.tx.machine is machine
    assert rig.tx.state is state
    rig.drain()
    before = rig.armed()
    expected = EXPECT[machine].get((state, inp), (state, [], [], before))
    if expected == REFUSED:
        with pytest.raises(LocalProtocolError):
            rig.feed(inp)
        assert rig.tx.state is state
        assert rig.drain() == ([], [])
        assert rig.armed() == before
        return
    assert not isinstance(expected, str)
    next_state, sent, events, armed = expected
    rig.feed(inp)
    assert rig.tx.state is next_state
    assert rig.drain() == (sent, events)
    assert rig.armed() == armed
    if next_state is State.TERMINATED:
        assert rig.out.dead == [rig.tx]


def test_expectations_cover_exactly_the_tables() -> None:
    # What the tables do (beyond nothing) is exactly what the expectations above say.
    for machine in MACHINES:
        doing = {
            pair
            for pair, (actions, next_state) in machine.table.items()
            if actions or next_state is not pair[0]
        }
        assert doing == set(EXPECT[machine]), machine.name
        assert set(machine.states) == set(PATHS[machine][1]), machine.name


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.name)
def test_tables_are_complete_for_network_and_tu_inputs(machine: Machine) -> None:
    # Only timers may be missing (a state that does not run them); every other input of the
    # machine has an entry in every live state, REFUSE only for TU inputs and only alone.
    for state in machine.states:
        for inp in machine.inputs:
            if inp not in TIMER_INPUTS:
                assert (state, inp) in machine.table, (machine.name, state, inp)
    for (_, inp), (actions, _) in machine.table.items():
        if Action.REFUSE in actions:
            assert actions == (Action.REFUSE,) and inp in TU_INPUTS
        if inp in TIMER_INPUTS:
            # a timer is listed only where it runs: the state that starts it, or keeps it
            assert inp not in (Input.TIMER_A, Input.TIMER_B) or machine is CLIENT_INVITE


def test_every_rfc_timer_is_used() -> None:
    fired = {inp for m in MACHINES for (_, inp) in m.table if inp in TIMER_INPUTS}
    assert {t.name[-1] for t in fired} == set("ABDEFGHIJKLM")


# --------------------------------------------------------------- reliable transports


def test_reliable_client_invite_sets_no_timer_a_and_zero_timer_d() -> None:
    rig = client(INVITE, reliable=True)
    assert rig.armed() == {"B"}
    assert rig.drain() == (["INVITE"], [])
    rig.feed(Input.RECV_FINAL)
    # §17.1.1.2: Timer D is zero for reliable transports: Completed is left at once.
    assert rig.tx.state is State.TERMINATED
    assert rig.drain() == (["ACK"], [RR, TT])


def test_reliable_client_non_invite_sets_no_timer_e_and_zero_timer_k() -> None:
    rig = client(OPTIONS, reliable=True)
    assert rig.armed() == {"F"}
    rig.feed(Input.RECV_2XX)
    assert rig.tx.state is State.TERMINATED
    assert rig.drain() == (["OPTIONS"], [RR, TT])


def test_reliable_server_invite_sets_no_timer_g_and_zero_timer_i() -> None:
    rig = server(INVITE, reliable=True)
    rig.feed(Input.SEND_FINAL)
    assert rig.armed() == {"H"}
    rig.feed(Input.RECV_ACK)
    assert rig.tx.state is State.TERMINATED
    assert rig.drain() == (["100", "486"], [TT])


def test_reliable_server_non_invite_zero_timer_j() -> None:
    rig = server(OPTIONS, reliable=True)
    rig.feed(Input.SEND_2XX)
    assert rig.tx.state is State.TERMINATED
    assert rig.drain() == (["200"], [TT])


def test_reliable_accepted_keeps_timers_l_and_m() -> None:
    # RFC 6026 Timers L and M are 64*T1 on every transport; no 2xx retransmissions (no G).
    srv = server(INVITE, reliable=True)
    srv.feed(Input.SEND_2XX)
    assert srv.armed() == {"L"}
    srv.drain()
    srv.feed(Input.TIMER_L)
    assert srv.tx.state is State.TERMINATED
    assert srv.drain() == ([], ["AckTimeout", TT])  # no ACK on TCP either
    cli = client(INVITE, reliable=True)
    cli.feed(Input.RECV_2XX)
    assert cli.armed() == {"M"}


# ----------------------------------------------------------------------------- details


def test_ack_for_non_2xx_follows_17_1_1_3() -> None:
    invite = request(INVITE)
    response = answer(invite, 486)
    ack = build_ack(invite, response)
    assert ack.method == "ACK"
    assert ack.uri == invite.uri
    assert ack.headers.lines("Via") == [
        "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8"
    ]
    assert ack.headers.lines("Route") == invite.headers.lines("Route")
    assert ack.headers.get("To") == response.headers.get("To")
    assert ack.to.tag == "a6c85cf"
    assert ack.headers.get("From") == invite.headers.get("From")
    assert ack.call_id == invite.call_id
    assert (ack.cseq.seq, ack.cseq.method) == (314159, "ACK")
    assert ack.max_forwards == 69
    assert ack.body == b""
    assert "Contact" not in ack.headers and "Content-Type" not in ack.headers
    # it parses back to the same thing
    assert request(bytes(ack)).headers == ack.headers


def test_ack_is_built_once_and_resent_for_each_final_retransmission() -> None:
    rig = client(INVITE)
    rig.feed(Input.RECV_FINAL)
    first = rig.out.transmits[-1].data
    rig.feed(Input.RECV_FINAL)
    rig.feed(Input.RECV_FINAL)
    assert [t.data for t in rig.out.transmits[-3:]] == [first] * 3


def test_client_passes_the_response_and_its_source() -> None:
    rig = client(OPTIONS)
    response = answer(rig.request, 200)
    source = Peer("UDP", "198.51.100.7", 5062)
    assert isinstance(rig.tx, ClientTransaction)
    rig.tx.receive(response, source, 0.2)
    assert rig.out.events == [ResponseReceived("k", response, source)]


def test_accepted_2xx_retransmissions_back_off_and_timer_l_after_an_ack_is_quiet() -> None:
    rig = server(INVITE)
    rig.feed(Input.SEND_2XX, 0.0)
    rig.drain()
    out = rig.out
    for expected in (0.5, 1.5, 3.5, 7.5, 11.5):
        assert out.next_deadline() == expected
        out.fire_due(expected)
        assert rig.drain() == (["200"], [])
    rig.feed(Input.RECV_ACK, 12.0)
    assert rig.drain() == ([], ["AckReceived"])
    assert rig.armed() == {"L"}
    out.fire_due(100.0)
    assert rig.tx.state is State.TERMINATED
    assert rig.drain() == ([], [TT])  # the ACK came: no AckTimeout


def test_refused_send_names_the_state() -> None:
    rig = server(OPTIONS)
    rig.feed(Input.SEND_2XX)
    with pytest.raises(LocalProtocolError, match="Completed"):
        rig.feed(Input.SEND_FINAL)


def test_abandon_terminates_once() -> None:
    rig = client(INVITE)
    rig.feed(Input.RECV_1XX)
    rig.drain()
    rig.tx.abandon()
    rig.tx.abandon()
    assert rig.tx.state is State.TERMINATED
    assert rig.drain() == ([], [TT])
    assert rig.out.dead == [rig.tx]


def test_outbox_fires_in_deadline_order_and_skips_cancelled_timers() -> None:
    a = client(INVITE)
    out = a.out
    b_req = request(OPTIONS)
    b = ClientTransaction("b", b_req, UDP_PEER, schedule=Schedule(CONFIG, False), out=out)
    b.start(0.2)  # E at 0.7
    out.transmits.clear()
    assert out.next_deadline() == 0.5  # INVITE's Timer A
    a.feed(Input.RECV_1XX, 0.3)  # cancels A and B
    assert out.next_deadline() == 0.7
    out.fire_due(0.7)
    assert [t.data for t in out.transmits] == [b.request_bytes]
    assert out.next_deadline() == pytest.approx(1.7)


def test_outbox_compacts_cancelled_entries() -> None:
    out = Outbox()
    schedule = Schedule(CONFIG, False)
    req = request(INVITE)
    for n in range(2000):
        tx = ClientTransaction(f"k{n}", req, UDP_PEER, schedule=schedule, out=out)
        tx.start(float(n))
        tx.receive(answer(req, 180), UDP_PEER, float(n))  # A and B cancelled
    assert len(out.heap) < 600  # not 4000: stale entries were dropped along the way


def test_outbox_compacts_while_firing_without_losing_or_doubling_a_timer() -> None:
    out = Outbox()
    schedule = Schedule(CONFIG, False)
    opts = request(OPTIONS)
    many = [
        ClientTransaction(f"k{n}", opts, UDP_PEER, schedule=schedule, out=out) for n in range(300)
    ]
    for tx in many:
        tx.start(0.0)  # F at 32.0; their E (due 35.5 then) turns stale when F ends them
    late = ClientTransaction("late", opts, UDP_PEER, schedule=schedule, out=out)
    late.start(0.6)  # E at ... 28.1, 32.1: re-armed right after the 300 terminations
    while (deadline := out.next_deadline()) is not None and deadline < 32.0:
        out.fire_due(deadline)
    before = len(out.transmits)
    out.fire_due(32.2)
    assert len(out.heap) < 300  # compacted inside this very call
    assert [tx.state for tx in many] == [State.TERMINATED] * 300
    assert len(out.transmits) == before + 1  # late's E at 32.1, once
    assert late.timers.keys() == {Input.TIMER_E, Input.TIMER_F}
    out.fire_due(100.0)
    assert late.state is State.TERMINATED and out.next_deadline() is None
