"""The SIP core's control socket: how the manager process (API) sees and ends live calls
in the core process.

Everything persistent is shared through SQLite; only the live calls need this. One request
per connection on a unix stream socket (mode 0600 in the runtime folder), one JSON line each
way::

    {"op": "calls"}                      -> {"calls": [{call_id, caller, ...}, ...]}
    {"op": "hangup", "call_id": "..."}   -> {"ok": true | false}
    {"op": "directory", "deleted": [...]} -> {"ok": true}
    {"op": "bans"}                       -> {"bans": [{address, seconds_left}, ...]}
    {"op": "unban", "address": "..."}    -> {"ok": true | false}

``directory``: the core keeps an in-memory copy of the extension directory (every REGISTER
and INVITE reads it), kept current by writes through its own store object. The API writes
from the manager process, so its directory (:class:`NotifyingDirectory`) tells the core
after every write, before the API answers: the core drops its copy, and forgets the
in-memory registrations of deleted extensions (their rows went with SQLite's cascade).

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
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.store import SqliteStore
from appliance.store.sqlite import SqliteDirectory
from pbx.b2bua import CallManager
from pbx.guard import Guard
from pbx.store import Extension

__all__ = [
    "CoreControlServer",
    "NotifyingDirectory",
    "RemoteCalls",
    "RemoteGuard",
    "call_views",
    "notifying_directory",
    "tell_core",
]

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
    def __init__(
        self,
        manager: CallManager,
        path: Path,
        store: SqliteStore | None = None,
        *,
        on_directory: Callable[[list[str]], None] | None = None,
        guard: Guard | None = None,
    ) -> None:
        self.manager, self.path, self.store = manager, path, store
        self.on_directory = on_directory  # also tells the registrar workers
        self.guard = guard
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
        if op == "directory" and self.store is not None:
            directory = self.store.directory
            directory.invalidate()
            on_delete = getattr(directory, "on_delete", None)
            deleted = [n for n in request.get("deleted", []) if isinstance(n, str)]
            for number in deleted:
                if callable(on_delete):
                    on_delete(number)
            if self.on_directory is not None:
                self.on_directory(deleted)
            return {"ok": True}
        if op == "bans" and self.guard is not None:
            banned = self.guard.banned(time.monotonic())
            return {"bans": [{"address": a, "seconds_left": round(t, 1)} for a, t in banned]}
        if op == "unban" and self.guard is not None and isinstance(request.get("address"), str):
            return {"ok": self.guard.unban(request["address"])}
        return {"error": f"unknown op {str(op)[:40]!r} or a missing field"}


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


class RemoteGuard:
    """The API's ``GuardControl`` for a SIP core in another process."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def bans(self) -> list[Any]:
        from appliance.api.context import BanView  # noqa: PLC0415 (the API's type)

        answer = await ask(self.path, {"op": "bans"})
        return [BanView(**ban) for ban in answer.get("bans", [])]

    async def unban(self, address: str) -> bool:
        answer = await ask(self.path, {"op": "unban", "address": address})
        return bool(answer.get("ok"))


def tell_core(path: Path, request: dict[str, Any], timeout: float = 2.0) -> dict[str, Any] | None:
    """The same request from synchronous code (API routes run in a thread pool); None when
    the core is not there (restarting: it loads a fresh copy when it starts)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                piece = sock.recv(65536)
                if not piece:
                    break
                data += piece
        answer: dict[str, Any] = json.loads(data)
    except (OSError, ValueError):
        log.warning("core control unreachable: path=%s op=%s", path, request.get("op"))
        return None
    return answer


class NotifyingDirectory(SqliteDirectory):
    """The manager's directory: every write is followed by a ``directory`` request to the
    core, so the core's in-memory copy never serves a stale extension or secret."""

    core_socket: Path | None = None

    def _tell(self, deleted: list[str] | None = None) -> None:
        if self.core_socket is not None:
            tell_core(self.core_socket, {"op": "directory", "deleted": deleted or []})

    def create(self, extension: Extension) -> Extension:
        created = super().create(extension)
        self._tell()
        return created

    def update(self, extension: Extension) -> Extension:
        updated = super().update(extension)
        self._tell()
        return updated

    def delete(self, number: str) -> bool:
        gone = super().delete(number)
        self._tell([number])
        return gone

    def set_password(self, number: str, password: str, realm: str) -> None:
        super().set_password(number, password, realm)
        self._tell()

    def invalidate(self) -> None:
        super().invalidate()
        self._tell()


def notifying_directory(store: SqliteStore, core_socket: Path) -> NotifyingDirectory:
    """Put a :class:`NotifyingDirectory` in ``store`` (the manager's own store object)."""
    directory = NotifyingDirectory(store.metadata, store.local)
    directory.core_socket = core_socket
    store.directory = directory
    return directory
