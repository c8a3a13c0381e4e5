"""A reference cabinet: the cloud side of the link, small enough for tests and ``make run``.

It issues pairing codes (single use, short-lived), accepts boxes (a paired box gets an id and
a random credential; the cabinet keeps only its SHA-256), and lets a test or an operator send
requests to a box through its link and read the answers:

* in Python: ``await cabinet.request(box_id, "GET", "/v1/system")`` or ``cabinet.stream(...)``;
* over HTTP, on a loopback-only operator port (``serve_operator``): ``POST /pairing-codes``,
  ``GET /boxes``, and ``ANY /boxes/{box_id}/{path}`` forwarded through the link, e.g.
  ``curl -X PUT --data-binary @config.json http://127.0.0.1:8781/boxes/<id>/v1/config``.

The registry (boxes and their credential hashes) is kept in a JSON file when ``state_path`` is
given, so a restarted cabinet still knows the boxes it paired.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from ssl import SSLContext
from typing import Any

import uvicorn
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from appliance.files import write_private
from appliance.httpserver import EmbeddedServer
from appliance.link.asgi import Message, Receive, Scope, Send
from appliance.link.client import MAX_MESSAGE
from appliance.link.connection import (
    BodyReceived,
    HandshakeRequested,
    LinkConnection,
    LinkState,
    RemoteProtocolError,
    ResponseStarted,
    Role,
    StreamCancelled,
)
from appliance.link.frames import Headers, Hello, Pair, Paired, Welcome

__all__ = ["Box", "Cabinet", "CabinetResponse", "LinkUnavailable", "StreamedResponse"]

log = logging.getLogger(__name__)

_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud, typed by hand


class LinkUnavailable(Exception):
    """The box is not connected, or its link dropped before the answer was complete."""


@dataclass
class Box:
    box_id: str
    name: str
    credential_sha256: str
    paired_at: float


@dataclass(frozen=True, slots=True)
class CabinetResponse:
    status: int
    headers: Headers
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class StreamedResponse:
    status: int
    headers: Headers
    chunks: AsyncIterator[bytes]


@dataclass
class _Pending:
    events: asyncio.Queue[ResponseStarted | BodyReceived | StreamCancelled | None] = field(
        default_factory=asyncio.Queue
    )


class _BoxLink:
    """The cabinet's end of one box's connection."""

    def __init__(self, box_id: str, ws: ServerConnection, conn: LinkConnection) -> None:
        self.box_id, self.ws, self.conn = box_id, ws, conn
        self.pending: dict[int, _Pending] = {}
        self.lock = asyncio.Lock()
        self.closed = asyncio.Event()

    async def flush(self) -> None:
        async with self.lock:
            for frame in self.conn.frames_to_send():
                await self.ws.send(frame)

    def drop(self) -> None:
        self.closed.set()
        for pending in self.pending.values():
            pending.events.put_nowait(None)
        self.pending.clear()


class Cabinet:
    def __init__(
        self,
        state_path: Path | None = None,
        *,
        code_ttl: float = 600.0,
        ping_interval: float = 15.0,
        dead_after: float = 45.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state_path = state_path
        self.code_ttl = code_ttl
        self.ping_interval, self.dead_after = ping_interval, dead_after
        self.clock = clock
        self.boxes: dict[str, Box] = {}
        self._codes: dict[str, float] = {}  # code -> expiry
        self._links: dict[str, _BoxLink] = {}
        self._connected = asyncio.Condition()
        self._server: Server | None = None
        self._operator: EmbeddedServer | None = None
        self._operator_task: asyncio.Task[None] | None = None
        self.port = 0
        self.operator_port = 0
        self._ssl = False
        self._load()

    # --------------------------------------------------------------- registry

    def _load(self) -> None:
        if self.state_path is None or not self.state_path.exists():
            return
        raw = json.loads(self.state_path.read_text())
        self.boxes = {b["box_id"]: Box(**b) for b in raw.get("boxes", [])}

    def _save(self) -> None:
        if self.state_path is None:
            return
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        state = {"boxes": [vars(b) for b in self.boxes.values()]}
        write_private(self.state_path, json.dumps(state, indent=1))

    def issue_code(self, ttl: float | None = None) -> str:
        """A fresh single-use pairing code, valid for ``ttl`` seconds (default code_ttl)."""
        raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(8))
        code = f"{raw[:4]}-{raw[4:]}"
        self._codes[code] = self.clock() + (self.code_ttl if ttl is None else ttl)
        return code

    def _redeem(self, code: str) -> str | None:
        """None if the code is good (and now spent), else why it is refused."""
        expires = self._codes.pop(code.strip().upper(), None)
        if expires is None:
            return "unknown pairing code"
        if self.clock() >= expires:
            return "pairing code expired"
        return None

    def _check(self, hello: Hello) -> bool:
        box = self.boxes.get(hello.box_id)
        digest = hashlib.sha256(hello.credential.encode()).hexdigest()
        return box is not None and hmac.compare_digest(box.credential_sha256, digest)

    def connected(self, box_id: str) -> bool:
        return box_id in self._links

    async def wait_connected(self, box_id: str | None = None, timeout: float = 10.0) -> str:
        """Wait until ``box_id`` (or any box) is connected; returns its id."""

        def ready() -> str | None:
            if box_id is None:
                return next(iter(self._links), None)
            return box_id if box_id in self._links else None

        async with asyncio.timeout(timeout), self._connected:
            await self._connected.wait_for(lambda: ready() is not None)
        found = ready()
        assert found is not None
        return found

    # --------------------------------------------------------------- server

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, *, ssl: SSLContext | None = None
    ) -> None:
        self._ssl = ssl is not None
        self._server = await serve(
            self._handle,
            host,
            port,
            ssl=ssl,
            ping_interval=None,
            max_size=MAX_MESSAGE,
            compression=None,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("cabinet listening: url=%s", self.url(host))

    def url(self, host: str = "127.0.0.1") -> str:
        return f"{'wss' if self._ssl else 'ws'}://{host}:{self.port}/link"

    async def close(self) -> None:
        if self._operator is not None:
            self._operator.should_exit = True
            if self._operator_task is not None:
                await self._operator_task
            self._operator = None
        if self._server is not None:
            self._server.close()
            for link in list(self._links.values()):
                link.ws.transport.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, ws: ServerConnection) -> None:
        conn = LinkConnection(
            Role.CABINET,
            time.monotonic(),
            ping_interval=self.ping_interval,
            dead_after=self.dead_after,
        )
        link: _BoxLink | None = None
        timer: asyncio.Task[None] | None = None
        try:
            async for message in ws:
                for event in conn.receive(message, time.monotonic()):
                    if isinstance(event, HandshakeRequested):
                        link = await self._handshake(ws, conn, event.frame)
                        if link is not None:
                            timer = asyncio.create_task(self._heartbeat(link))
                    elif link is not None and isinstance(
                        event, ResponseStarted | BodyReceived | StreamCancelled
                    ):
                        pending = link.pending.get(event.id)
                        if pending is not None:
                            pending.events.put_nowait(event)
                if link is not None:
                    await link.flush()
                elif conn.state is LinkState.CLOSED:
                    for frame in conn.frames_to_send():
                        await ws.send(frame)
                    break
        except RemoteProtocolError as exc:
            log.warning("box broke the link protocol: %s", exc)
            await ws.close(1002, "protocol error")
        except ConnectionClosed:
            pass
        finally:
            if timer is not None:
                timer.cancel()
            if link is not None:
                link.drop()
                if self._links.get(link.box_id) is link:
                    del self._links[link.box_id]

    async def _handshake(
        self, ws: ServerConnection, conn: LinkConnection, frame: Pair | Hello
    ) -> _BoxLink | None:
        if isinstance(frame, Pair):
            why = self._redeem(frame.code)
            if why is not None:
                log.info("pairing refused: %s", why)
                conn.refuse("bad_code", why)
                return None
            box_id = secrets.token_hex(8)
            credential = secrets.token_urlsafe(32)
            self.boxes[box_id] = Box(
                box_id,
                frame.box_name,
                hashlib.sha256(credential.encode()).hexdigest(),
                self.clock(),
            )
            self._save()
            conn.accept(Paired(box_id, credential))
        elif self._check(frame):
            box_id = frame.box_id
            conn.accept(Welcome(box_id))
        else:
            conn.refuse("unauthorized", "unknown box or wrong credential: pair the box again")
            return None
        link = _BoxLink(box_id, ws, conn)
        old = self._links.get(box_id)
        if old is not None:  # the box reconnected before its old connection timed out
            old.ws.transport.close()
            old.drop()
        async with self._connected:
            self._links[box_id] = link
            self._connected.notify_all()
        log.info("box linked: box_id=%s", box_id)
        return link

    async def _heartbeat(self, link: _BoxLink) -> None:
        while True:
            deadline = link.conn.next_timer()
            if deadline is None:
                return
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))
            if link.conn.handle_timer(time.monotonic()):  # dead
                link.ws.transport.close()
                return
            await link.flush()

    # --------------------------------------------------------------- requests

    async def stream(
        self,
        box_id: str,
        method: str,
        path: str,
        headers: Headers = (),
        body: bytes = b"",
    ) -> StreamedResponse:
        """Send a request; returns once the answer's head arrived, with its body as chunks."""
        link = self._links.get(box_id)
        if link is None:
            raise LinkUnavailable(f"box {box_id} is not connected")
        pending = _Pending()
        stream_id = link.conn.send_request(method, path, headers, body, more=False)
        link.pending[stream_id] = pending
        try:
            await link.flush()
        except ConnectionClosed as exc:
            link.pending.pop(stream_id, None)
            raise LinkUnavailable(f"the link to box {box_id} dropped") from exc
        first = await pending.events.get()
        if first is None:
            raise LinkUnavailable(f"the link to box {box_id} dropped")
        if isinstance(first, StreamCancelled):
            link.pending.pop(stream_id, None)
            raise LinkUnavailable(f"the box cancelled the request: {first.reason}")
        if not isinstance(first, ResponseStarted):
            raise LinkUnavailable("body before response")

        async def chunks() -> AsyncIterator[bytes]:
            try:
                if first.body:
                    yield first.body
                done = first.complete
                while not done:
                    event = await pending.events.get()
                    if event is None:
                        raise LinkUnavailable(f"the link to box {box_id} dropped mid-answer")
                    if isinstance(event, StreamCancelled):
                        raise LinkUnavailable(f"the box abandoned the answer: {event.reason}")
                    assert isinstance(event, BodyReceived)
                    if event.data:
                        yield event.data
                    done = event.complete
            finally:
                link.pending.pop(stream_id, None)
                if not link.closed.is_set() and link.conn.stream_open(stream_id):
                    link.conn.cancel(stream_id, "abandoned by the cabinet")
                    with contextlib.suppress(ConnectionClosed):
                        await link.flush()

        return StreamedResponse(first.status, first.headers, chunks())

    async def request(
        self,
        box_id: str,
        method: str,
        path: str,
        headers: Headers = (),
        body: bytes = b"",
        *,
        json_body: Any = None,
    ) -> CabinetResponse:
        """Send a request through the link and read the whole answer."""
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers = (*headers, ("content-type", "application/json"))
        answer = await self.stream(box_id, method, path, headers, body)
        data = bytearray()
        async for chunk in answer.chunks:
            data += chunk
        return CabinetResponse(answer.status, answer.headers, bytes(data))

    # --------------------------------------------------------------- operator HTTP front

    async def serve_operator(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """The operator's HTTP front (loopback only: it has no authentication)."""
        config = uvicorn.Config(
            self._operator_app,
            host=host,
            port=port,
            lifespan="off",
            log_config=None,
            interface="asgi3",
        )
        self._operator = EmbeddedServer(config)
        self._operator_task = asyncio.create_task(self._operator.serve())
        while not self._operator.started:
            if self._operator_task.done():
                await self._operator_task
                raise OSError(f"cannot serve the cabinet's operator port {host}:{port}")
            await asyncio.sleep(0.01)
        self.operator_port = self._operator.servers[0].sockets[0].getsockname()[1]

    async def _operator_app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return

        async def answer(status: int, payload: Any) -> None:
            body = json.dumps(payload).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})

        path: str = scope["path"]
        method: str = scope["method"]
        if path == "/pairing-codes" and method == "POST":
            await answer(201, {"code": self.issue_code(), "expires_in": self.code_ttl})
            return
        if path == "/boxes" and method == "GET":
            await answer(
                200,
                [
                    {"box_id": b.box_id, "name": b.name, "connected": self.connected(b.box_id)}
                    for b in self.boxes.values()
                ],
            )
            return
        parts = path.split("/", 3)
        if len(parts) < 4 or parts[1] != "boxes":
            await answer(404, {"detail": "not found"})
            return
        box_id, rest = parts[2], "/" + parts[3]
        query = scope["query_string"].decode("ascii")
        body = bytearray()
        while True:
            message: Message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = tuple(
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k not in (b"host", b"connection", b"content-length")
        )
        try:
            answer_stream = await self.stream(
                box_id, method, rest + (f"?{query}" if query else ""), headers, bytes(body)
            )
        except LinkUnavailable as exc:
            await answer(502, {"detail": str(exc)})
            return
        await send(
            {
                "type": "http.response.start",
                "status": answer_stream.status,
                "headers": [
                    (k.encode("latin-1"), v.encode("latin-1"))
                    for k, v in answer_stream.headers
                    if k.lower() not in ("content-length", "transfer-encoding")
                ],
            }
        )
        try:
            async for chunk in answer_stream.chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except LinkUnavailable:
            pass
        await send({"type": "http.response.body", "body": b""})
