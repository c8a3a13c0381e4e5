"""A small user agent built on the stack, the peer SIPp talks to in the interop tests.

As UAS it answers OPTIONS, REGISTER (digest auth, SHA-256 and MD5), INVITE (100 from the
transaction layer, 180, then 200 with SDP: an answer, or an offer when the INVITE had none),
ACK (its bodies kept: a late offer's answer), BYE and CANCEL; a 200 never ACKed
(AckTimeout) ends its dialog with BYE. As UAC it calls out (INVITE, ACK for the 2xx through
``send_ack``, which re-ACKs its retransmissions, BYE). It counts what happened so tests can
assert on outcomes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from asyncio import FIRST_COMPLETED
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field

from pbx.endpoint import Listen, SipEndpoint
from pbx.sip import auth
from pbx.sip.dialog import Dialog, DialogState, DialogTable, make_cancel, new_call_id, new_tag
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
)
from pbx.sip.message import Request, Response, build_request, make_response
from pbx.sip.timers import TimerConfig
from pbx.sip.uas import Capabilities, check_request, options_response
from pbx.sip.uri import SipUri
from pbx.store import Binding

SDP = (
    b"v=0\r\no=agent 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
)


@dataclass
class AgentConfig:
    users: dict[str, str] = field(default_factory=dict)  # REGISTER needs auth when set
    realm: str = "edgepbx.test"
    # SIPp 3.6.1 answers only the first challenge and knows MD5 only (RFC 8760 puts SHA-256
    # first); tests with SIPp pass ("MD5",).
    algorithms: tuple[str, ...] = ("SHA-256", "MD5")
    ring_seconds: float = 0.0
    answer_status: int = 200  # e.g. 486 to play a busy phone
    media_port: int = 40000  # the RTP port written into this agent's SDP
    timers: TimerConfig = field(default_factory=TimerConfig)


class Agent:
    def __init__(self, config: AgentConfig | None = None) -> None:
        self.config = config or AgentConfig()
        self.endpoint = SipEndpoint(self, timers=self.config.timers)
        self.caps = Capabilities()
        self.dialogs = DialogTable()
        self.digest = auth.DigestServer(
            self.config.realm, b"agent-test-nonce-key", algorithms=self.config.algorithms
        )
        self.counts: Counter[str] = Counter()
        self.sdp = SDP.replace(b"m=audio 40000", b"m=audio %d" % self.config.media_port)
        self.last_offer = b""
        self.first_offer = b""
        self.notifies: list[bytes] = []  # the SDP of the first INVITE this agent answered
        self.last_sdp = b""
        self.ack_bodies: list[bytes] = []  # the bodies of the ACKs this agent received
        # in-dialog requests received: (method, Content-Type, body)
        self.in_dialog: list[tuple[str, str | None, bytes]] = []
        self.answered = asyncio.Event()
        self.bindings: dict[str, str] = {}
        self._pending: dict[str, tuple[Request, asyncio.TimerHandle | None]] = {}
        # INVITE server key -> the dialog its 200 made and the transport, until the ACK.
        self._answered: dict[str, tuple[Dialog, str]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, transport: str = "UDP", port: int = 0) -> int:
        await self.endpoint.start([Listen(transport, "127.0.0.1", port)])
        return self.endpoint.local(transport)[1]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.endpoint.close()

    # ----------------------------------------------------------------------------- UAS

    def on_event(self, event: Event) -> None:
        if isinstance(event, RequestReceived):
            self.counts[event.request.method] += 1
            self._on_request(event.key, event.request, event.source.transport)
        elif isinstance(event, AckReceived):
            self.counts["ACK"] += 1
            self.ack_bodies.append(event.request.body)
            if event.invite_key is not None:
                self._answered.pop(event.invite_key, None)
            dialog = self.dialogs.match(event.request)
            if dialog is not None:
                dialog.receive_request(event.request)
        elif isinstance(event, AckTimeout):
            # §13.3.1.4: the 200 was never ACKed; the dialog is confirmed, the session ends.
            self.counts["ack-timeout"] += 1
            answered = self._answered.pop(event.key, None)
            if answered is not None and answered[0].state is not DialogState.TERMINATED:
                self._spawn(self._hang_up(*answered))
        elif isinstance(event, TransactionTerminated):
            self._answered.pop(event.key, None)
        elif isinstance(event, CancelReceived):
            self.counts["CANCEL"] += 1
            pending = self._pending.pop(event.invite_key, None)
            if pending is not None:
                request, timer = pending
                if timer is not None:
                    timer.cancel()
                self.endpoint.send_response(event.invite_key, make_response(request, 487))
        elif isinstance(event, StrayResponse) and event.response.cseq.method == "INVITE":
            self.counts["stray-2xx"] += 1
        elif isinstance(event, ResponseReceived) and event.response.cseq.method == "INVITE":
            # a 2xx after the one the call waited for that the endpoint did not re-ACK itself
            self.counts["late-2xx"] += 1

    def _on_request(self, key: str, request: Request, transport: str) -> None:
        tag = new_tag()
        reply = self.endpoint.send_response
        if request.to.tag:
            dialog = self.dialogs.match(request)
            if dialog is None:
                answer = DialogTable.unknown_dialog_response(request)
                if answer is not None:
                    reply(key, answer)
                return
            dialog.receive_request(request)
            self.counts[f"in-dialog-{request.method}"] += 1
            self.in_dialog.append((request.method, request.content_type, request.body))
            if request.method == "NOTIFY":
                self.notifies.append(request.body)
            if request.method in ("INVITE", "UPDATE") and request.body:
                self.last_offer = request.body
                mirrored = {b"a=sendonly": b"a=recvonly", b"a=inactive": b"a=inactive"}
                answer = self.sdp
                for offered, answered in mirrored.items():
                    if offered in request.body:
                        answer = self.sdp.replace(b"a=rtpmap:0", answered + b"\r\na=rtpmap:0", 1)
                extra = [("Content-Type", "application/sdp")]
                response = make_response(request, 200, extra=extra, body=answer)
            else:
                response = make_response(request, 200)
            dialog.response_sent(request, response)
            reply(key, response)
            if request.method == "BYE":
                self.dialogs.remove(dialog.id)
            return
        error = check_request(request, self.caps, tag)
        if error is not None:
            reply(key, error)
        elif request.method == "OPTIONS":
            reply(key, options_response(request, self.caps, tag))
        elif request.method == "REGISTER":
            reply(key, self._register(request, tag))
        elif request.method == "INVITE":
            self._invite(key, request, tag, transport)
        else:
            reply(key, make_response(request, 405, to_tag=tag))

    def _register(self, request: Request, tag: str) -> Response:
        if not isinstance(request.to.uri, SipUri):  # an AoR is a SIP URI (RFC 4475 §3.3.4)
            return make_response(request, 400, "To is not a SIP URI", to_tag=tag)
        if self.config.users:
            line = request.headers.get("Authorization")
            if line is None:
                return self._challenge(request, tag, stale=False)
            try:
                creds = auth.parse_credentials(line)
            except auth.UnsupportedSchemeError:
                return self._challenge(request, tag, stale=False)
            result = self.digest.verify(creds, "REGISTER", self._ha1, _now())
            if result.status is auth.AuthStatus.STALE:
                return self._challenge(request, tag, stale=True)
            if not result.ok:
                return make_response(request, 403, to_tag=tag)
        self.counts["registered"] += 1
        aor = str(request.to.uri)
        contacts = [str(c) for c in request.contacts]
        if contacts:
            self.bindings[aor] = contacts[0]
        extra = [("Contact", c) for c in contacts]
        return make_response(request, 200, to_tag=tag, extra=extra)

    def _challenge(self, request: Request, tag: str, *, stale: bool) -> Response:
        challenges = self.digest.challenges(_now(), stale=stale)
        extra = [("WWW-Authenticate", c.to_header()) for c in challenges]
        return make_response(request, 401, to_tag=tag, extra=extra)

    def _ha1(self, username: str, algorithm: str) -> str | None:
        password = self.config.users.get(username)
        return (
            None if password is None else auth.ha1(username, self.config.realm, password, algorithm)
        )

    def _invite(self, key: str, request: Request, tag: str, transport: str) -> None:
        self.first_offer = self.first_offer or request.body
        host, port = self.endpoint.local(transport)
        contact = f"<sip:agent@{host}:{port};transport={transport.lower()}>"
        ringing = make_response(request, 180, to_tag=tag, extra=[("Contact", contact)])
        self.endpoint.send_response(key, ringing)

        def answer() -> None:
            if self._pending.pop(key, None) is None:
                return  # cancelled meanwhile
            if self.config.answer_status != 200:
                busy = make_response(request, self.config.answer_status, to_tag=tag)
                self.endpoint.send_response(key, busy)
                return
            ok = make_response(
                request,
                200,
                to_tag=tag,
                extra=[("Contact", contact), ("Content-Type", "application/sdp")],
                body=self.sdp,
            )
            dialog = self.dialogs.add(Dialog.from_uas(request, ok))
            self._answered[key] = (dialog, transport)
            self.endpoint.send_response(key, ok)
            self.counts["answered"] += 1

        if self.config.ring_seconds:
            loop = asyncio.get_running_loop()
            self._pending[key] = (request, loop.call_later(self.config.ring_seconds, answer))
        else:
            self._pending[key] = (request, None)
            answer()

    # ----------------------------------------------------------------------------- UAC

    async def call(
        self,
        target: Peer,
        user: str = "service",
        talk: float = 0.0,
        *,
        auth_as: tuple[str, str] | None = None,
        cancel_after: float | None = None,
        hold: bool = False,
        late_offer: bool = False,
        hang_up: asyncio.Event | None = None,
    ) -> int:
        """Call ``user`` at ``target``: INVITE (answering a digest challenge with ``auth_as``
        = (user, password)), ACK the 2xx, optionally put the call on hold and back with two
        re-INVITEs, wait ``talk`` s (or until ``hang_up`` is set, if sooner), BYE.
        ``cancel_after``: CANCEL that many seconds after the first provisional.
        ``late_offer``: the INVITE has no SDP, the 200 brings the offer and the ACK carries
        this agent's answer. Returns the final status of the INVITE."""
        transport = target.transport
        host, port = self.endpoint.local(transport)
        uri = SipUri(target.host, user, target.port)
        me = auth_as[0] if auth_as else "agent"
        headers = [
            ("Max-Forwards", "70"),
            ("From", f"<sip:{me}@{host}:{port}>;tag={new_tag()}"),
            ("To", f"<{uri}>"),
            ("Call-ID", new_call_id(host)),
            ("Contact", f"<sip:{me}@{host}:{port};transport={transport.lower()}>"),
        ]
        if not late_offer:
            headers.append(("Content-Type", "application/sdp"))
        offer = b"" if late_offer else self.sdp
        invite = build_request(
            "INVITE",
            uri,
            [("Via", self.endpoint.via(transport)), *headers, ("CSeq", "1 INVITE")],
            body=offer,
        )
        final = await self._invite_once(invite, target, cancel_after)
        if final.status in (401, 407) and auth_as is not None:
            name = "WWW-Authenticate" if final.status == 401 else "Proxy-Authenticate"
            challenges = [auth.parse_challenge(v) for v in final.headers.lines(name)]
            creds = auth.DigestClient(*auth_as).authorize(challenges, "INVITE", str(uri))
            cred_name = "Authorization" if final.status == 401 else "Proxy-Authorization"
            invite = build_request(
                "INVITE",
                uri,
                [
                    ("Via", self.endpoint.via(transport)),
                    *headers,
                    ("CSeq", "2 INVITE"),
                    (cred_name, creds.to_header()),
                ],
                body=offer,
            )
            final = await self._invite_once(invite, target, cancel_after)
        if not final.success:
            return final.status
        dialog = self.dialogs.receive_response(invite, final)
        assert dialog is not None
        via = self.endpoint.via(transport)
        answer = self.sdp if late_offer and final.body else b""
        ack = dialog.create_ack(
            invite.cseq.seq,
            via=via,
            body=answer,
            content_type="application/sdp" if answer else None,
        )
        self.endpoint.send_ack(ack, target)
        self.counts["calls"] += 1
        self.last_sdp = final.body
        self.answered.set()
        if hold:
            for direction in ("sendonly", "sendrecv"):
                status = await self._reinvite(dialog, target, direction)
                self.counts[f"reinvite-{direction}-{status}"] += 1
        if hang_up is None:
            await asyncio.sleep(talk)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(hang_up.wait(), talk)
        if dialog.state is DialogState.TERMINATED:
            return final.status  # the callee hung up first
        bye = dialog.create_request("BYE", via=self.endpoint.via(transport))
        bye_final = await self.endpoint.request(bye, target)
        dialog.receive_response(bye, bye_final)
        self.dialogs.remove(dialog.id)
        return final.status

    async def _invite_once(
        self, invite: Request, target: Peer, cancel_after: float | None
    ) -> Response:
        cancel: list[asyncio.TimerHandle] = []

        def provisional(response: Response) -> None:
            self.counts[f"got-{response.status}"] += 1
            if cancel_after is not None and not cancel and response.status > 100:
                loop = asyncio.get_running_loop()
                cancel.append(
                    loop.call_later(
                        cancel_after,
                        lambda: self.endpoint.send_request(make_cancel(invite), target),
                    )
                )

        try:
            return await self.endpoint.request(invite, target, provisional)
        finally:
            for handle in cancel:
                handle.cancel()

    async def _reinvite(self, dialog: Dialog, target: Peer, direction: str) -> int:
        body = self.sdp.replace(b"a=rtpmap:0", f"a={direction}\r\na=rtpmap:0".encode(), 1)
        request = dialog.create_request(
            "INVITE",
            via=self.endpoint.via(target.transport),
            body=body,
            content_type="application/sdp",
        )
        final = await self.endpoint.request(request, target)
        dialog.receive_response(request, final)
        if final.success:
            via = self.endpoint.via(target.transport)
            self.endpoint.send_ack(dialog.create_ack(request.cseq.seq, via=via), target)
            self.last_sdp = final.body
        return final.status

    async def send_in_dialog(
        self, method: str, body: bytes = b"", content_type: str | None = None
    ) -> Response:
        """Send ``method`` (INFO, UPDATE...) in this agent's (only) dialog to its remote
        target; returns the final response (its SDP answer is kept in ``last_sdp``)."""
        (dialog,) = list(self.dialogs)
        uri = dialog.remote_target
        assert isinstance(uri, SipUri)
        target = Peer((uri.transport or "udp").upper(), uri.host_bare, uri.port or 5060)
        request = dialog.create_request(
            method, via=self.endpoint.via(target.transport), body=body, content_type=content_type
        )
        final = await self.endpoint.request(request, target)
        dialog.receive_response(request, final)
        if final.success and final.body:
            self.last_sdp = final.body
        return final

    async def refer(self, number: str, domain: str = "edgepbx.local") -> int:
        """Blind-transfer the other party of this agent's (only) call to ``number`` with
        REFER (RFC 3515), sent to the dialog's remote target; returns the REFER's status."""
        (dialog,) = list(self.dialogs)
        uri = dialog.remote_target
        assert isinstance(uri, SipUri)
        target = Peer((uri.transport or "udp").upper(), uri.host_bare, uri.port or 5060)
        refer = dialog.create_request(
            "REFER",
            via=self.endpoint.via(target.transport),
            headers=[
                ("Refer-To", f"<sip:{number}@{domain}>"),
                ("Referred-By", f"<{dialog.local_uri}>"),
            ],
        )
        final = await self.endpoint.request(refer, target)
        dialog.receive_response(refer, final)
        return final.status

    async def _hang_up(self, dialog: Dialog, transport: str) -> None:
        """End ``dialog`` with BYE, sent to its first route or else its remote target."""
        uri = dialog.route_set[0] if dialog.route_set else dialog.remote_target
        if not isinstance(uri, SipUri):
            return
        transport = (uri.transport or transport).upper()
        target = Peer(transport, uri.host_bare, uri.port or 5060)
        bye = dialog.create_request("BYE", via=self.endpoint.via(transport))
        self.counts["bye-sent"] += 1
        final = await self.endpoint.request(bye, target)
        dialog.receive_response(bye, final)
        self.dialogs.remove(dialog.id)
        self.counts[f"bye-{final.status}"] += 1

    def _spawn(self, work: Coroutine[None, None, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _now() -> float:
    return asyncio.get_running_loop().time()


async def wait_answered(
    caller: Agent,
    call: asyncio.Future[int],
    timeout: float = 60.0,
    context: Callable[[], str] = str,
) -> None:
    """Until ``caller``'s ``call`` (the task of :meth:`Agent.call`) is answered. A call that
    ends unanswered fails at once with its final status: there is nothing more to wait
    for. ``timeout`` only bounds a hang; ``context()`` is added to a failure (a log)."""
    answered = asyncio.ensure_future(caller.answered.wait())
    try:
        await asyncio.wait({answered, call}, timeout=timeout, return_when=FIRST_COMPLETED)
    finally:
        answered.cancel()
    if caller.answered.is_set():
        return
    if call.done():
        outcome = call.exception() or f"final status {call.result()}"
        raise AssertionError(f"the call ended unanswered ({outcome}); {dict(caller.counts)}\n"
                             f"{context()}")  # fmt: skip
    raise AssertionError(f"no answer after {timeout:g} s; {dict(caller.counts)}\n{context()}")


def loopback_binding(
    number: str, port: int, transport: str = "UDP", host: str = "127.0.0.1"
) -> Binding:
    """What a REGISTER of a phone at ``host``:``port`` would store for ``number`` (an
    hour's registration): tests put it in a store instead of registering."""
    now = time.time()
    return Binding(
        aor=number,
        contact=f"<sip:{number}@{host}:{port}>",
        expires_at=now + 3600,
        call_id=f"test-{number}",
        cseq=1,
        source_transport=transport,
        source_host=host,
        source_port=port,
        updated_at=now,
    )
