"""Extension-to-extension calls through a back-to-back user agent (B2BUA).

Each call has two legs: A, the caller's INVITE answered by the box as UAS, and B, the box's
INVITE to the callee as UAC (one per registered contact of the callee: parallel forking,
first 2xx wins, the others are cancelled). Media is anchored on the box: each leg's SDP is
rewritten to the box's address and a port of the call's :class:`MediaSession`, and the relay
moves RTP between the legs. In-dialog requests (BYE, re-INVITE, UPDATE, INFO) from one leg
are re-issued on the other; responses come back the same way. Every call ends in one
:class:`CallRecord`.

The SIP state machines (transactions, dialogs, offer/answer) are sans-IO; this module is the
call-control glue around them, written with asyncio tasks because a call waits on several
things at once (forks, ring timeout, CANCEL).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pbx.media.ports import PortsExhausted
from pbx.media.relay import Leg, LegCounters, MediaRelay, MediaSession
from pbx.sdp.errors import SdpError
from pbx.sdp.offer_answer import SdpLeg, media_targets, negotiated_codec
from pbx.sdp.session import SessionDescription, parse_sdp
from pbx.sip.dialog import Dialog, DialogState, DialogTable, make_cancel, new_call_id, new_tag
from pbx.sip.errors import RemoteProtocolError
from pbx.sip.events import (
    AckReceived,
    AckTimeout,
    CancelReceived,
    Event,
    Peer,
    RequestReceived,
)
from pbx.sip.headers import parse_address
from pbx.sip.message import Request, Response, build_request, make_response
from pbx.sip.uri import SipUri
from pbx.store import (
    Binding,
    CallRecord,
    CdrSink,
    Direction,
    Directory,
    Disposition,
    HangupSide,
    MediaStats,
)

log = logging.getLogger(__name__)

SDP_TYPE = "application/sdp"
# In-dialog methods passed from one leg to the other as they are.
RELAYED_METHODS = frozenset({"INFO", "UPDATE", "INVITE", "MESSAGE", "NOTIFY"})


@dataclass(frozen=True, slots=True)
class CallSettings:
    domain: str = "edgepbx.local"
    media_host: str = "127.0.0.1"
    max_calls: int = 1000  # calls on the box at once; more get 503
    user_agent: str = "edgepbx"


class CallEndpoint(Protocol):
    """What the call layer needs from the SIP endpoint (pbx.endpoint.SipEndpoint)."""

    def send_response(self, key: str, response: Response) -> None: ...
    async def request(
        self,
        request: Request,
        target: Peer,
        on_provisional: Callable[[Response], None] | None = None,
    ) -> Response: ...
    def send_request(self, request: Request, target: Peer) -> str: ...
    def send_ack(self, ack: Request, target: Peer) -> None: ...
    def via(self, transport: str = "UDP") -> str: ...
    def local(self, transport: str = "UDP") -> tuple[str, int]: ...


@dataclass(eq=False)
class Call:
    """One call: leg A (the caller, box is UAS) and leg B (the callee, box is UAC)."""

    id: str
    a_key: str
    a_request: Request
    a_source: Peer
    a_tag: str
    caller: str
    caller_name: str
    dialed: str
    start: float
    media: MediaSession | None = None
    sdp_a: SdpLeg | None = None
    sdp_b: SdpLeg | None = None
    offer_a: SessionDescription | None = None
    a_dialog: Dialog | None = None
    b_dialog: Dialog | None = None
    b_peer: Peer | None = None
    callee: str | None = None
    answer_time: float | None = None
    codec: str | None = None
    cancelled: bool = False
    ended: bool = False
    ringing_sent: bool = False
    early_media: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    # The media description each side's phone last sent ("A"/"B"), for re-offers (transfer).
    phone_sdp: dict[str, SessionDescription] = field(default_factory=dict)
    transferring: str = ""  # the side being replaced by a blind transfer (REFER)
    # Late offer (RFC 3261 §13.2.1, an INVITE without SDP): B's offer from its 200, held with
    # the ACK owed to B until A's ACK brings the answer.
    late_offer: SessionDescription | None = None
    late_invite_seq: int = 0


class CallManager:
    """Handles INVITEs for extensions, and everything inside the dialogs they create."""

    def __init__(
        self,
        endpoint: CallEndpoint,
        directory: Directory,
        lookup: Callable[[str, float], list[Binding]],
        relay: MediaRelay,
        cdr: CdrSink,
        *,
        settings: CallSettings | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.endpoint = endpoint
        self.directory = directory
        self.lookup = lookup
        self.relay = relay
        self.cdr = cdr
        self.settings = settings or CallSettings()
        self.clock = clock
        self.dialogs = DialogTable()
        self.calls: dict[str, Call] = {}
        # number -> calls it is in (as caller, dialed or callee): the call limits are checked
        # on every INVITE, and scanning every call was 7 % of the box when calls piled up.
        self._in_calls: Counter[str] = Counter()
        self._by_key: dict[str, Call] = {}  # leg A's INVITE server transaction -> call
        self._by_dialog: dict[object, tuple[Call, str]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # The recorder's hooks (pbx.recording.service.CallRecorder): a call was answered
        # (its media is up); a call record is about to be written (add the recording).
        self.on_answered: Callable[[Call], None] | None = None
        self.on_record: Callable[[CallRecord], CallRecord] | None = None

    # ------------------------------------------------------------------------- entry

    def active_calls(self, number: str) -> int:
        return self._in_calls[number]

    def _count(self, call: Call, step: int) -> None:
        """Add (1) or remove (-1) ``call`` in the per-number counts."""
        for number in {call.caller, call.dialed, call.callee} - {None}:
            assert number is not None
            left = self._in_calls[number] + step
            if left > 0:
                self._in_calls[number] = left
            else:
                del self._in_calls[number]

    def on_invite(self, key: str, request: Request, source: Peer, caller: str) -> None:
        """A new INVITE from authenticated extension ``caller``."""
        tag = new_tag()
        now = self.clock()

        def refuse(status: int, reason: str | None = None) -> None:
            response = _failure(request, status, reason, tag)
            self.endpoint.send_response(key, response)
            self._record_refusal(request, caller, response, now)

        if request.max_forwards is not None and request.max_forwards <= 0:
            return refuse(483)
        if len(self.calls) >= self.settings.max_calls:
            return refuse(503, "Call limit of the box reached")
        me = self.directory.get(caller)
        if me is not None and self.active_calls(caller) >= me.call_limit:
            return refuse(486, "Call limit of the caller reached")
        dialed = request.sip_uri.user_unescaped or ""
        callee = self.directory.get(dialed)
        if callee is None or not callee.enabled:
            return refuse(404, "No such extension")
        if self.active_calls(dialed) >= callee.call_limit:
            return refuse(486)
        bindings = self.lookup(dialed, now)
        if not bindings:
            return refuse(480, "Extension is offline")
        call = Call(
            id=str(uuid.uuid4()),
            a_key=key,
            a_request=request,
            a_source=source,
            a_tag=tag,
            caller=caller,
            caller_name=(me.display_name if me else "") or request.from_.display_name or "",
            dialed=dialed,
            start=now,
        )
        self.calls[call.id] = call
        self._count(call, 1)
        self._by_key[key] = call
        self._spawn(self._ring(call, bindings, callee.ring_timeout))

    def on_event(self, event: Event) -> bool:
        """Events the call layer owns; returns whether it took the event."""
        if isinstance(event, CancelReceived):
            call = self._by_key.get(event.invite_key)
            if call is None:
                return False
            call.cancelled = True
            call.wake.set()
            return True
        if isinstance(event, AckReceived):
            dialog = self.dialogs.match(event.request)
            if dialog is None:
                return False
            entry = self._by_dialog.get(dialog.id)
            if entry is not None and entry[1] == "A" and entry[0].late_offer is not None:
                self._late_answer(entry[0], event.request)
            return True
        if isinstance(event, AckTimeout):
            call = self._by_key.get(event.key)
            if call is not None and not call.ended:
                self._ack_b(call)  # a late offer's ACK, owed to B, goes out before the BYE
                self._spawn(self._hangup(call, HangupSide.SYSTEM, "no ACK from the caller"))
            return call is not None
        if isinstance(event, RequestReceived) and event.request.to.tag:
            dialog = self.dialogs.match(event.request)
            if dialog is None or dialog.id not in self._by_dialog:
                return False
            call, side = self._by_dialog[dialog.id]
            dialog.receive_request(event.request)  # CSeq rules; raises with the answer
            self._spawn(self._in_dialog(call, side, event.key, event.request))
            return True
        return False

    # --------------------------------------------------------------------- ringing

    async def _ring(self, call: Call, bindings: list[Binding], ring_timeout: float) -> None:
        request = call.a_request
        try:
            call.media = await self.relay.create_session(call.id, on_dead=self._media_dead)
        except PortsExhausted:
            return self._fail(call, 503, "No media ports left", Disposition.CONGESTION)
        host = self.settings.media_host
        call.sdp_a = SdpLeg(host, [call.media.a.local_address[1]])
        call.sdp_b = SdpLeg(host, [call.media.b.local_address[1]])
        offer_b: SessionDescription | None = None
        try:
            if request.body:
                call.offer_a = parse_sdp(request.body)
                call.phone_sdp["A"] = call.offer_a
                offer_b = call.sdp_b.offer_from(call.offer_a)
                self._set_remote(call.media.a, call.offer_a)
        except SdpError as exc:
            return self._fail(call, exc.status or 488, exc.reason, Disposition.FAILED)

        call_id = new_call_id(host)
        from_tag = new_tag()
        forks: dict[asyncio.Future[Any], tuple[Request, Peer]] = {}
        heard: dict[asyncio.Future[Any], asyncio.Event] = {}  # a fork sent a provisional
        for binding in bindings:
            invite, peer = self._fork_invite(call, binding, call_id, from_tag, offer_b)
            provisional = asyncio.Event()
            ring = self._provisional_handler(call, provisional)
            fork = asyncio.ensure_future(self.endpoint.request(invite, peer, ring))
            forks[fork], heard[fork] = (invite, peer), provisional

        loop = asyncio.get_running_loop()
        deadline = loop.time() + ring_timeout
        finals: list[Response] = []
        winner: tuple[Response, Request, Peer] | None = None
        pending = set(forks)
        waker: asyncio.Future[Any] = asyncio.ensure_future(call.wake.wait())
        try:
            while pending and winner is None and not call.cancelled:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                done, _ = await asyncio.wait(
                    pending | {waker}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done - {waker}:
                    pending.discard(task)
                    response: Response = task.result()
                    if response.success and winner is None:
                        winner = (response, *forks[task])
                    elif response.success:
                        self._spawn(self._reject_late_answer(response, *forks[task]))
                    else:
                        finals.append(response)
        finally:
            waker.cancel()
        # Whatever is still ringing loses: CANCEL it (§9.1); late 2xx get ACK + BYE.
        for task in pending:
            self._spawn(self._cancel_fork(task, *forks[task], heard[task]))
        if winner is not None and not call.cancelled:
            await self._answered(call, *winner)
        elif call.cancelled:
            self._fail(call, 487, None, Disposition.CANCELLED, side=HangupSide.CALLER)
        elif not finals:
            self._fail(call, 480, "No answer", Disposition.NO_ANSWER, side=HangupSide.SYSTEM)
        else:
            status, reason, disposition = _best_failure(finals)
            self._fail(call, status, reason, disposition, side=HangupSide.CALLEE)

    def _fork_invite(
        self,
        call: Call,
        binding: Binding,
        call_id: str,
        from_tag: str,
        offer: SessionDescription | None,
        *,
        to: str | None = None,
    ) -> tuple[Request, Peer]:
        peer = Peer(binding.source_transport, binding.source_host, binding.source_port)
        callee = to or call.dialed
        host, port = self.endpoint.local(peer.transport)
        domain = self.settings.domain
        name = call.caller_name.replace('"', "")
        headers = [
            ("Via", self.endpoint.via(peer.transport)),
            ("Max-Forwards", str(max((call.a_request.max_forwards or 70) - 1, 1))),
            ("From", f'"{name}" <sip:{call.caller}@{domain}>;tag={from_tag}'),
            ("To", f"<sip:{callee}@{domain}>"),
            ("Call-ID", call_id),
            ("CSeq", "1 INVITE"),
            (
                "Contact",
                f"<sip:{callee}@{_host(host)}:{port};transport={peer.transport.lower()}>",
            ),
            ("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO"),
            ("User-Agent", self.settings.user_agent),
        ]
        body = b""
        if offer is not None:
            headers.append(("Content-Type", SDP_TYPE))
            body = bytes(offer)
        uri = _parse_contact_uri(binding.contact)
        return build_request("INVITE", uri, headers, body), peer

    def _provisional_handler(self, call: Call, heard: asyncio.Event) -> Callable[[Response], None]:
        def on_provisional(response: Response) -> None:
            heard.set()
            self._provisional(call, response)

        return on_provisional

    def _provisional(self, call: Call, response: Response) -> None:
        """A 18x from a fork: ring the caller once; pass early media from the first fork
        that brings SDP (183 Session Progress)."""
        if call.ended or call.cancelled or response.status == 100:
            return
        if response.body and not call.early_media and call.offer_a is not None:
            try:
                sdp = parse_sdp(response.body)
                assert call.sdp_a is not None and call.media is not None
                answer = call.sdp_a.answer_from(sdp, call.offer_a)
                self._set_remote(call.media.b, sdp)
            except SdpError:
                return
            call.early_media = True
            self._reply_a(call, 183, body=bytes(answer))
        elif not call.ringing_sent:
            self._reply_a(call, 180)
        call.ringing_sent = True

    async def _answered(self, call: Call, response: Response, invite: Request, peer: Peer) -> None:
        b_dialog = self.dialogs.receive_response(invite, response)
        assert b_dialog is not None and call.media is not None and call.sdp_a is not None
        ack = b_dialog.create_ack(invite.cseq.seq, via=self.endpoint.via(peer.transport))
        answer: bytes = b""
        try:
            if call.offer_a is not None:
                sdp_b = parse_sdp(response.body)
                call.phone_sdp["B"] = sdp_b
                answer = bytes(call.sdp_a.answer_from(sdp_b, call.offer_a))
                self._set_remote(call.media.b, sdp_b)
                codec = negotiated_codec(sdp_b)
                call.codec = codec.name if codec else None
            elif response.body:
                # Late offer: B offers in its 200; A gets it rewritten to the box's leg-A
                # port, and A's answer comes in its ACK (see _late_answer).
                offer_b = parse_sdp(response.body)
                answer = bytes(call.sdp_a.offer_from(offer_b))
                self._set_remote(call.media.b, offer_b)
                call.phone_sdp["B"] = offer_b
                call.late_offer, call.late_invite_seq = offer_b, invite.cseq.seq
        except SdpError as exc:
            # The callee answered with SDP we cannot use: end its leg, fail the caller.
            self.endpoint.send_ack(ack, peer)
            bye = b_dialog.create_request("BYE", via=self.endpoint.via(peer.transport))
            self._spawn(self._send_bye(bye, peer))
            self.dialogs.remove(b_dialog.id)
            return self._fail(call, exc.status or 488, exc.reason, Disposition.FAILED)
        call.b_dialog, call.b_peer = b_dialog, peer
        if call.late_offer is None:
            self.endpoint.send_ack(ack, peer)
        call.callee = call.dialed
        call.answer_time = self.clock()
        ok = self._reply_a(call, 200, body=answer)
        call.a_dialog = self.dialogs.add(Dialog.from_uas(call.a_request, ok))
        self._by_dialog[call.a_dialog.id] = (call, "A")
        self._by_dialog[b_dialog.id] = (call, "B")
        if self.on_answered is not None:
            try:
                self.on_answered(call)
            except Exception:  # a recorder failure never touches the call
                log.exception("answered-call hook failed for %s", call.id)

    def _late_answer(self, call: Call, ack: Request) -> None:
        """A's ACK to a late-offer 200: its SDP answers the offer the box made from B's; B
        gets the answer rewritten to the box's leg-B port in the ACK it is owed."""
        offer_b = call.late_offer
        assert offer_b is not None and call.sdp_b is not None and call.media is not None
        try:
            if not ack.body:
                raise SdpError("the caller's ACK carries no answer to the offer")
            answer_a = parse_sdp(ack.body)
            answer_b = call.sdp_b.answer_from(answer_a, offer_b)
        except SdpError as exc:
            # §13.3.1.4: the session cannot go on without a usable answer: end it.
            log.info("late offer: no usable answer from the caller: %s", exc.reason)
            self._ack_b(call)
            self._spawn(self._hangup(call, HangupSide.SYSTEM, f"no usable answer: {exc.reason}"))
            return
        self._set_remote(call.media.a, answer_a)
        call.phone_sdp["A"] = answer_a
        codec = negotiated_codec(answer_a)
        call.codec = codec.name if codec else None
        self._ack_b(call, bytes(answer_b))

    def _ack_b(self, call: Call, answer: bytes = b"") -> None:
        """Send the ACK held back for B's late-offer 200 (once), with ``answer`` if any."""
        if call.late_offer is None or call.b_dialog is None or call.b_peer is None:
            return
        call.late_offer = None
        ack = call.b_dialog.create_ack(
            call.late_invite_seq,
            via=self.endpoint.via(call.b_peer.transport),
            body=answer,
            content_type=SDP_TYPE if answer else None,
        )
        self.endpoint.send_ack(ack, call.b_peer)

    def _reply_a(self, call: Call, status: int, *, body: bytes = b"") -> Response:
        transport = call.a_source.transport
        host, port = self.endpoint.local(transport)
        extra = [
            ("Contact", f"<sip:{call.dialed}@{_host(host)}:{port};transport={transport.lower()}>"),
            ("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO"),
        ]
        if body:
            extra.append(("Content-Type", SDP_TYPE))
        response = make_response(call.a_request, status, to_tag=call.a_tag, extra=extra, body=body)
        self.endpoint.send_response(call.a_key, response)
        return response

    def _fail(
        self,
        call: Call,
        status: int,
        reason: str | None,
        disposition: Disposition,
        *,
        side: HangupSide = HangupSide.SYSTEM,
    ) -> None:
        response = _failure(call.a_request, status, reason, call.a_tag)
        self.endpoint.send_response(call.a_key, response)
        self._finish(call, disposition, side, reason or response.reason, status)

    async def _cancel_fork(
        self, task: asyncio.Future[Response], invite: Request, peer: Peer, heard: asyncio.Event
    ) -> None:
        """CANCEL a fork that lost. §9.1: not before it has sent a provisional response
        (until then the INVITE may not even have arrived), so wait for one or for its final."""
        if not heard.is_set():
            waiter: asyncio.Future[Any] = asyncio.ensure_future(heard.wait())
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
        if not task.done():
            self.endpoint.send_request(make_cancel(invite), peer)
        await self._after_cancel(task, invite, peer)

    async def _after_cancel(
        self, task: asyncio.Future[Response], invite: Request, peer: Peer
    ) -> None:
        response = await task
        if response.success:
            await self._reject_late_answer(response, invite, peer)

    async def _reject_late_answer(self, response: Response, invite: Request, peer: Peer) -> None:
        """A fork answered after another won (or after CANCEL): ACK it and hang it up."""
        dialog = self.dialogs.receive_response(invite, response)
        if dialog is None:
            return
        via = self.endpoint.via(peer.transport)
        self.endpoint.send_ack(dialog.create_ack(invite.cseq.seq, via=via), peer)
        await self._send_bye(
            dialog.create_request("BYE", via=self.endpoint.via(peer.transport)), peer
        )
        self.dialogs.remove(dialog.id)

    # ------------------------------------------------------------------- in dialog

    def _other(self, call: Call, side: str) -> tuple[Dialog, Peer, SdpLeg] | None:
        if side == "A":
            if call.b_dialog is None or call.b_peer is None or call.sdp_b is None:
                return None
            return call.b_dialog, call.b_peer, call.sdp_b
        if call.a_dialog is None or call.sdp_a is None:
            return None
        return call.a_dialog, call.a_source, call.sdp_a

    async def _in_dialog(self, call: Call, side: str, key: str, request: Request) -> None:
        method = request.method
        mine = call.a_dialog if side == "A" else call.b_dialog
        assert mine is not None
        if method == "BYE":
            response = make_response(request, 200)
            mine.response_sent(request, response)
            self.endpoint.send_response(key, response)
            if call.transferring == side:
                return  # the transferor leaves; the transferee stays for the new party
            hung_by = HangupSide.CALLER if side == "A" else HangupSide.CALLEE
            await self._hangup(call, hung_by, "normal clearing", skip=side)
            return
        if method == "REFER":
            await self._transfer(call, side, key, request)
            return
        other = self._other(call, side)
        if other is None or method not in RELAYED_METHODS:
            self.endpoint.send_response(key, make_response(request, 501 if other else 481))
            return
        dialog, peer, sdp_out = other
        my_sdp = call.sdp_a if side == "A" else call.sdp_b
        assert my_sdp is not None and call.media is not None
        offer: SessionDescription | None = None
        body, ctype = request.body, request.content_type
        try:
            if body and ctype == SDP_TYPE and method in ("INVITE", "UPDATE"):
                offer = parse_sdp(body)
                body = bytes(sdp_out.offer_from(offer))
        except SdpError as exc:
            self.endpoint.send_response(key, make_response(request, exc.status or 488, exc.reason))
            return
        out = dialog.create_request(
            method,
            via=self.endpoint.via(peer.transport),
            body=body,
            content_type=ctype if body else None,
        )
        response = await self.endpoint.request(out, peer)
        dialog.receive_response(out, response)
        if method == "INVITE" and response.success:
            self.endpoint.send_ack(
                dialog.create_ack(out.cseq.seq, via=self.endpoint.via(peer.transport)), peer
            )
        answer = b""
        if offer is not None and response.success and response.body:
            try:
                remote = parse_sdp(response.body)
                answer = bytes(my_sdp.answer_from(remote, offer))
                far_leg = call.media.b if side == "A" else call.media.a
                near_leg = call.media.a if side == "A" else call.media.b
                self._set_remote(far_leg, remote)
                self._set_remote(near_leg, offer)
                call.phone_sdp[side] = offer
                call.phone_sdp["B" if side == "A" else "A"] = remote
            except SdpError as exc:
                self.endpoint.send_response(key, make_response(request, 488, exc.reason))
                return
        extra = [("Content-Type", SDP_TYPE)] if answer else []
        reply = make_response(request, response.status, response.reason, extra=extra, body=answer)
        mine.response_sent(request, reply)
        self.endpoint.send_response(key, reply)

    # -------------------------------------------------------------------- transfer

    async def _transfer(self, call: Call, side: str, key: str, request: Request) -> None:
        """Blind transfer (RFC 3515): the phone on ``side`` asks the box to connect the other
        party to the Refer-To target. The box calls the target on the same media leg, reports
        progress to the transferor with NOTIFY (message/sipfrag), and replaces the
        transferor's dialog with the target's once it answers."""
        mine = call.a_dialog if side == "A" else call.b_dialog
        my_peer = call.a_source if side == "A" else call.b_peer
        other_side = "B" if side == "A" else "A"
        try:
            target_uri = parse_address(request.headers.get("Refer-To") or "", what="Refer-To")
            number = target_uri.sip_uri.user_unescaped or ""
        except RemoteProtocolError:
            self.endpoint.send_response(key, make_response(request, 400, "Bad Refer-To"))
            return
        target = self.directory.get(number)
        transferee_sdp = call.phone_sdp.get(other_side)
        media_leg = None if call.media is None else call.media.a if side == "A" else call.media.b
        sdp_leg = call.sdp_a if side == "A" else call.sdp_b
        if target is None or not target.enabled:
            self.endpoint.send_response(key, make_response(request, 404, "No such extension"))
            return
        if mine is None or my_peer is None or transferee_sdp is None or media_leg is None:
            self.endpoint.send_response(key, make_response(request, 488, "Nothing to transfer"))
            return
        assert sdp_leg is not None
        accepted = make_response(request, 202)
        mine.response_sent(request, accepted)
        self.endpoint.send_response(key, accepted)
        call.transferring = side
        await self._notify(mine, my_peer, "SIP/2.0 100 Trying", final=False)
        status, reason = 480, "Temporarily Unavailable"
        bindings = self.lookup(number, self.clock())
        if bindings:
            invite, peer = self._fork_invite(
                call,
                bindings[0],
                new_call_id(self.settings.media_host),
                new_tag(),
                sdp_leg.offer_from(transferee_sdp),
                to=number,
            )
            try:
                final = await asyncio.wait_for(
                    self.endpoint.request(invite, peer), target.ring_timeout
                )
            except TimeoutError:
                self.endpoint.send_request(make_cancel(invite), peer)
                final = make_response(invite, 480, "No answer")
            status, reason = final.status, final.reason
            if final.success and not call.ended:
                await self._transferred(call, side, invite, peer, final)
        if status >= 300:
            call.transferring = ""
        await self._notify(mine, my_peer, f"SIP/2.0 {status} {reason}", final=True)
        if status < 300 and mine.state is not DialogState.TERMINATED:
            bye = mine.create_request("BYE", via=self.endpoint.via(my_peer.transport))
            await self._send_bye(bye, my_peer)

    async def _transferred(
        self, call: Call, side: str, invite: Request, peer: Peer, final: Response
    ) -> None:
        dialog = self.dialogs.receive_response(invite, final)
        assert dialog is not None and call.media is not None
        self.endpoint.send_ack(
            dialog.create_ack(invite.cseq.seq, via=self.endpoint.via(peer.transport)), peer
        )
        try:
            answer = parse_sdp(final.body)
            self._set_remote(call.media.a if side == "A" else call.media.b, answer)
            call.phone_sdp[side] = answer
        except SdpError as exc:
            log.info("transfer target answered unusable SDP: %s", exc.reason)
        old = call.a_dialog if side == "A" else call.b_dialog
        if old is not None:
            self._by_dialog.pop(old.id, None)
        if side == "A":
            call.a_dialog, call.a_source = dialog, peer
        else:
            call.b_dialog, call.b_peer = dialog, peer
            self._count(call, -1)
            call.callee = invite.sip_uri.user
            self._count(call, 1)
        self._by_dialog[dialog.id] = (call, side)

    async def _notify(self, dialog: Dialog, peer: Peer, sipfrag: str, *, final: bool) -> None:
        """Report transfer progress to the transferor (RFC 3515 §2.4.5)."""
        if dialog.state is DialogState.TERMINATED:
            return
        state = "terminated;reason=noresource" if final else "active;expires=60"
        notify = dialog.create_request(
            "NOTIFY",
            via=self.endpoint.via(peer.transport),
            headers=[("Event", "refer"), ("Subscription-State", state)],
            body=sipfrag.encode(),
            content_type="message/sipfrag;version=2.0",
        )
        response = await self.endpoint.request(notify, peer)
        dialog.receive_response(notify, response)

    # ---------------------------------------------------------------------- ending

    async def _hangup(self, call: Call, side: HangupSide, cause: str, *, skip: str = "") -> None:
        """End an answered call: BYE to every leg except ``skip`` (the one that sent BYE)."""
        if call.ended:
            return
        self._ack_b(call)  # B's 200 is acknowledged before its BYE (§15)
        byes = []
        if skip != "A" and call.a_dialog is not None:
            bye = call.a_dialog.create_request(
                "BYE", via=self.endpoint.via(call.a_source.transport)
            )
            byes.append(self._send_bye(bye, call.a_source))
        if skip != "B" and call.b_dialog is not None and call.b_peer is not None:
            bye = call.b_dialog.create_request("BYE", via=self.endpoint.via(call.b_peer.transport))
            byes.append(self._send_bye(bye, call.b_peer))
        self._finish(call, Disposition.ANSWERED, side, cause, None)
        await asyncio.gather(*byes)

    async def _send_bye(self, bye: Request, peer: Peer) -> None:
        try:
            await self.endpoint.request(bye, peer)
        except RemoteProtocolError as exc:
            log.info("BYE to %s failed: %s", peer, exc.reason)

    def _media_dead(self, session: MediaSession) -> None:
        call = self.calls.get(session.label)
        if call is not None and call.answer_time is not None and not call.ended:
            self._spawn(self._hangup(call, HangupSide.SYSTEM, "media timeout"))

    def _finish(
        self,
        call: Call,
        disposition: Disposition,
        side: HangupSide,
        cause: str,
        code: int | None,
    ) -> None:
        if call.ended:
            return
        call.ended = True
        end = self.clock()
        from_caller = from_callee = MediaStats()
        if call.media is not None:
            counters = call.media.counters()
            from_caller, from_callee = _media_stats(counters.a), _media_stats(counters.b)
            self._spawn(call.media.close())
        for dialog in (call.a_dialog, call.b_dialog):
            if dialog is not None:
                self._by_dialog.pop(dialog.id, None)
                self.dialogs.remove(dialog.id)
        if self.calls.pop(call.id, None) is not None:
            self._count(call, -1)
        self._by_key.pop(call.a_key, None)
        answered = disposition is Disposition.ANSWERED
        record = CallRecord(
            call_id=call.id,
            sip_call_id=call.a_request.call_id,
            caller_number=call.caller,
            caller_name=call.caller_name,
            dialed=call.dialed,
            callee_number=call.callee,
            direction=Direction.INTERNAL,
            start_time=call.start,
            answer_time=call.answer_time if answered else None,
            end_time=max(end, call.start),
            disposition=disposition,
            hangup_side=side,
            hangup_cause=cause,
            sip_code=code,
            codec=call.codec,
            media_from_caller=from_caller,
            media_from_callee=from_callee,
        )
        self._write_record(record)

    # --------------------------------------------------------------------- helpers

    def _record_refusal(
        self, request: Request, caller: str, response: Response, now: float
    ) -> None:
        """A call refused before it rang anyone still gets its call record."""
        disposition = {486: Disposition.BUSY, 503: Disposition.CONGESTION}.get(
            response.status, Disposition.FAILED
        )
        record = CallRecord(
            call_id=str(uuid.uuid4()),
            sip_call_id=request.call_id,
            caller_number=caller,
            dialed=request.sip_uri.user_unescaped or "",
            direction=Direction.INTERNAL,
            start_time=now,
            end_time=now,
            disposition=disposition,
            hangup_side=HangupSide.SYSTEM,
            hangup_cause=response.reason,
            sip_code=response.status,
        )
        self._write_record(record)

    def _write_record(self, record: CallRecord) -> None:
        if self.on_record is not None:
            try:
                record = self.on_record(record)
            except Exception:
                log.exception("call-record hook failed for %s", record.call_id)
        try:
            self.cdr.write(record)
        except Exception:  # the call is over either way; a lost record is logged loudly
            log.exception("call record %s could not be written", record.call_id)

    def _set_remote(self, leg: Leg, sdp: SessionDescription) -> None:
        targets = [t for t in media_targets(sdp) if t.kind == "audio" and t.active]
        if not targets:
            leg.set_remote("0.0.0.0" if ":" not in leg.local_address[0] else "::", 0)
            return
        t = targets[0]
        clock_rate = next(
            (c.clock_rate for c in t.codecs if c.name.lower() != "telephone-event"), 8000
        )
        leg.set_remote(
            t.address,
            t.rtp_port,
            t.rtcp_port,
            t.rtcp_mux,
            direction=t.direction.value,
            dtmf_payload_type=t.telephone_event,
            clock_rate=clock_rate,
        )

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[call-overload]
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("call task failed", exc_info=task.exception())

    async def hangup(self, call_id: str) -> bool:
        """End a call on an administrator's request: BYE to both phones once answered,
        CANCEL of the ringing forks before. False if no such call is in progress."""
        call = self.calls.get(call_id)
        if call is None or call.ended:
            return False
        if call.answer_time is None:
            call.cancelled = True
            call.wake.set()
        else:
            await self._hangup(call, HangupSide.SYSTEM, "hung up by an administrator")
        return True

    async def close(self) -> None:
        for call in list(self.calls.values()):
            await self._hangup(call, HangupSide.SYSTEM, "shutdown")
        for task in list(self._tasks):
            task.cancel()


def _failure(request: Request, status: int, reason: str | None, tag: str) -> Response:
    """A final failure for the caller, its cause also in a Reason header (RFC 3326) so phones
    can show why the call failed."""
    response = make_response(request, status, reason, to_tag=tag)
    text = response.reason.replace('"', "'")
    return response.with_added_header("Reason", f'SIP;cause={status};text="{text}"')


def _best_failure(finals: list[Response]) -> tuple[int, str, Disposition]:
    """The answer for the caller when every fork failed (after §16.7 step 6): busy wins,
    then a 6xx, then the lowest 4xx/5xx."""
    statuses = sorted(r.status for r in finals)
    if any(s in (486, 600) for s in statuses):
        return 486, "Busy Here", Disposition.BUSY
    six = [s for s in statuses if s >= 600]
    status = six[0] if six else statuses[0]
    if status in (408, 480, 487):
        return 480, "No answer", Disposition.NO_ANSWER
    return status, next(r.reason for r in finals if r.status == status), Disposition.FAILED


def _media_stats(leg: LegCounters) -> MediaStats:
    """What the box received from one phone, for the call record."""
    return MediaStats(
        packets=leg.received_packets,
        bytes=leg.received_bytes,
        lost=max(leg.stats.lost, 0),
        jitter_ms=max(leg.stats.jitter_ms, 0.0),
    )


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _parse_contact_uri(contact: str) -> SipUri:
    uri = parse_address(contact, what="Contact").uri
    if not isinstance(uri, SipUri):
        raise RemoteProtocolError(f"contact {contact} is not a SIP URI", 480)
    return uri
