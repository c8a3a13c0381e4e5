"""Running a request that arrived over the cloud link through the box's ASGI app, in process.

The link builds the ASGI scope itself, so it alone decides the origin: ``scope["edgepbx.origin"]
= "cloud"``. That scope key is the contract with the API's policy point. Requests from the
LAN HTTP listener (uvicorn) never carry it, and no header can set it: headers go to
``scope["headers"]`` only, and ``x-edgepbx-*`` headers from the cabinet are dropped so that no
part of the app is ever tempted to trust one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote

from appliance.link.frames import Headers

__all__ = ["ORIGIN_CLOUD", "ORIGIN_SCOPE_KEY", "ASGIApp", "Exchange", "build_scope"]

log = logging.getLogger(__name__)

ORIGIN_SCOPE_KEY = "edgepbx.origin"
ORIGIN_CLOUD = "cloud"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Hop-by-hop headers (RFC 9110 §7.6.1) mean nothing inside the tunnel.
_DROPPED = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding"}
    | {"upgrade", "proxy-authenticate", "proxy-authorization"}
)


def build_scope(
    method: str,
    path: str,
    headers: Headers,
    *,
    client: tuple[str, int] | None,
    state: dict[str, Any] | None = None,
) -> Scope:
    """The ASGI HTTP scope of a request from the cabinet (ASGI spec 2.4)."""
    raw_path, _, query = path.partition("?")
    pairs = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in headers
        if name.lower() not in _DROPPED and not name.lower().startswith("x-edgepbx-")
    ]
    if not any(name == b"host" for name, _ in pairs):
        pairs.insert(0, (b"host", b"edgepbx.link"))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method.upper(),
        "scheme": "https",
        "path": unquote(raw_path),
        "raw_path": raw_path.encode("ascii"),
        "query_string": query.encode("ascii"),
        "root_path": "",
        "headers": pairs,
        "client": client,
        "server": ("edgepbx.link", 443),
        "state": dict(state or {}),
        ORIGIN_SCOPE_KEY: ORIGIN_CLOUD,
    }


class Exchange:
    """One request's run through the app. The link feeds request body chunks with
    :meth:`feed` and :meth:`abort`; the app's answer goes to the ``respond`` callbacks.

    ``start(status, headers, body, more)`` is called once, ``body(data, more)`` after it,
    ``cancel(reason)`` when the answer cannot be completed (the app failed mid-stream).
    """

    def __init__(
        self,
        scope: Scope,
        first_body: bytes,
        complete: bool,
        *,
        start: Callable[[int, Headers, bytes, bool], Awaitable[None]],
        body: Callable[[bytes, bool], Awaitable[None]],
        cancel: Callable[[str], Awaitable[None]],
    ) -> None:
        self.scope = scope
        # (chunk, last) pairs; None when the request is abandoned
        self._chunks: asyncio.Queue[tuple[bytes, bool] | None] = asyncio.Queue()
        self._chunks.put_nowait((first_body, complete))
        self._request_done = False
        self._aborted = asyncio.Event()
        self._start, self._body, self._cancel = start, body, cancel
        self._head: tuple[int, Headers] | None = None
        self._head_sent = False
        self._finished = False

    def feed(self, data: bytes, complete: bool) -> None:
        self._chunks.put_nowait((data, complete))

    def abort(self) -> None:
        """The cabinet cancelled or the link dropped: the app sees ``http.disconnect``."""
        self._aborted.set()
        self._chunks.put_nowait(None)

    async def _receive(self) -> Message:
        if self._aborted.is_set():
            return {"type": "http.disconnect"}
        if self._request_done:
            await self._aborted.wait()  # the app waits for a disconnect: block until it comes
            return {"type": "http.disconnect"}
        item = await self._chunks.get()
        if item is None:
            return {"type": "http.disconnect"}
        data, complete = item
        self._request_done = complete
        return {"type": "http.request", "body": data, "more_body": not complete}

    async def _send(self, message: Message) -> None:
        if self._aborted.is_set():
            raise ConnectionAbortedError("the cabinet abandoned this request")
        kind = message["type"]
        if kind == "http.response.start":
            if self._head is not None:
                raise RuntimeError("http.response.start sent twice")
            self._head = (int(message["status"]), _headers_out(message.get("headers", ())))
        elif kind == "http.response.body":
            if self._head is None or self._finished:
                raise RuntimeError("http.response.body outside a response")
            data = bytes(message.get("body", b""))
            more = bool(message.get("more_body", False))
            self._finished = not more
            if not self._head_sent:
                self._head_sent = True
                await self._start(*self._head, data, more)
            elif data or not more:
                await self._body(data, more)

    async def run(self, app: ASGIApp) -> None:
        try:
            await app(self.scope, self._receive, self._send)
        except ConnectionAbortedError:
            return
        except Exception:
            log.exception("link request failed in the app: path=%s", self.scope["path"])
            if not self._head_sent:
                await self._start(500, (("content-type", "text/plain"),), b"internal error", False)
            else:
                await self._cancel("the app failed while answering")
            return
        if self._aborted.is_set():
            return
        if self._head is None:
            await self._start(500, (("content-type", "text/plain"),), b"no response", False)
        elif not self._head_sent:
            await self._start(*self._head, b"", False)
        elif not self._finished:
            await self._body(b"", False)


def _headers_out(raw: Any) -> Headers:
    """The app's headers as frame headers; values that are not printable ASCII are dropped
    (the frame codec refuses them, and such headers would be a bug in the app anyway)."""
    out = []
    for name, value in raw:
        key = bytes(name).decode("latin-1")
        text = bytes(value).decode("latin-1")
        if text.isascii() and text.isprintable() and key.isascii():
            out.append((key, text))
    return tuple(out)
