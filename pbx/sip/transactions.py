"""The transaction layer: matching, stamping and addressing around the four machines of
:mod:`pbx.sip.transaction` (RFC 3261 §17.1.3, §17.2.3, §9.2, §18.2.1, §18.2.2; RFC 3581;
RFC 6026).

Sans-IO: the transport hands in parsed messages with their source and ``now``; the layer hands
back :class:`Transmit` values, TU events and its next timer deadline.

Choices where the RFCs leave room:

* Every new INVITE is answered with 100 Trying at once, instead of waiting up to 200 ms to
  see whether the TU sends a provisional itself (§17.2.1 allows both; this is the simple one).
* CANCEL is answered by the layer: 200 when it matches an INVITE server transaction (§9.2),
  481 otherwise, each through the CANCEL's own non-INVITE server transaction so CANCEL
  retransmissions are absorbed. The TU hears ``CancelReceived`` only while the INVITE has
  no final response. The 200 carries the To tag of the INVITE's last response, or one
  derived from the transaction key when only 100 was sent. A CANCEL for a non-INVITE
  request gets 481 (§9.1: CANCEL is for INVITE).
* Branches that are exactly the magic cookie ("z9hG4bK", RFC 4475 §3.2.1) are treated as
  RFC 2543 requests: they cannot identify a transaction.
* ``maddr`` in Via is not honoured when addressing responses (§18.2.2 multicast).
* The 2xx retransmissions to an INVITE (§13.3.1.4) are done here, not by the TU as RFC 6026
  §7.1 has it: the INVITE server transaction in Accepted resends its last 2xx on Timer G
  (T1, doubling up to T2) over unreliable transports, never over reliable ones, until the
  ACK comes or Timer L (64*T1) ends the transaction. The ACK for a 2xx has its own branch,
  so it is matched to the Accepted transaction by Call-ID, CSeq number, From tag and the To
  tag of the 2xx (one dict lookup in an index kept while the transaction is Accepted); it
  stops the retransmissions and still reaches the TU as ``AckReceived`` naming the INVITE's
  transaction. An ACK carrying the INVITE's branch but another To tag or CSeq is not that
  ACK: it reaches the TU without stopping anything. When Timer L fires and no ACK came (on
  any transport), the TU gets ``AckTimeout`` and should end the dialog with BYE. A 2xx the
  TU sends in Accepted (its own retransmission, or another 2xx) replaces the stored one
  without restarting the schedule.
"""

from __future__ import annotations

import ipaddress
import zlib
from dataclasses import replace
from functools import lru_cache

from pbx.sip import headers as h
from pbx.sip.errors import LocalProtocolError, ParseError
from pbx.sip.events import (
    AckReceived,
    CancelReceived,
    Event,
    Peer,
    RequestReceived,
    StrayResponse,
    Transmit,
)
from pbx.sip.headers import Via
from pbx.sip.message import Headers, Request, Response, make_response
from pbx.sip.timers import TimerConfig
from pbx.sip.transaction import (
    AckKey,
    ClientTransaction,
    Input,
    Outbox,
    Schedule,
    ServerTransaction,
    State,
    Transaction,
    ack_key,
)

MAGIC_COOKIE = "z9hG4bK"
DEFAULT_PORT = 5060
DEFAULT_TIMERS = TimerConfig()

PeerKey = tuple[str, str, int]


class TransactionLayer:
    """All client and server transactions of one SIP element.

    Client keys are ``branch|METHOD``; server keys ``branch|METHOD|sent-by`` (RFC 3261
    requests) or ``METHOD|Request-URI|To tag|From tag|Call-ID|CSeq number|top Via`` (the
    RFC 2543 fallback).
    """

    def __init__(self, timers: TimerConfig = DEFAULT_TIMERS) -> None:
        self.timers = timers
        self._out = Outbox()
        self._unreliable = Schedule(timers, reliable=False)
        self._reliable = Schedule(timers, reliable=True)
        self._clients: dict[str, ClientTransaction] = {}
        self._servers: dict[str, ServerTransaction] = {}
        self._by_peer: dict[PeerKey, set[Transaction]] = {}  # for transport_error
        self._acks: dict[AckKey, ServerTransaction] = {}  # Accepted INVITEs, for 2xx ACKs

    def __len__(self) -> int:
        return len(self._clients) + len(self._servers)

    def __contains__(self, key: object) -> bool:
        return key in self._clients or key in self._servers

    def __repr__(self) -> str:
        return f"<TransactionLayer clients={len(self._clients)} servers={len(self._servers)}>"

    def state(self, key: str) -> State | None:
        """The state of transaction ``key``, ``None`` when there is no such transaction."""
        tx = self._clients.get(key) or self._servers.get(key)
        return None if tx is None else tx.state

    # ----------------------------------------------------------------------- draining

    def events(self) -> list[Event]:
        out = self._out
        events, out.events = out.events, []
        return events

    def transmits(self) -> list[Transmit]:
        out = self._out
        transmits, out.transmits = out.transmits, []
        return transmits

    def next_timer(self) -> float | None:
        return self._out.next_deadline()

    def handle_timer(self, now: float) -> None:
        self._out.fire_due(now)
        self._sweep()

    # ----------------------------------------------------------------------- inbound

    def receive(self, message: Request | Response, source: Peer, now: float) -> None:
        if isinstance(message, Response):
            self._receive_response(message, source, now)
        else:
            self._receive_request(message, source, now)
        self._sweep()

    def _receive_response(self, response: Response, source: Peer, now: float) -> None:
        # §17.1.3: the top Via branch and the CSeq method identify the client transaction.
        branch = response.top_via.branch
        tx = None if branch is None else self._clients.get(f"{branch}|{response.cseq.method}")
        if tx is None:
            self._out.events.append(StrayResponse(response, source))
        else:
            tx.receive(response, source, now)

    def _receive_request(self, request: Request, source: Peer, now: float) -> None:
        via = request.top_via
        stamped = stamp_via(via, source)
        if stamped is not via:
            request = _with_top_via(request, stamped)
        method = request.method
        branch = via.branch
        modern = branch if _is_rfc3261(branch) else None  # None: the RFC 2543 rules apply
        if method == "ACK":
            tx = self._acks.get(ack_key(request)) if self._acks else None
            if tx is None:
                tx = self._match_ack(request, via, modern)
                if tx is not None and tx.state is State.ACCEPTED:
                    tx = None  # the INVITE's branch, but not the ACK for the 2xx it sent
            if tx is None:
                self._out.events.append(AckReceived(request, source))  # an ACK for a 2xx
            else:
                tx.receive(request, source, now)
            return
        key = _server_key(request, via, method, modern)
        tx = self._servers.get(key)
        if tx is not None:
            tx.receive(request, source, now)  # a retransmission
            return
        tx = self._new_server(key, request, source, _response_peer(stamped, source))
        if method == "CANCEL":
            invite_key = _server_key(request, via, "INVITE", modern)  # §9.2
            self._answer_cancel(tx, request, source, invite_key, now)
            return
        self._out.events.append(RequestReceived(key, request, source))
        if method == "INVITE":
            tx.send(make_response(request, 100), now)

    def _match_ack(self, ack: Request, via: Via, modern: str | None) -> ServerTransaction | None:
        """The INVITE server transaction an ACK belongs to (§17.2.3), if any."""
        if modern is not None:
            return self._servers.get(_server_key(ack, via, "INVITE", modern))
        # RFC 2543: as for the INVITE but the ACK's To tag is the one of the response sent;
        # the INVITE had no To tag (initial) or that same tag (re-INVITE).
        tag = ack.to.tag
        for invite_tag in ("", tag) if tag else ("",):
            tx = self._servers.get(_key_2543(ack, via, "INVITE", invite_tag))
            if tx is not None and tx.to_tag == tag:
                return tx
        return None

    def _answer_cancel(
        self,
        tx: ServerTransaction,
        cancel: Request,
        source: Peer,
        invite_key: str,
        now: float,
    ) -> None:
        invite = self._servers.get(invite_key)
        if invite is None:
            tx.send(make_response(cancel, 481, to_tag=derived_tag(tx.key)), now)
            return
        to_tag = invite.to_tag or derived_tag(invite_key)
        tx.send(make_response(cancel, 200, to_tag=to_tag), now)
        if invite.state is State.PROCEEDING:
            self._out.events.append(CancelReceived(invite_key, cancel, source))

    def _new_server(
        self, key: str, request: Request, source: Peer, target: Peer
    ) -> ServerTransaction:
        schedule = self._reliable if source.reliable else self._unreliable
        tx = ServerTransaction(key, request, source, target, schedule=schedule, out=self._out)
        self._servers[key] = tx
        self._index(tx)
        return tx

    # ---------------------------------------------------------------------- outbound

    def send_request(self, request: Request, target: Peer, now: float) -> str:
        """Start a client transaction sending ``request`` to ``target``; returns its key.

        The request's top Via must carry an RFC 3261 branch, unique to this request (CANCEL
        reuses its INVITE's). ACK has no transaction: the ACK for a non-2xx is the INVITE
        transaction's, the ACK for a 2xx goes through :meth:`send_stateless` (the endpoint's
        ``send_ack`` also sends it again for each retransmission of the 2xx, §13.2.2.4).
        """
        method = request.method
        if method == "ACK":
            raise LocalProtocolError("ACK has no client transaction: use send_stateless")
        try:
            branch = request.top_via.branch
        except ParseError:
            raise LocalProtocolError(f"{method} request without Via") from None
        if not _is_rfc3261(branch):
            raise LocalProtocolError(f"{method} top Via has no RFC 3261 branch: {branch!r}")
        key = f"{branch}|{method}"
        if key in self._clients:
            raise LocalProtocolError(f"client transaction {key} already exists")
        schedule = self._reliable if target.reliable else self._unreliable
        tx = ClientTransaction(key, request, target, schedule=schedule, out=self._out)
        self._clients[key] = tx
        self._index(tx)
        tx.start(now)
        return key

    def send_response(self, key: str, response: Response, now: float) -> None:
        """Send ``response`` through server transaction ``key``. Raises
        :class:`LocalProtocolError` for an unknown (e.g. already terminated) transaction and
        for a response the state forbids (a second final; 2xx retransmissions on an INVITE
        in Accepted are allowed)."""
        tx = self._servers.get(key)
        if tx is None:
            raise LocalProtocolError(f"no server transaction {key}")
        tx.send(response, now)
        if tx.state is State.ACCEPTED:
            self._index_ack(tx)
        self._sweep()

    def send_stateless(self, message: Request | Response, target: Peer) -> None:
        """Send outside any transaction (the ACK for a 2xx, stateless answers)."""
        self._out.transmits.append(Transmit(bytes(message), target))

    @staticmethod
    def response_target(request: Request, source: Peer) -> Peer:
        return response_target(request, source)

    def transport_error(self, peer: Peer, now: float) -> None:
        """The transport could not deliver to ``peer``: every transaction whose next hop it
        is fails (§17.1.4, §17.2.4). A peer without a connection id covers every connection
        to that address; one with an id covers that connection and unbound transactions."""
        txs = self._by_peer.get((peer.transport, peer.host, peer.port))
        if not txs:
            return
        connection = peer.connection
        for tx in list(txs):
            bound = tx.peer.connection
            if connection is None or bound is None or bound == connection:
                tx.handle(Input.TRANSPORT_ERROR, now)
        self._sweep()

    def terminate(self, key: str) -> None:
        """Forget transaction ``key`` now (the TU gives up on it, e.g. an INVITE whose CANCEL
        got no answer, §9.1). Terminating what is already gone is fine."""
        tx: Transaction | None = self._clients.get(key) or self._servers.get(key)
        if tx is not None:
            tx.abandon()
            self._sweep()

    # ---------------------------------------------------------------------- bookkeeping

    def _index(self, tx: Transaction) -> None:
        peer = tx.peer
        peer_key = (peer.transport, peer.host, peer.port)
        txs = self._by_peer.get(peer_key)
        if txs is None:
            self._by_peer[peer_key] = {tx}
        else:
            txs.add(tx)

    def _index_ack(self, tx: ServerTransaction) -> None:
        """Index an Accepted INVITE transaction by what its 2xx's ACK will carry (the last 2xx
        sent decides, e.g. a new To tag)."""
        assert tx.response is not None
        key = ack_key(tx.response)
        old = tx.ack_key
        if old == key:
            return
        if old is not None and self._acks.get(old) is tx:
            del self._acks[old]
        tx.ack_key = key
        self._acks[key] = tx

    def _sweep(self) -> None:
        dead = self._out.dead
        if not dead:
            return
        for tx in dead:
            table: dict[str, ClientTransaction] | dict[str, ServerTransaction]
            table = self._clients if isinstance(tx, ClientTransaction) else self._servers
            if table.get(tx.key) is tx:
                del table[tx.key]
            if isinstance(tx, ServerTransaction) and tx.ack_key is not None:
                if self._acks.get(tx.ack_key) is tx:
                    del self._acks[tx.ack_key]
                tx.ack_key = None
            peer = tx.peer
            peer_key = (peer.transport, peer.host, peer.port)
            txs = self._by_peer.get(peer_key)
            if txs is not None:
                txs.discard(tx)
                if not txs:
                    del self._by_peer[peer_key]
        dead.clear()


# ------------------------------------------------------------------- matching helpers


def _is_rfc3261(branch: str | None) -> bool:
    return branch is not None and branch.startswith(MAGIC_COOKIE) and branch != MAGIC_COOKIE


def _server_key(request: Request, via: Via, method: str, branch: str | None) -> str:
    """§17.2.3: branch, sent-by and method (ACK and CANCEL pass "INVITE" to find theirs).
    ``branch`` is the RFC 3261 branch, or ``None`` for the RFC 2543 rules."""
    if branch is not None:
        host = via.host.lower()
        return f"{branch}|{method}|{host if via.port is None else f'{host}:{via.port}'}"
    return _key_2543(request, via, method, request.to.tag or "")


def _key_2543(request: Request, via: Via, method: str, to_tag: str) -> str:
    """§17.2.3 for requests without the magic cookie: Request-URI, To tag, From tag, Call-ID,
    CSeq number (the method goes first) and the top Via as received."""
    return (
        f"{method}|{request.uri}|{to_tag}|{request.from_.tag or ''}|{request.call_id}"
        f"|{request.cseq.seq}|{via}"
    )


def derived_tag(key: str) -> str:
    """A To tag for answers the layer makes itself, stable for one transaction."""
    return f"{zlib.crc32(key.encode()):08x}"


# ------------------------------------------------------------ stamping and addressing


def stamp_via(via: Via, source: Peer) -> Via:
    """The top Via of a received request as §18.2.1 and RFC 3581 §4 want it: ``received`` when
    the sent-by host is not the source address (or rport is asked for), ``rport`` filled with
    the source port when it is present and empty. Returns ``via`` itself when nothing changes.
    """
    params = via.params
    if "rport" in params and not params.get("rport"):
        params = params.with_("rport", str(source.port))
    elif _same_host(via.host, source.host):
        return via
    return replace(via, params=params.with_("received", source.host))


def stamp_request(request: Request, source: Peer) -> Request:
    """``request`` with its top Via stamped (see :func:`stamp_via`)."""
    via = request.top_via
    stamped = stamp_via(via, source)
    return request if stamped is via else _with_top_via(request, stamped)


def response_target(request: Request, source: Peer) -> Peer:
    """Where responses to ``request`` received from ``source`` go (§18.2.2, RFC 3581 §4):
    back on the same connection for reliable transports; otherwise to ``received`` (or the
    sent-by host) and ``rport`` (or the sent-by port, or 5060)."""
    if source.reliable:
        return source
    return _response_peer(stamp_via(request.top_via, source), source)


def _response_peer(stamped: Via, source: Peer) -> Peer:
    if source.reliable:
        return source
    host = stamped.received or _bare_host(stamped.host)
    port = stamped.rport or stamped.port or DEFAULT_PORT
    if host == source.host and port == source.port and source.connection is None:
        return source  # the usual case: answer where it came from (an equal, immutable Peer)
    return Peer(source.transport, host, port)


def _bare_host(host: str) -> str:
    return host[1:-1] if host.startswith("[") else host


@lru_cache(maxsize=4096)
def _same_host(sent_by: str, address: str) -> bool:
    bare = _bare_host(sent_by)
    if bare == address:
        return True
    try:
        return ipaddress.ip_address(bare) == ipaddress.ip_address(address)
    except ValueError:
        return False  # a domain name in sent-by always gets received= (§18.2.1)


def _with_top_via(request: Request, via: Via) -> Request:
    """``request`` with the first Via value replaced (other lines and values kept in order)."""
    items = list(request.headers)
    for n, (name, value) in enumerate(items):
        if name == "Via":
            rest = h.split_list(value)[1:] if "," in value else ()
            items[n] = (name, ", ".join([str(via), *rest]))
            break
    # The names come from a parsed message or Headers: already canonical.
    headers = Headers._trusted(tuple(items))
    stamped = Request(
        headers, body=request.body, method=request.method, uri=request.uri, version=request.version
    )
    # Carry over what was already parsed instead of parsing it again: every cached view
    # depends on header lines that did not change, except the Via list, which we know.
    cache = stamped.__dict__
    for name, value in request.__dict__.items():
        if name not in cache:
            cache[name] = value
    cache["via"] = (via, *request.via[1:])
    return stamped
