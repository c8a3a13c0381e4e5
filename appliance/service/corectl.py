"""The SIP core's control socket: how the manager process (API) sees and ends live calls
in the core process.

Everything persistent is shared through SQLite; only the live calls need this. One request
per connection on a unix stream socket (mode 0600 in the runtime folder), one JSON line each
way::

    {"op": "calls"}                      -> {"calls": [{call_id, caller, ...}, ...]}
    {"op": "hangup", "call_id": "..."}   -> {"ok": true | false}

:class:`RemoteCalls` is the API's ``CallControl`` over it. ``active()`` is synchronous in
that protocol, so it answers from a snapshot refreshed every ``interval`` seconds (and right
after a hangup); a stale list is at most that old.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from pbx.b2bua import CallManager

__all__ = ["CoreControlServer", "RemoteCalls", "call_views"]

log = logging.getLogger(__name__)

MAX_LINE = 1 << 20


def call_views(manager: CallManager) -> list[dict[str, Any]]:
    """The live calls as plain values (the fields of the API's ActiveCallView)."""
    return [
        {
            "call_id": c.id,
            "caller": c.caller,
            "caller_name": c.caller_name,
            "dialed": c.dialed,
            "callee": c.callee,
            "state": "answered" if c.answer_time is not None else "ringing",
            "start_time": c.start,
            "answer_time": c.answer_time,
            "codec": c.codec,
        }
        for c in list(manager.calls.values())
        if not c.ended
    ]


class CoreControlServer:
    def __init__(self, manager: CallManager, path: Path) -> None:
        self.manager, self.path = manager, path
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self.path.unlink(missing_ok=True)
        self._server = await asyncio.start_unix_server(self._handle, str(self.path))
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.path.unlink(missing_ok=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            answer = await self._answer(line)
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            op = request["op"]
        except (ValueError, KeyError, TypeError):
            return {"error": "a request is one JSON object with an 'op' field"}
        if op == "calls":
            return {"calls": call_views(self.manager)}
        if op == "hangup" and isinstance(request.get("call_id"), str):
            return {"ok": await self.manager.hangup(request["call_id"])}
        return {"error": f"unknown op {str(op)[:40]!r} or missing field 'call_id'"}


async def ask(path: Path, request: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_unix_connection(str(path), limit=MAX_LINE)
        try:
            writer.write(json.dumps(request).encode() + b"\n")
            await writer.drain()
            answer: dict[str, Any] = json.loads(await reader.readline())
        finally:
            writer.close()
    return answer


class RemoteCalls:
    """The API's ``CallControl`` for a SIP core in another process (a part of the manager:
    ``start``/``stop`` run the snapshot refresher)."""

    name = "calls"

    def __init__(self, path: Path, interval: float = 0.5) -> None:
        self.path, self.interval = path, interval
        self._snapshot: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None

    def active(self) -> list[Any]:
        from appliance.api.context import ActiveCallView  # noqa: PLC0415 (the API's type)

        return [ActiveCallView(**view) for view in self._snapshot]

    async def hangup(self, call_id: str) -> bool:
        answer = await ask(self.path, {"op": "hangup", "call_id": call_id})
        await self.refresh()
        return bool(answer.get("ok"))

    async def refresh(self) -> None:
        try:
            answer = await ask(self.path, {"op": "calls"})
        except (OSError, TimeoutError, ValueError) as exc:
            # The core is restarting: no live calls to show (they dropped with it).
            log.debug("core control unreachable: %s", exc)
            self._snapshot = []
            return
        self._snapshot = list(answer.get("calls", []))

    async def _run(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self.interval)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="calls-mirror")

    def health(self) -> str | None:
        return None if self._task is not None and not self._task.done() else "stopped"

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
