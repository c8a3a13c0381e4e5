"""The four SIP transaction state machines: RFC 3261 §17 with the "Accepted" state of RFC 6026.

Each machine is a table ``(state, input) -> (actions, next state)``; :class:`Transaction` only
interprets the actions. A pair missing from a table is a timer the state never runs (nothing
happens); every network and TU input has an entry in every live state, so the tables can be
read, and tested, pair by pair. ``REFUSE`` marks what the TU may not do in a state (a second
final response): it raises :class:`LocalProtocolError` and changes nothing.

Timers live in one heap owned by :class:`Outbox` (lazily cancelled: a heap entry is valid only
while its transaction still has that timer armed with the same sequence number). On reliable
transports the retransmit timers A, E, G are never set and D, I, J, K are zero, i.e. the
transaction moves on at once (§17.1.1.2, §17.1.2.2, §17.2.1, §17.2.2).

One addition to the RFC 6026 machines: the INVITE server transaction in Accepted also does
the UA core's 2xx retransmissions (§13.3.1.4) with Timer G (T1, doubling up to T2, unreliable
transports only), stops them on the ACK, and tells the TU when Timer L fires without an ACK.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from pbx.sip.errors import LocalProtocolError
from pbx.sip.events import (
    AckReceived,
    AckTimeout,
    Event,
    Peer,
    ResponseReceived,
    TransactionTerminated,
    TransactionTimeout,
    Transmit,
    TransportFailed,
)
from pbx.sip.message import Headers, Request, Response
from pbx.sip.timers import TimerConfig


class State(Enum):
    __hash__ = object.__hash__  # members are singletons; Enum's own hash is a Python call

    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class Input(Enum):
    __hash__ = object.__hash__

    # From the network (client side: a response; server side: the request again, or an ACK).
    RECV_1XX = "1xx received"
    RECV_2XX = "2xx received"
    RECV_FINAL = "300-699 received"
    RECV_REQUEST = "request retransmission received"
    RECV_ACK = "ACK received"
    # From the TU (server side).
    SEND_1XX = "TU sends 1xx"
    SEND_2XX = "TU sends 2xx"
    SEND_FINAL = "TU sends 300-699"
    # Timers (the input a timer produces when it fires carries its name).
    TIMER_A = "Timer A"
    TIMER_B = "Timer B"
    TIMER_D = "Timer D"
    TIMER_E = "Timer E"
    TIMER_F = "Timer F"
    TIMER_G = "Timer G"
    TIMER_H = "Timer H"
    TIMER_I = "Timer I"
    TIMER_J = "Timer J"
    TIMER_K = "Timer K"
    TIMER_L = "Timer L"
    TIMER_M = "Timer M"
    # From the transport (§17.1.4, §17.2.4).
    TRANSPORT_ERROR = "transport error"


class Action(Enum):
    __hash__ = object.__hash__

    REFUSE = "refuse (LocalProtocolError)"
    SEND_REQUEST = "send the request"
    SEND_ACK = "send ACK for the non-2xx final (§17.1.1.3)"
    PASS_RESPONSE = "pass the response to the TU"
    SEND_RESPONSE = "send the TU's response and keep it"
    RESEND_RESPONSE = "resend the last response"
    PASS_ACK = "pass the ACK to the TU"
    TIMEOUT = "tell the TU: timeout"
    ACK_TIMEOUT = "tell the TU: the 2xx got no ACK (unless one came)"
    TRANSPORT_FAILED = "tell the TU: transport failure"
    STOP_TIMERS = "cancel every running timer"
    STOP_G = "cancel Timer G (stop retransmitting the response)"
    START_A = "start A = T1"
    BACKOFF_A = "restart A at twice its interval"
    START_B = "start B = 64*T1"
    START_D = "start D"
    START_E = "start E = T1"
    BACKOFF_E = "restart E at min(2*interval, T2)"
    E_AT_T2 = "restart E at T2"
    START_F = "start F = 64*T1"
    START_G = "start G = T1"
    BACKOFF_G = "restart G at min(2*interval, T2)"
    START_H = "start H = 64*T1"
    START_I = "start I"
    START_J = "start J"
    START_K = "start K"
    START_L = "start L = 64*T1"
    START_M = "start M = 64*T1"


Transition = tuple[tuple[Action, ...], State]
AckKey = tuple[str, int, str, str]  # see ack_key()

TIMER_INPUTS = frozenset(i for i in Input if i.name.startswith("TIMER_"))
TU_INPUTS = frozenset({Input.SEND_1XX, Input.SEND_2XX, Input.SEND_FINAL})


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one object per machine
class Machine:
    name: str
    start: Transition
    table: Mapping[tuple[State, Input], Transition]

    @property
    def states(self) -> list[State]:
        """The live states (Terminated has no transitions: the transaction is forgotten)."""
        seen = dict.fromkeys(state for state, _ in self.table)
        return list(seen)

    @property
    def inputs(self) -> list[Input]:
        seen = dict.fromkeys(inp for _, inp in self.table)
        return list(seen)


S = State
I = Input  # noqa: E741 - short names keep the tables one line per pair
A = Action
_ABSORB: tuple[Action, ...] = ()
_REFUSE = (A.REFUSE,)

# RFC 3261 §17.1.1.2 (Figure 5) as changed by RFC 6026 §7.2: a 2xx moves the INVITE
# client transaction to Accepted, where further 2xx go to the TU until Timer M fires.
CLIENT_INVITE = Machine(
    "INVITE client transaction (RFC 3261 §17.1.1, RFC 6026 §7.2)",
    start=((A.SEND_REQUEST, A.START_A, A.START_B), S.CALLING),
    table={
        (S.CALLING, I.RECV_1XX): ((A.STOP_TIMERS, A.PASS_RESPONSE), S.PROCEEDING),
        (S.CALLING, I.RECV_2XX): ((A.STOP_TIMERS, A.PASS_RESPONSE, A.START_M), S.ACCEPTED),
        (S.CALLING, I.RECV_FINAL): (
            (A.STOP_TIMERS, A.PASS_RESPONSE, A.SEND_ACK, A.START_D),
            S.COMPLETED,
        ),
        (S.CALLING, I.TIMER_A): ((A.SEND_REQUEST, A.BACKOFF_A), S.CALLING),
        (S.CALLING, I.TIMER_B): ((A.TIMEOUT,), S.TERMINATED),
        (S.CALLING, I.TRANSPORT_ERROR): ((A.TRANSPORT_FAILED,), S.TERMINATED),
        (S.PROCEEDING, I.RECV_1XX): ((A.PASS_RESPONSE,), S.PROCEEDING),
        (S.PROCEEDING, I.RECV_2XX): ((A.PASS_RESPONSE, A.START_M), S.ACCEPTED),
        (S.PROCEEDING, I.RECV_FINAL): ((A.PASS_RESPONSE, A.SEND_ACK, A.START_D), S.COMPLETED),
        (S.PROCEEDING, I.TRANSPORT_ERROR): ((A.TRANSPORT_FAILED,), S.TERMINATED),
        (S.COMPLETED, I.RECV_1XX): (_ABSORB, S.COMPLETED),
        # Not in the RFC: a 2xx after a non-2xx final (a forking proxy) makes a dialog the
        # UAC core must ACK and end (§13.2.2.4), so the TU hears of it.
        (S.COMPLETED, I.RECV_2XX): ((A.PASS_RESPONSE,), S.COMPLETED),
        (S.COMPLETED, I.RECV_FINAL): ((A.SEND_ACK,), S.COMPLETED),
        (S.COMPLETED, I.TIMER_D): (_ABSORB, S.TERMINATED),
        # After the final the TU has its answer; a failure to resend the ACK only ends us.
        (S.COMPLETED, I.TRANSPORT_ERROR): (_ABSORB, S.TERMINATED),
        (S.ACCEPTED, I.RECV_1XX): (_ABSORB, S.ACCEPTED),
        (S.ACCEPTED, I.RECV_2XX): ((A.PASS_RESPONSE,), S.ACCEPTED),
        (S.ACCEPTED, I.RECV_FINAL): (_ABSORB, S.ACCEPTED),
        (S.ACCEPTED, I.TIMER_M): (_ABSORB, S.TERMINATED),
        (S.ACCEPTED, I.TRANSPORT_ERROR): (_ABSORB, S.TERMINATED),
    },
)

# RFC 3261 §17.1.2.2 (Figure 6).
_NI_FINAL = ((A.STOP_TIMERS, A.PASS_RESPONSE, A.START_K), S.COMPLETED)
CLIENT_NON_INVITE = Machine(
    "non-INVITE client transaction (RFC 3261 §17.1.2)",
    start=((A.SEND_REQUEST, A.START_E, A.START_F), S.TRYING),
    table={
        (S.TRYING, I.RECV_1XX): ((A.PASS_RESPONSE,), S.PROCEEDING),
        (S.TRYING, I.RECV_2XX): _NI_FINAL,
        (S.TRYING, I.RECV_FINAL): _NI_FINAL,
        (S.TRYING, I.TIMER_E): ((A.SEND_REQUEST, A.BACKOFF_E), S.TRYING),
        (S.TRYING, I.TIMER_F): ((A.TIMEOUT,), S.TERMINATED),
        (S.TRYING, I.TRANSPORT_ERROR): ((A.TRANSPORT_FAILED,), S.TERMINATED),
        (S.PROCEEDING, I.RECV_1XX): ((A.PASS_RESPONSE,), S.PROCEEDING),
        (S.PROCEEDING, I.RECV_2XX): _NI_FINAL,
        (S.PROCEEDING, I.RECV_FINAL): _NI_FINAL,
        (S.PROCEEDING, I.TIMER_E): ((A.SEND_REQUEST, A.E_AT_T2), S.PROCEEDING),
        (S.PROCEEDING, I.TIMER_F): ((A.TIMEOUT,), S.TERMINATED),
        (S.PROCEEDING, I.TRANSPORT_ERROR): ((A.TRANSPORT_FAILED,), S.TERMINATED),
        (S.COMPLETED, I.RECV_1XX): (_ABSORB, S.COMPLETED),
        (S.COMPLETED, I.RECV_2XX): (_ABSORB, S.COMPLETED),
        (S.COMPLETED, I.RECV_FINAL): (_ABSORB, S.COMPLETED),
        (S.COMPLETED, I.TIMER_K): (_ABSORB, S.TERMINATED),
        (S.COMPLETED, I.TRANSPORT_ERROR): (_ABSORB, S.TERMINATED),
    },
)

# RFC 3261 §17.2.1 (Figure 7) as changed by RFC 6026 §7.1: a 2xx from the TU moves
# the transaction to Accepted, where the TU's 2xx (retransmissions or a new 2xx) pass and
# replace the stored one, INVITE retransmissions are absorbed, and an ACK that matches goes
# to the TU, until Timer L fires. Not in RFC 6026, which leaves it to the TU: the UA core's
# 2xx retransmissions (§13.3.1.4) run here on Timer G (T1 doubling up to T2, none on
# reliable transports) until the ACK; Timer L without an ACK tells the TU (AckTimeout).
# The 100 Trying is the layer's first SEND_1XX (it answers every new INVITE at once rather
# than wait 200 ms for the TU).
SERVER_INVITE = Machine(
    "INVITE server transaction (RFC 3261 §17.2.1, RFC 6026 §7.1)",
    start=(_ABSORB, S.PROCEEDING),
    table={
        (S.PROCEEDING, I.RECV_REQUEST): ((A.RESEND_RESPONSE,), S.PROCEEDING),
        (S.PROCEEDING, I.RECV_ACK): (_ABSORB, S.PROCEEDING),
        (S.PROCEEDING, I.SEND_1XX): ((A.SEND_RESPONSE,), S.PROCEEDING),
        (S.PROCEEDING, I.SEND_2XX): ((A.SEND_RESPONSE, A.START_G, A.START_L), S.ACCEPTED),
        (S.PROCEEDING, I.SEND_FINAL): ((A.SEND_RESPONSE, A.START_G, A.START_H), S.COMPLETED),
        (S.PROCEEDING, I.TRANSPORT_ERROR): (_ABSORB, S.TERMINATED),
        (S.COMPLETED, I.RECV_REQUEST): ((A.RESEND_RESPONSE,), S.COMPLETED),
        (S.COMPLETED, I.RECV_ACK): ((A.STOP_TIMERS, A.START_I), S.CONFIRMED),
        (S.COMPLETED, I.SEND_1XX): (_REFUSE, S.COMPLETED),
        (S.COMPLETED, I.SEND_2XX): (_REFUSE, S.COMPLETED),
        (S.COMPLETED, I.SEND_FINAL): (_REFUSE, S.COMPLETED),
        (S.COMPLETED, I.TIMER_G): ((A.RESEND_RESPONSE, A.BACKOFF_G), S.COMPLETED),
        (S.COMPLETED, I.TIMER_H): ((A.TIMEOUT,), S.TERMINATED),
        (S.COMPLETED, I.TRANSPORT_ERROR): (_ABSORB, S.TERMINATED),
        (S.CONFIRMED, I.RECV_REQUEST): (_ABSORB, S.CONFIRMED),
        (S.CONFIRMED, I.RECV_ACK): (_ABSORB, S.CONFIRMED),
        (S.CONFIRMED, I.SEND_1XX): (_REFUSE, S.CONFIRMED),
        (S.CONFIRMED, I.SEND_2XX): (_REFUSE, S.CONFIRMED),
        (S.CONFIRMED, I.SEND_FINAL): (_REFUSE, S.CONFIRMED),
        (S.CONFIRMED, I.TIMER_I): (_ABSORB, S.TERMINATED),
        (S.CONFIRMED, I.TRANSPORT_ERROR): (_ABSORB, S.TERMINATED),
        (S.ACCEPTED, I.RECV_REQUEST): (_ABSORB, S.ACCEPTED),
        (S.ACCEPTED, I.RECV_ACK): ((A.STOP_G, A.PASS_ACK), S.ACCEPTED),
        (S.ACCEPTED, I.SEND_1XX): (_REFUSE, S.ACCEPTED),
        (S.ACCEPTED, I.SEND_2XX): ((A.SEND_RESPONSE,), S.ACCEPTED),
        (S.ACCEPTED, I.SEND_FINAL): (_REFUSE, S.ACCEPTED),
        (S.ACCEPTED, I.TIMER_G): ((A.RESEND_RESPONSE, A.BACKOFF_G), S.ACCEPTED),
        (S.ACCEPTED, I.TIMER_L): ((A.ACK_TIMEOUT,), S.TERMINATED),
        (S.ACCEPTED, I.TRANSPORT_ERROR): (_ABSORB, S.TERMINATED),
    },
)

# RFC 3261 §17.2.2 (Figure 8).
_NIS_FINAL = ((A.SEND_RESPONSE, A.START_J), S.COMPLETED)
SERVER_NON_INVITE = Machine(
    "non-INVITE server transaction (RFC 3261 §17.2.2)",
    start=(_ABSORB, S.TRYING),
    table={
        (S.TRYING, I.RECV_REQUEST): (_ABSORB, S.TRYING),
        (S.TRYING, I.SEND_1XX): ((A.SEND_RESPONSE,), S.PROCEEDING),
        (S.TRYING, I.SEND_2XX): _NIS_FINAL,
        (S.TRYING, I.SEND_FINAL): _NIS_FINAL,
        (S.TRYING, I.TRANSPORT_ERROR): (_ABSORB, S.TERMINATED),
        (S.PROCEEDING, I.RECV_REQUEST): ((A.RESEND_RESPONSE,), S.PROCEEDING),
        (S.PROCEEDING, I.SEND_1XX): ((A.SEND_RESPONSE,), S.PROCEEDING),
        (S.PROCEEDING, I.SEND_2XX): _NIS_FINAL,
        (S.PROCEEDING, I.SEND_FINAL): _NIS_FINAL,
        (S.PROCEEDING, I.TRANSPORT_ERROR): (_ABSORB, S.TERMINATED),
        (S.COMPLETED, I.RECV_REQUEST): ((A.RESEND_RESPONSE,), S.COMPLETED),
        (S.COMPLETED, I.SEND_1XX): (_REFUSE, S.COMPLETED),
        (S.COMPLETED, I.SEND_2XX): (_REFUSE, S.COMPLETED),
        (S.COMPLETED, I.SEND_FINAL): (_REFUSE, S.COMPLETED),
        (S.COMPLETED, I.TIMER_J): (_ABSORB, S.TERMINATED),
        (S.COMPLETED, I.TRANSPORT_ERROR): (_ABSORB, S.TERMINATED),
    },
)

MACHINES = (CLIENT_INVITE, CLIENT_NON_INVITE, SERVER_INVITE, SERVER_NON_INVITE)


def response_input(status: int, *, sending: bool) -> Input:
    if status < 200:
        return I.SEND_1XX if sending else I.RECV_1XX
    if status < 300:
        return I.SEND_2XX if sending else I.RECV_2XX
    return I.SEND_FINAL if sending else I.RECV_FINAL


# ------------------------------------------------------------------------------ timers


class Schedule:
    """Timer durations for one kind of transport: ``None`` = never set, ``0`` = fire at once."""

    __slots__ = ("starts", "t1", "t2")

    def __init__(self, config: TimerConfig, reliable: bool) -> None:
        self.t1 = config.t1
        self.t2 = config.t2
        retransmit = None if reliable else config.t1
        self.starts: dict[Action, tuple[Input, float | None]] = {
            A.START_A: (I.TIMER_A, retransmit),
            A.START_B: (I.TIMER_B, config.b),
            A.START_D: (I.TIMER_D, 0.0 if reliable else config.d),
            A.START_E: (I.TIMER_E, retransmit),
            A.START_F: (I.TIMER_F, config.f),
            A.START_G: (I.TIMER_G, retransmit),
            A.START_H: (I.TIMER_H, config.h),
            A.START_I: (I.TIMER_I, 0.0 if reliable else config.i),
            A.START_J: (I.TIMER_J, 0.0 if reliable else config.j),
            A.START_K: (I.TIMER_K, 0.0 if reliable else config.k),
            A.START_L: (I.TIMER_L, config.l),
            A.START_M: (I.TIMER_M, config.m),
        }


HeapEntry = tuple[float, int, "Transaction", Input]


class Outbox:
    """What transactions produce: transmits, TU events, timers (one heap), and the list of
    transactions that just terminated (the layer forgets them)."""

    __slots__ = ("_live", "_seq", "dead", "events", "heap", "transmits")

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.transmits: list[Transmit] = []
        self.heap: list[HeapEntry] = []
        self.dead: list[Transaction] = []
        self._seq = 0
        self._live = 0  # armed timers; the rest of the heap is stale

    def arm(self, tx: Transaction, timer: Input, deadline: float) -> None:
        self._seq += 1
        if tx.timers.get(timer) is None:
            self._live += 1
        tx.timers[timer] = self._seq
        heapq.heappush(self.heap, (deadline, self._seq, tx, timer))
        if len(self.heap) > 2 * self._live + 256:
            # Cancelled entries pile up (every INVITE answered early leaves its Timer B), and
            # they hold their transactions: drop them now and then.
            # In place: fire_due may be iterating over this very list.
            self.heap[:] = [e for e in self.heap if e[2].timers.get(e[3]) == e[1]]
            heapq.heapify(self.heap)

    def disarm(self, tx: Transaction, timer: Input) -> None:
        if tx.timers.pop(timer, None) is not None:
            self._live -= 1

    def disarm_all(self, tx: Transaction) -> None:
        self._live -= len(tx.timers)
        tx.timers.clear()

    def next_deadline(self) -> float | None:
        heap = self.heap
        while heap:
            deadline, seq, tx, timer = heap[0]
            if tx.timers.get(timer) == seq:
                return deadline
            heapq.heappop(heap)
        return None

    def fire_due(self, now: float) -> None:
        """Fire every armed timer whose deadline is ``now`` or earlier, in deadline order."""
        heap = self.heap
        while heap and heap[0][0] <= now:
            _, seq, tx, timer = heapq.heappop(heap)
            if tx.timers.get(timer) == seq:
                del tx.timers[timer]
                self._live -= 1
                tx.handle(timer, now)


# ------------------------------------------------------------------------ transactions


class Transaction:
    """Common part: runs the machine's table, the timers, and termination."""

    __slots__ = (
        "interval",
        "key",
        "machine",
        "out",
        "peer",
        "request",
        "schedule",
        "state",
        "timers",
    )

    def __init__(
        self,
        key: str,
        machine: Machine,
        request: Request,
        peer: Peer,
        *,
        schedule: Schedule,
        out: Outbox,
    ) -> None:
        self.key = key
        self.machine = machine
        # None once a non-INVITE server transaction has sent its final response: see
        # ServerTransaction._act.
        self.request: Request | None = request
        self.peer = peer  # the next hop: where requests (client) or responses (server) go
        self.schedule = schedule
        self.out = out
        self.state = machine.start[1]
        self.timers: dict[Input, int] = {}  # armed timer -> sequence number of its heap entry
        self.interval = 0.0  # the current retransmit interval (A, E or G)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key} {self.state.value}>"

    def handle(
        self,
        inp: Input,
        now: float,
        response: Response | None = None,
        source: Peer | None = None,
        ack: Request | None = None,
    ) -> None:
        """Apply one input. ``response``/``source``/``ack`` carry the message that caused it."""
        entry = self.machine.table.get((self.state, inp))
        if entry is None:
            return  # a timer input in a state that does not run it (or Terminated)
        actions, next_state = entry
        fire_now: Input | None = None
        for action in actions:
            if action is A.REFUSE:
                raise LocalProtocolError(
                    f"{inp.value} is not allowed in state {self.state.value} of {self.key}"
                )
            zero = self._act(action, now, response, source, ack)
            if zero is not None:
                fire_now = zero
        self.state = next_state
        if next_state is S.TERMINATED:
            self._end()
        elif fire_now is not None:
            self.handle(fire_now, now)  # a zero timer (D, I, J, K on reliable transports)

    def _act(
        self,
        action: Action,
        now: float,
        response: Response | None,
        source: Peer | None,
        ack: Request | None,
    ) -> Input | None:
        """Perform a common action; returns a zero-length timer that must fire at once."""
        out = self.out
        if action is A.STOP_TIMERS:
            out.disarm_all(self)
        elif action is A.STOP_G:
            out.disarm(self, I.TIMER_G)
        elif action is A.TIMEOUT:
            out.events.append(TransactionTimeout(self.key))
        elif action in (A.BACKOFF_A, A.BACKOFF_E, A.BACKOFF_G, A.E_AT_T2):
            if action is A.BACKOFF_A:
                timer, self.interval = I.TIMER_A, 2 * self.interval  # uncapped until B
            elif action is A.E_AT_T2:
                timer, self.interval = I.TIMER_E, self.schedule.t2
            else:
                timer = I.TIMER_E if action is A.BACKOFF_E else I.TIMER_G
                self.interval = min(2 * self.interval, self.schedule.t2)
            out.arm(self, timer, now + self.interval)
        else:
            timer, delay = self.schedule.starts[action]
            if delay is None:
                return None  # a retransmit timer on a reliable transport
            if delay == 0:
                return timer
            if timer in (I.TIMER_A, I.TIMER_E, I.TIMER_G):
                self.interval = delay
            out.arm(self, timer, now + delay)
        return None

    def _end(self) -> None:
        self.out.disarm_all(self)
        self.out.events.append(TransactionTerminated(self.key))
        self.out.dead.append(self)

    def abandon(self) -> None:
        """Terminate now, outside the table (the TU gives up, e.g. §9.1 after a CANCEL)."""
        if self.state is not S.TERMINATED:
            self.state = S.TERMINATED
            self._end()


class ClientTransaction(Transaction):
    """A client transaction: sends ``request`` to ``peer`` and matches its responses."""

    __slots__ = ("ack_bytes", "request_bytes")

    def __init__(
        self,
        key: str,
        request: Request,
        peer: Peer,
        *,
        schedule: Schedule,
        out: Outbox,
    ) -> None:
        machine = CLIENT_INVITE if request.method == "INVITE" else CLIENT_NON_INVITE
        super().__init__(key, machine, request, peer, schedule=schedule, out=out)
        self.request_bytes = bytes(request)
        self.ack_bytes: bytes | None = None

    def start(self, now: float) -> None:
        for action in self.machine.start[0]:
            self._act(action, now, None, None, None)

    def receive(self, response: Response, source: Peer, now: float) -> None:
        self.handle(response_input(response.status, sending=False), now, response, source)

    def _act(
        self,
        action: Action,
        now: float,
        response: Response | None,
        source: Peer | None,
        ack: Request | None,
    ) -> Input | None:
        if action is A.SEND_REQUEST:
            self.out.transmits.append(Transmit(self.request_bytes, self.peer))
        elif action is A.PASS_RESPONSE:
            assert response is not None and source is not None
            self.out.events.append(ResponseReceived(self.key, response, source))
        elif action is A.SEND_ACK:
            assert response is not None
            if self.ack_bytes is None:
                assert self.request is not None  # client transactions keep theirs
                self.ack_bytes = bytes(build_ack(self.request, response))
            self.out.transmits.append(Transmit(self.ack_bytes, self.peer))
        elif action is A.TRANSPORT_FAILED:
            self.out.events.append(TransportFailed(self.key))
        else:
            return super()._act(action, now, response, source, ack)
        return None


class ServerTransaction(Transaction):
    """A server transaction for ``request`` received from ``source``; responses go to
    ``peer`` (computed by the layer per §18.2.2).

    ``acked``: an ACK for the 2xx reached the transaction in Accepted. ``ack_key``: the
    layer's key for matching that ACK (Call-ID, CSeq number, From tag, To tag of the 2xx),
    set while the transaction is in its index."""

    __slots__ = ("ack_key", "acked", "response", "response_bytes", "source")

    def __init__(
        self,
        key: str,
        request: Request,
        source: Peer,
        peer: Peer,
        *,
        schedule: Schedule,
        out: Outbox,
    ) -> None:
        machine = SERVER_INVITE if request.method == "INVITE" else SERVER_NON_INVITE
        super().__init__(key, machine, request, peer, schedule=schedule, out=out)
        self.source = source
        self.response: Response | None = None
        self.response_bytes: bytes | None = None
        self.acked = False
        self.ack_key: AckKey | None = None

    @property
    def to_tag(self) -> str | None:
        """The To tag of the last response sent (the one an ACK or CANCEL must carry)."""
        return None if self.response is None else self.response.to.tag

    def receive(self, request: Request, source: Peer, now: float) -> None:
        """The request again (a retransmission), or an ACK matching this INVITE transaction."""
        if request.method == "ACK":
            self.handle(I.RECV_ACK, now, None, source, request)
        else:
            self.handle(I.RECV_REQUEST, now)

    def send(self, response: Response, now: float) -> None:
        self.handle(response_input(response.status, sending=True), now, response)

    def _act(
        self,
        action: Action,
        now: float,
        response: Response | None,
        source: Peer | None,
        ack: Request | None,
    ) -> Input | None:
        if action is A.SEND_RESPONSE:
            assert response is not None
            self.response = response
            self.response_bytes = bytes(response)
            self.out.transmits.append(Transmit(self.response_bytes, self.peer))
            if response.status >= 200 and self.machine is SERVER_NON_INVITE:
                # Completed only resends these bytes for 64*T1 (Timer J). The parsed request
                # and response are dozens of tracked objects each: at thousands of REGISTERs
                # a second, keeping them 32 s made the cyclic GC's scans take up to a second.
                self.request = self.response = None
        elif action is A.RESEND_RESPONSE:
            if self.response_bytes is not None:
                self.out.transmits.append(Transmit(self.response_bytes, self.peer))
        elif action is A.PASS_ACK:
            assert ack is not None and source is not None
            self.acked = True
            self.out.events.append(AckReceived(ack, source, self.key))
        elif action is A.ACK_TIMEOUT:
            if not self.acked:
                assert self.request is not None  # an INVITE transaction keeps its request
                self.out.events.append(AckTimeout(self.key, self.request))
        else:
            return super()._act(action, now, response, source, ack)
        return None


def ack_key(message: Request | Response) -> AckKey:
    """What ties an ACK to the 2xx it acknowledges (its branch is new, §13.2.2.4): Call-ID,
    CSeq number, From tag and To tag. The same for the 2xx and for its ACK."""
    return (message.call_id, message.cseq.seq, message.from_.tag or "", message.to.tag or "")


def build_ack(invite: Request, response: Response) -> Request:
    """The ACK for a non-2xx final response, built by the transaction (RFC 3261 §17.1.1.3):
    Request-URI, Call-ID, From and the CSeq number of the INVITE, the INVITE's top Via only
    (same branch), its Route headers, and the To of the response."""
    headers = invite.headers
    items = [("Via", headers.values("Via")[0])]
    items.extend(("Route", route) for route in headers.lines("Route"))
    items.append(("Max-Forwards", headers.get("Max-Forwards") or "70"))
    items.append(("From", headers.lines("From")[0]))
    items.append(("To", response.headers.lines("To")[0]))
    items.append(("Call-ID", headers.lines("Call-ID")[0]))
    items.append(("CSeq", f"{invite.cseq.seq} ACK"))
    return Request(Headers(items), method="ACK", uri=invite.uri)
