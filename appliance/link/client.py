"""The box's side of the cloud link: dial out to the cabinet, pair or resume, serve the
cabinet's requests through the box's ASGI app, and reconnect when anything breaks.

Behind office NAT only outbound connections work, so the box always dials. The protocol is
the sans-IO :class:`~appliance.link.connection.LinkConnection`; this file only moves its
frames over a ``websockets`` connection and runs each request as an
:class:`~appliance.link.asgi.Exchange` task (several at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ipaddress
import logging
import random
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from appliance.backoff import backoff_delay
from appliance.link.asgi import ASGIApp, Exchange, build_scope
from appliance.link.connection import (
    BodyReceived,
    ConnectionDead,
    Event,
    HandshakeDone,
    LinkConnection,
    LinkState,
    RemoteProtocolError,
    RequestStarted,
    Role,
    StreamCancelled,
)
from appliance.link.credentials import CredentialStore, LinkCredential
from appliance.link.frames import Headers, Hello, Pair, Paired, Refused, Welcome
from appliance.logs import register_secret

__all__ = [
    "LinkClient",
    "LinkPhase",
    "LinkSettings",
    "LinkStatus",
    "PairingRefused",
    "is_loopback",
    "pair_once",
]

log = logging.getLogger(__name__)

MAX_MESSAGE = 256 * 1024  # a frame carries at most 64 KiB of body (87 KiB as base64)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LinkSettings(BaseModel):
    """The cloud link's settings. ``cabinet_url`` must be ``wss://`` (TLS, certificate
    verified against the system CAs or ``ca_file``); ``ws://`` is allowed only to a loopback
    address (the embedded cabinet of ``make run`` and tests)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cabinet_url: str
    box_name: str = Field(default_factory=socket.gethostname, max_length=200)
    ca_file: Path | None = None
    ping_interval: float = Field(15.0, gt=0)
    dead_after: float = Field(45.0, gt=0)
    backoff_initial: float = Field(0.5, gt=0)
    backoff_max: float = Field(60.0, gt=0)
    max_streams: int = Field(16, ge=1, le=1024)
    max_request_body: int = Field(32 * 1024 * 1024, ge=0)
    open_timeout: float = Field(10.0, gt=0)

    @field_validator("cabinet_url")
    @classmethod
    def _secure_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError("must be a wss:// URL (ws:// only to a loopback address)")
        if parts.scheme == "ws" and not is_loopback(parts.hostname):
            raise ValueError(
                f"ws:// (no TLS) is allowed only to a loopback address, not {parts.hostname!r};"
                " use wss://"
            )
        return url

    def ssl_context(self) -> ssl.SSLContext | None:
        if urlsplit(self.cabinet_url).scheme != "wss":
            return None
        # Verified: hostname checked, CERT_REQUIRED (create_default_context's defaults).
        return ssl.create_default_context(cafile=self.ca_file)


class LinkPhase(enum.Enum):
    UNPAIRED = "unpaired"  # no credential and no pairing code: waiting for the installer
    CONNECTING = "connecting"
    CONNECTED = "connected"
    WAITING = "waiting"  # between attempts
    REFUSED = "refused"  # the cabinet refused the code or the credential
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class LinkStatus:
    phase: LinkPhase
    detail: str = ""
    box_id: str | None = None
    connects: int = 0  # connections that reached the open state since start
    in_flight: int = 0


class _Refusal(Exception):
    def __init__(self, frame: Refused) -> None:
        super().__init__(f"{frame.reason}: {frame.message}")
        self.frame = frame


class LinkClient:
    """Keeps the box's link to the cabinet up. ``run()`` until cancelled (or ``stop()``)."""

    def __init__(
        self,
        settings: LinkSettings,
        app: ASGIApp,
        credentials: CredentialStore,
        *,
        pairing_code: str | None = None,
        app_state: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.app = app
        self.credentials = credentials
        self.app_state = app_state
        self._pairing_code = pairing_code
        self._code_given = asyncio.Event()
        self._clock = clock
        self._rng = rng or random.Random()
        self._status = LinkStatus(LinkPhase.STOPPED)
        self._connects = 0
        self._conn: LinkConnection | None = None
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None

    # --------------------------------------------------------------- public

    @property
    def status(self) -> LinkStatus:
        conn = self._conn
        if conn is not None and self._status.phase is LinkPhase.CONNECTED:
            return LinkStatus(
                self._status.phase,
                self._status.detail,
                self._status.box_id,
                self._connects,
                conn.in_flight,
            )
        return self._status

    def pair(self, code: str) -> None:
        """The installer entered a pairing code: pair with it now (a code takes precedence
        over a stored credential, so entering one re-pairs a linked box)."""
        self._pairing_code = code.strip()
        self._set(LinkPhase.CONNECTING, "pairing")  # a new attempt: forget the last refusal
        self._code_given.set()
        if self._ws is not None:
            self._ws.transport.close()  # reconnect at once, pairing on the new connection

    async def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="link")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._status = LinkStatus(LinkPhase.STOPPED)

    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def run(self) -> None:
        attempt = 0
        url = self.settings.cabinet_url
        try:
            while True:
                saved = self.credentials.load(url)
                pairing = bool(self._pairing_code)
                if saved is None and not pairing:
                    self._set(LinkPhase.UNPAIRED, "enter a pairing code to link this box")
                    self._code_given.clear()
                    # Also look again now and then: `edgepbx link pair` may have paired the
                    # box from another process.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._code_given.wait(), 2.0)
                    continue
                opened = False
                try:
                    opened = await self._connect_once(None if pairing else saved)
                    detail, phase = "the cabinet closed the link", LinkPhase.WAITING
                except _Refusal as refusal:
                    detail, phase = f"refused by the cabinet: {refusal}", LinkPhase.REFUSED
                    log.warning("link refused: reason=%s", refusal.frame.reason)
                    if pairing:
                        # A refused code is wrong or spent: wait for the installer's next one
                        # (or resume with the credential this box already holds).
                        self._pairing_code = None
                        self._set(phase, detail)
                        if saved is None:
                            self._code_given.clear()
                            await self._code_given.wait()
                        continue
                except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
                    detail, phase = f"cannot reach the cabinet: {exc}", LinkPhase.WAITING
                except ConnectionClosed as exc:
                    detail, phase = f"link lost: {exc}", LinkPhase.WAITING
                except RemoteProtocolError as exc:
                    detail, phase = f"cabinet broke the protocol: {exc}", LinkPhase.WAITING
                attempt = 0 if opened else attempt + 1
                delay = backoff_delay(
                    attempt,
                    self.settings.backoff_initial,
                    self.settings.backoff_max,
                    self._rng.random(),
                )
                self._set(phase, f"{detail}; retrying in {delay:.1f} s")
                log.info("link down: detail=%r retry_in=%.2f", detail, delay)
                await asyncio.sleep(delay)
        finally:
            self._status = LinkStatus(LinkPhase.STOPPED)

    # --------------------------------------------------------------- one connection

    def _set(self, phase: LinkPhase, detail: str = "", box_id: str | None = None) -> None:
        self._status = LinkStatus(phase, detail, box_id or self._status.box_id, self._connects)

    async def _connect_once(self, saved: LinkCredential | None) -> bool:
        """One connection, from dial to close. True if it reached the open state."""
        url = self.settings.cabinet_url
        self._set(LinkPhase.CONNECTING, url)
        host = urlsplit(url).hostname or ""
        async with connect(
            url,
            ssl=self.settings.ssl_context(),
            open_timeout=self.settings.open_timeout,
            ping_interval=None,  # the link protocol has its own heartbeat (see connection.py)
            max_size=MAX_MESSAGE,
            compression=None,
            proxy=None if is_loopback(host) else True,
            user_agent_header="edgepbx-link",
        ) as ws:
            conn = LinkConnection(
                Role.BOX,
                self._clock(),
                ping_interval=self.settings.ping_interval,
                dead_after=self.settings.dead_after,
                max_streams=self.settings.max_streams,
            )
            self._ws, self._conn = ws, conn
            if saved is not None:
                register_secret(saved.credential)
            try:
                return await _Session(self, ws, conn, saved).serve()
            finally:
                self._ws = self._conn = None

    def _paired(self, frame: Paired) -> None:
        register_secret(frame.credential)
        self.credentials.save(
            LinkCredential(self.settings.cabinet_url, frame.box_id, frame.credential, time.time())
        )
        self._pairing_code = None
        log.info("link paired: box_id=%s", frame.box_id)

    def _opened(self, box_id: str) -> None:
        self._connects += 1
        self._set(LinkPhase.CONNECTED, self.settings.cabinet_url, box_id)
        log.info("link up: box_id=%s connects=%d", box_id, self._connects)


class _Session:
    """One open WebSocket: the reader, the heartbeat timer and the request tasks."""

    def __init__(
        self,
        client: LinkClient,
        ws: ClientConnection,
        conn: LinkConnection,
        saved: LinkCredential | None,
    ) -> None:
        self.client, self.ws, self.conn, self.saved = client, ws, conn, saved
        self.exchanges: dict[int, Exchange] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.send_lock = asyncio.Lock()
        self.opened = False
        self.received: dict[int, int] = {}  # request body bytes so far, per stream

    async def flush(self) -> None:
        async with self.send_lock:
            for frame in self.conn.frames_to_send():
                await self.ws.send(frame)

    async def serve(self) -> bool:
        if self.saved is not None:
            self.conn.start(Hello(self.saved.box_id, self.saved.credential))
        else:
            code = self.client._pairing_code or ""
            self.conn.start(Pair(code, self.client.settings.box_name))
        await self.flush()
        timer = asyncio.create_task(self._heartbeat(), name="link-heartbeat")
        try:
            async for message in self.ws:
                events = self.conn.receive(message, self.client._clock())
                for event in events:
                    self._dispatch(event)
                await self.flush()
                if self.conn.state is LinkState.CLOSED:
                    break
        finally:
            timer.cancel()
            for exchange in self.exchanges.values():
                exchange.abort()
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(timer, *self.tasks, return_exceptions=True)
        return self.opened

    async def _heartbeat(self) -> None:
        while True:
            deadline = self.conn.next_timer()
            if deadline is None:
                return
            await asyncio.sleep(max(0.0, deadline - self.client._clock()))
            for event in self.conn.handle_timer(self.client._clock()):
                if isinstance(event, ConnectionDead):
                    log.warning("link silent: seconds=%.1f; reconnecting", event.silent_for)
                    self.ws.transport.close()  # no closing handshake: the peer is gone
                    return
            await self.flush()

    def _dispatch(self, event: Event) -> None:
        match event:
            case HandshakeDone(frame=Paired() as frame):
                self.client._paired(frame)
                self.opened = True
                self.client._opened(frame.box_id)
            case HandshakeDone(frame=Refused() as frame):
                raise _Refusal(frame)
            case HandshakeDone(frame=Welcome() as frame):
                self.opened = True
                self.client._opened(frame.box_id)
            case RequestStarted():
                self._start_exchange(event)
            case BodyReceived():
                exchange = self.exchanges.get(event.id)
                if exchange is None:
                    return
                size = self.received.get(event.id, 0) + len(event.data)
                self.received[event.id] = size
                if size > self.client.settings.max_request_body:
                    limit = self.client.settings.max_request_body
                    self.conn.cancel(event.id, f"request body over {limit} bytes")
                    self._end(event.id)
                    return
                exchange.feed(event.data, event.complete)
            case StreamCancelled():
                self._end(event.id)
            case _:
                pass

    def _end(self, stream_id: int) -> None:
        exchange = self.exchanges.pop(stream_id, None)
        self.received.pop(stream_id, None)
        if exchange is not None:
            exchange.abort()

    def _start_exchange(self, event: RequestStarted) -> None:
        stream_id = event.id
        if len(event.body) > self.client.settings.max_request_body:
            self.conn.cancel(stream_id, "request body too large")
            return
        self.received[stream_id] = len(event.body)
        remote = self.ws.remote_address
        client = (str(remote[0]), int(remote[1])) if remote else None

        # The answer goes nowhere once the link is closed (a dead link, the cabinet gone):
        # the session's end cancels this task anyway.
        async def start(status: int, headers: Headers, body: bytes, more: bool) -> None:
            if self.conn.state is LinkState.OPEN:
                self.conn.send_response(stream_id, status, headers, body, more=more)
                await self.flush()

        async def body(data: bytes, more: bool) -> None:
            if self.conn.state is LinkState.OPEN:
                self.conn.send_body(stream_id, data, more=more)
                await self.flush()

        async def cancel(reason: str) -> None:
            if self.conn.state is LinkState.OPEN:
                self.conn.cancel(stream_id, reason)
                await self.flush()

        exchange = Exchange(
            build_scope(
                event.method, event.path, event.headers, client=client, state=self.client.app_state
            ),
            event.body,
            event.complete,
            start=start,
            body=body,
            cancel=cancel,
        )
        self.exchanges[stream_id] = exchange

        async def run() -> None:
            try:
                await exchange.run(self.client.app)
            except ConnectionClosed:
                pass
            finally:
                self.exchanges.pop(stream_id, None)
                self.received.pop(stream_id, None)

        task = asyncio.create_task(run(), name=f"link-request-{stream_id}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


class PairingRefused(Exception):
    """The cabinet refused the pairing code (unknown, expired or already used)."""


async def pair_once(
    settings: LinkSettings, code: str, credentials: CredentialStore
) -> LinkCredential:
    """Exchange a pairing code for the link credential on one connection, save it, and
    close (``edgepbx link pair``; a running box picks the credential up by itself).
    Raises :class:`PairingRefused`, or OSError/TimeoutError when the cabinet is unreachable."""
    host = urlsplit(settings.cabinet_url).hostname or ""
    async with connect(
        settings.cabinet_url,
        ssl=settings.ssl_context(),
        open_timeout=settings.open_timeout,
        ping_interval=None,
        max_size=MAX_MESSAGE,
        compression=None,
        proxy=None if is_loopback(host) else True,
        user_agent_header="edgepbx-link",
    ) as ws:
        conn = LinkConnection(Role.BOX, time.monotonic())
        conn.start(Pair(code.strip(), settings.box_name))
        for frame in conn.frames_to_send():
            await ws.send(frame)
        async with asyncio.timeout(settings.open_timeout):
            while conn.state is LinkState.HANDSHAKE:
                for event in conn.receive(await ws.recv(), time.monotonic()):
                    if isinstance(event, HandshakeDone):
                        if isinstance(event.frame, Refused):
                            raise PairingRefused(event.frame.message or event.frame.reason)
                        if isinstance(event.frame, Paired):
                            saved = LinkCredential(
                                settings.cabinet_url,
                                event.frame.box_id,
                                event.frame.credential,
                                time.time(),
                            )
                            credentials.save(saved)
                            return saved
    raise PairingRefused("the cabinet answered the pairing code without a credential")
