"""The SIP core service: the composition root of the call-handling process.

It builds the endpoint, the registrar, the media relay and the call manager from settings and
a store, and is the transaction user on top of the endpoint: requests are checked (§8.2),
OPTIONS answered (§11), REGISTER handled by the registrar, INVITE authenticated and handed to
the call manager, and requests for unknown dialogs answered 481 (§12.2.2).
"""

from __future__ import annotations

import asyncio
import logging
import time

from pbx.b2bua import CallManager, CallSettings
from pbx.endpoint import Listen, SipEndpoint
from pbx.guard import Guard
from pbx.media.relay import MediaRelay
from pbx.recording.service import CallRecorder
from pbx.registrar import Authenticator, Registrar, RegistrarJobs
from pbx.registrar_workers import RegistrarPool, SpawnWorker
from pbx.settings import SipSettings
from pbx.sip.dialog import DialogTable, new_tag
from pbx.sip.events import Event, Peer, RequestReceived
from pbx.sip.message import make_response
from pbx.sip.uas import Capabilities, check_request, options_response
from pbx.store import BindingStore, Directory, Store
from pbx.transport.udp import UdpTransport

log = logging.getLogger(__name__)


def build_registrar(
    settings: SipSettings, directory: Directory, bindings: BindingStore, nonce_key: bytes
) -> Registrar:
    """The registrar (and its authenticator) of the core, and of each registrar worker."""
    auth = Authenticator(
        directory, settings.domain, nonce_key, algorithms=settings.digest_algorithms
    )
    return Registrar(directory, bindings, auth)


class SipCore:
    """The transaction user of the box's SIP endpoint."""

    def __init__(
        self,
        settings: SipSettings,
        store: Store,
        nonce_key: bytes,
        recorder: CallRecorder | None = None,
        spawn_worker: SpawnWorker | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.caps = Capabilities(user_agent=settings.user_agent)
        self.endpoint = SipEndpoint(
            self, timers=settings.timers, advertised_host=settings.advertised_host
        )
        self.guard = Guard(settings.guard)  # sees every request's source first
        # REGISTERs over UDP go to worker processes when there are any (the composition
        # root knows how to start one); the core's registrar answers the rest.
        count = settings.worker_count if spawn_worker is not None else 0
        self.pool = (
            RegistrarPool(count, spawn_worker, store.bindings, self._failed)
            if spawn_worker is not None and count
            else None
        )
        bindings = self.pool.bindings if self.pool is not None else store.bindings
        self.registrar = build_registrar(settings, store.directory, bindings, nonce_key)
        self.auth = self.registrar.authenticator
        self.relay = MediaRelay(
            settings.media_host,
            (settings.rtp_port_min, settings.rtp_port_max),
            dead_after=settings.media_timeout,
        )
        self.calls = CallManager(
            self.endpoint,
            store.directory,
            self.registrar.lookup,
            self.relay,
            store.cdr,
            settings=CallSettings(
                domain=settings.domain,
                media_host=settings.media_host,
                max_calls=settings.max_calls,
                user_agent=settings.user_agent,
            ),
        )
        self.recorder = recorder
        if recorder is not None:
            self.calls.on_answered = recorder.call_answered
            self.calls.on_record = recorder.call_record
        self._jobs: asyncio.Task[None] | None = None

    async def start(self) -> None:
        s = self.settings
        await self.endpoint.start(Listen(t, s.host, s.port) for t in s.transports)
        for transport in self.endpoint.transports.transports:
            if isinstance(transport, UdpTransport):
                transport.divert = self._screen
                if self.pool is not None:
                    await self.pool.start(transport)
        self._jobs = asyncio.create_task(RegistrarJobs(self.registrar, self.endpoint).run())

    async def close(self) -> None:
        await self.calls.close()
        if self.pool is not None:
            await self.pool.close()
        if self._jobs is not None:
            self._jobs.cancel()
        await self.relay.close()  # closes the recorders' taps: they finalize their files
        if self.recorder is not None:
            await self.recorder.close()
        await self.endpoint.close()

    def _now(self) -> float:
        return self.calls.clock()

    def _screen(self, data: bytes, source: Peer) -> bool:
        """Every UDP datagram, before parsing: True if it was dropped or passed on."""
        if not self.guard.allows(source.host, time.monotonic()):
            return True
        return self.pool is not None and self.pool.divert(data, source)

    def _failed(self, host: str) -> None:
        self.guard.failed(host, time.monotonic())

    def on_event(self, event: Event) -> None:
        if self.calls.on_event(event) or not isinstance(event, RequestReceived):
            return
        request, key, source = event.request, event.key, event.source
        if source.transport != "UDP" and not self.guard.allows(source.host, time.monotonic()):
            return  # streams are screened here (UDP before parsing, in _screen)
        if request.to.tag:
            answer = DialogTable.unknown_dialog_response(request)
            if answer is not None:
                self.endpoint.send_response(key, answer)
            return
        tag = new_tag()
        answer = check_request(request, self.caps, tag)
        if answer is None:
            method = request.method
            if method == "OPTIONS":
                answer = options_response(request, self.caps, tag)
            elif method == "REGISTER":
                answer = self.registrar.handle(request, source, self._now())
            elif method == "INVITE":
                checked = self.auth.check(request, self._now())
                if isinstance(checked, str):
                    self.calls.on_invite(key, request, source, checked)
                    return
                answer = checked
            else:
                answer = make_response(
                    request, 405, to_tag=tag, extra=[("Allow", self.caps.allow_header())]
                )
        if answer.status == 403 and request.method in ("REGISTER", "INVITE"):
            self._failed(source.host)  # credentials refused
        self.endpoint.send_response(key, answer)
