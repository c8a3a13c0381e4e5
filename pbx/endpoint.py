"""A SIP endpoint: the asyncio glue between the transports and the sans-IO transaction layer.

The transports hand parsed messages in; the transaction layer decides; this class moves its
transmits to the transports, runs its one timer on the event loop, and hands TU events to
the transaction user (registrar, B2BUA, test agents). Its only SIP logic of its own is
§18.1.2 (responses whose top Via is not ours are dropped) and the UAC core's re-ACK of
§13.2.2.4: an ACK sent with :meth:`SipEndpoint.send_ack` is remembered for 64*T1 and sent
again for every retransmission of its 2xx, which the TU then does not hear of.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ssl import SSLContext
from typing import Protocol

from pbx.sip.dialog import new_branch, new_tag
from pbx.sip.errors import LocalProtocolError, RemoteProtocolError
from pbx.sip.events import (
    Event,
    Peer,
    RequestReceived,
    ResponseReceived,
    StrayResponse,
    TransactionTimeout,
    Transmit,
    TransportFailed,
)
from pbx.sip.message import Request, Response, make_response
from pbx.sip.timers import TimerConfig
from pbx.sip.transaction import AckKey, ack_key
from pbx.sip.transactions import TransactionLayer
from pbx.transport import Transport, TransportError, TransportManager, TransportOptions
from pbx.transport.tcp import TcpTransport
from pbx.transport.udp import UdpTransport

log = logging.getLogger(__name__)


class TransactionUser(Protocol):
    """What sits above the transaction layer: it gets every TU event of the endpoint."""

    def on_event(self, event: Event) -> None: ...


@dataclass(frozen=True, slots=True)
class Listen:
    """One listening socket: ``transport`` is "UDP", "TCP" or "TLS" (with ``ssl``)."""

    transport: str
    host: str
    port: int
    ssl: SSLContext | None = None


class SipEndpoint:
    """Transports + transaction layer + timer, driven by the running event loop."""

    def __init__(
        self,
        user: TransactionUser | None = None,
        *,
        timers: TimerConfig | None = None,
        options: TransportOptions | None = None,
        advertised_host: str | None = None,
    ) -> None:
        self.user = user
        self.layer = TransactionLayer(timers or TimerConfig())
        self.transports = TransportManager(self)
        self._options = options
        self._advertised = advertised_host
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._waiters: dict[str, tuple[asyncio.Future[Response], Request]] = {}
        self._provisional: dict[str, Callable[[Response], None]] = {}
        self._own_ports: set[int] = set()
        # ACKs for 2xx by ack_key, with when to forget them; in that order (each lives 64*T1).
        # OrderedDict, not dict: removing a dict's oldest key again and again leaves dead
        # slots that every next(iter()) walks (8 us at 16,000 entries); popitem is O(1).
        self._acks: OrderedDict[AckKey, tuple[Transmit, float]] = OrderedDict()

    # ------------------------------------------------------------------------- lifecycle

    async def start(self, listens: Iterable[Listen]) -> None:
        self._loop = asyncio.get_running_loop()
        for spec in listens:
            name = spec.transport.upper()
            transport: Transport
            if name == "UDP":
                transport = await UdpTransport.listen(self, spec.host, spec.port, self._options)
            else:
                transport = await TcpTransport.listen(
                    self, spec.host, spec.port, self._options, ssl=spec.ssl
                )
            self.adopt(transport)

    def adopt(self, transport: Transport) -> None:
        """Send (and receive, if it delivers to this endpoint) through ``transport``, one
        made elsewhere: a registrar worker's share of the core's UDP socket."""
        self._loop = self._loop or asyncio.get_running_loop()
        self.transports.add(transport)
        self._own_ports.add(transport.local_address[1])

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for future, _ in self._waiters.values():
            future.cancel()
        self._waiters.clear()
        self._acks.clear()
        await self.transports.close()

    def local(self, transport: str = "UDP") -> tuple[str, int]:
        """The (host, port) to advertise in Via and Contact for ``transport``."""
        host, port = self.transports.local_address(transport)
        if self._advertised:
            host = self._advertised
        return host, port

    def via(self, transport: str = "UDP") -> str:
        """A Via value for a new request sent over ``transport``, with a fresh branch."""
        host, port = self.local(transport)
        host = f"[{host}]" if ":" in host else host
        return f"SIP/2.0/{transport.upper()} {host}:{port};branch={new_branch()};rport"

    # -------------------------------------------------------------------------- TU calls

    def send_request(self, request: Request, target: Peer) -> str:
        key = self.layer.send_request(request, target, self._now())
        self._flush()
        return key

    async def request(
        self,
        request: Request,
        target: Peer,
        on_provisional: Callable[[Response], None] | None = None,
    ) -> Response:
        """Send ``request`` in a client transaction and wait for its final response.

        A timeout gives a local 408 and a transport failure a local 503 (§8.1.3.1), so the
        caller always gets a response to act on.
        """
        key = self.send_request(request, target)
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._waiters[key] = (future, request)
        if on_provisional is not None:
            self._provisional[key] = on_provisional
        try:
            return await future
        finally:
            self._waiters.pop(key, None)
            self._provisional.pop(key, None)

    def send_response(self, key: str, response: Response) -> None:
        if key not in self.layer:
            return  # the transaction ended meanwhile (e.g. transport error): nothing to send
        self.layer.send_response(key, response, self._now())
        self._flush()

    def send_stateless(self, message: Request | Response, target: Peer) -> None:
        self.layer.send_stateless(message, target)
        self._flush()

    def send_ack(self, ack: Request, target: Peer) -> None:
        """Send the ACK for a 2xx to an INVITE (§13.2.2.4) to ``target``.

        The ACK has no transaction: it is sent once, statelessly, and remembered for 64*T1 by
        Call-ID, CSeq number, From tag and To tag. Each retransmission of that 2xx arriving
        meanwhile (the UAS did not get the ACK) is answered with the same ACK again and not
        passed to the TU. A 2xx with another To tag (a fork) still goes to the TU.
        """
        if ack.method != "ACK":
            raise LocalProtocolError(f"send_ack sends ACK, not {ack.method}")
        now = self._now()
        self._expire_acks(now)
        key = ack_key(ack)
        transmit = Transmit(bytes(ack), target)
        self._acks.pop(key, None)  # a new ACK for the same 2xx replaces the old one, last
        self._acks[key] = (transmit, now + 64 * self.layer.timers.t1)
        self.transports.send(transmit)

    # ------------------------------------------------------------------ MessageSink (in)

    def on_message(self, message: Request | Response, source: Peer) -> None:
        if isinstance(message, Response) and not self._is_ours(message):
            return  # §18.1.2: a response whose top Via is not ours is discarded
        self.layer.receive(message, source, self._now())
        self._dispatch()

    def on_transport_error(self, peer: Peer, error: TransportError) -> None:
        log.info("transport error to %s: %s", peer, error)
        self.layer.transport_error(peer, self._now())
        self._dispatch()

    # ------------------------------------------------------------------------- internals

    def _now(self) -> float:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop.time()

    def _is_ours(self, response: Response) -> bool:
        vias = response.via
        return bool(vias) and (vias[0].port or 5060) in self._own_ports

    def _dispatch(self) -> None:
        for event in self.layer.events():
            key = getattr(event, "key", None)
            waiter = self._waiters.get(key) if key is not None else None
            if waiter is not None and not waiter[0].done():
                self._settle(waiter, event)
            elif (
                self._acks
                and isinstance(event, ResponseReceived | StrayResponse)
                and self._ack_again(event.response)
            ):
                pass  # a retransmitted 2xx, answered with its ACK again (§13.2.2.4)
            elif self.user is not None:
                try:
                    self.user.on_event(event)
                except RemoteProtocolError as exc:
                    self._answer_error(event, exc)
                except Exception:  # a TU bug must not take the endpoint down
                    log.exception("transaction user failed on %s", type(event).__name__)
        self._flush()

    def _answer_error(self, event: Event, exc: RemoteProtocolError) -> None:
        """The TU found the peer's request unacceptable: the error carries the answer."""
        if not isinstance(event, RequestReceived) or event.request.method == "ACK":
            return
        if exc.status is not None and event.key in self.layer:
            reason = "".join(c for c in exc.reason if " " <= c <= "~")[:80]
            response = make_response(event.request, exc.status, reason, to_tag=new_tag())
            self.layer.send_response(event.key, response, self._now())

    def _settle(self, waiter: tuple[asyncio.Future[Response], Request], event: Event) -> None:
        future, request = waiter
        if isinstance(event, ResponseReceived):
            if event.response.status >= 200:
                future.set_result(event.response)
            elif (callback := self._provisional.get(event.key)) is not None:
                callback(event.response)
        elif isinstance(event, TransactionTimeout | TransportFailed):
            status = 408 if isinstance(event, TransactionTimeout) else 503
            future.set_result(make_response(request, status))

    def _ack_again(self, response: Response) -> bool:
        """Resend the remembered ACK if ``response`` is a 2xx to an INVITE we ACKed."""
        if not 200 <= response.status < 300 or response.cseq.method != "INVITE":
            return False
        self._expire_acks(self._now())
        entry = self._acks.get(ack_key(response))
        if entry is None:
            return False
        self.transports.send(entry[0])
        return True

    def _expire_acks(self, now: float) -> None:
        acks = self._acks
        while acks:
            _, (_, expires) = next(iter(acks.items()))
            if expires > now:
                return
            acks.popitem(last=False)

    def _flush(self) -> None:
        for transmit in self.layer.transmits():
            self.transports.send(transmit)
        deadline = self.layer.next_timer()
        if deadline is None or deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = self._loop or asyncio.get_running_loop()
        self._timer_at = deadline
        self._timer = loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        now = self._now()
        self.layer.handle_timer(now)
        self._expire_acks(now)
        self._dispatch()
