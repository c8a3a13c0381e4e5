"""Parts and their supervisor: start in order, watch, restart a failed part with backoff,
stop in reverse order.

A *part* is anything with ``name``, ``async start()`` (returns once it serves; raises if it
cannot), ``async stop()`` (idempotent: also cleans up after a crash) and ``health()``
(``None`` when well, else why not; cheap, called every ``check_interval``). Two kinds are
here: :class:`ChildPart`, a child process that speaks the sd_notify protocol to us (ready,
watchdog), and :class:`HookPart`, which adapts a service object of another package (the sync
supervisor, device discovery) that has ``start``/``stop`` and maybe ``status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import enum
import logging
import os
import random
import signal
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from appliance.backoff import backoff_delay
from appliance.service.sdnotify import bind_listener, parse_notify

__all__ = ["ChildPart", "HookPart", "Part", "PartState", "PartStatus", "StartFailed", "Supervisor"]

log = logging.getLogger(__name__)


class Part(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def health(self) -> str | None: ...


class StartFailed(Exception):
    """A part could not start (at boot this stops the box: systemd restarts it)."""


class PartState(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    FAILED = "failed"  # waiting for its restart
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class PartStatus:
    name: str
    state: PartState
    restarts: int
    detail: str


@dataclass
class _Slot:
    part: Part
    state: PartState = PartState.STOPPED
    restarts: int = 0  # since the last stable period
    total_restarts: int = 0
    detail: str = ""
    retry_at: float = 0.0
    running_since: float = 0.0


class Supervisor:
    """Runs parts. ``start()`` brings them up in order (a failure there is fatal), ``watch()``
    restarts failed ones until cancelled, ``stop()`` stops them in reverse order.

    Backoff: the n-th restart in a row waits ``backoff_delay(n)`` (exponential with jitter,
    capped at ``backoff_max``); a part running ``stable_after`` seconds starts over at 0.
    """

    def __init__(
        self,
        parts: Sequence[Part],
        *,
        check_interval: float = 0.5,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        stable_after: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        on_change: Callable[[PartStatus], None] | None = None,
    ) -> None:
        self._slots = [_Slot(p) for p in parts]
        self.check_interval = check_interval
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
        self.stable_after = stable_after
        self._clock = clock
        self._rng = rng or random.Random()
        self._on_change = on_change
        self._stopping = False

    def status(self) -> list[PartStatus]:
        return [PartStatus(s.part.name, s.state, s.total_restarts, s.detail) for s in self._slots]

    def part(self, name: str) -> Part:
        return next(s.part for s in self._slots if s.part.name == name)

    def _set(self, slot: _Slot, state: PartState, detail: str = "") -> None:
        slot.state, slot.detail = state, detail
        if self._on_change is not None:
            self._on_change(PartStatus(slot.part.name, state, slot.total_restarts, detail))

    async def start(self) -> None:
        for slot in self._slots:
            self._set(slot, PartState.STARTING)
            try:
                await slot.part.start()
            except Exception as exc:
                self._set(slot, PartState.FAILED, str(exc))
                raise StartFailed(f"{slot.part.name}: {exc}") from exc
            slot.running_since = self._clock()
            self._set(slot, PartState.RUNNING)
            log.info("part started: part=%s", slot.part.name)

    async def watch(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.check_interval)
            for slot in self._slots:
                if self._stopping:
                    return
                await self._check(slot)

    async def _check(self, slot: _Slot) -> None:
        now = self._clock()
        if slot.state is PartState.RUNNING:
            problem = slot.part.health()
            if problem is None:
                if slot.restarts and now - slot.running_since >= self.stable_after:
                    slot.restarts = 0
                return
            delay = backoff_delay(
                slot.restarts, self.backoff_initial, self.backoff_max, self._rng.random()
            )
            slot.retry_at = now + delay
            log.warning(
                "part failed: part=%s problem=%r restart_in=%.2f", slot.part.name, problem, delay
            )
            self._set(slot, PartState.FAILED, problem)
            with contextlib.suppress(Exception):
                await slot.part.stop()
        elif slot.state is PartState.FAILED and now >= slot.retry_at:
            slot.restarts += 1
            slot.total_restarts += 1
            self._set(slot, PartState.STARTING, slot.detail)
            try:
                await slot.part.start()
            except Exception as exc:
                delay = backoff_delay(
                    slot.restarts, self.backoff_initial, self.backoff_max, self._rng.random()
                )
                slot.retry_at = self._clock() + delay
                log.warning(
                    "part restart failed: part=%s error=%r retry_in=%.2f",
                    slot.part.name,
                    str(exc),
                    delay,
                )
                self._set(slot, PartState.FAILED, str(exc))
                with contextlib.suppress(Exception):
                    await slot.part.stop()
                return
            slot.running_since = self._clock()
            log.info("part restarted: part=%s restarts=%d", slot.part.name, slot.total_restarts)
            self._set(slot, PartState.RUNNING)

    async def stop(self) -> None:
        self._stopping = True
        for slot in reversed(self._slots):
            if slot.state is PartState.STOPPED:
                continue
            try:
                await slot.part.stop()
            except Exception:
                log.exception("part did not stop cleanly: part=%s", slot.part.name)
            self._set(slot, PartState.STOPPED)


# ------------------------------------------------------------------------------ hook part


class HookPart:
    """A part made of another package's service object (``start``/``stop``; ``status()``
    optional). Such services heal themselves (the sync service restarts Litestream), so the
    part reports ill only when ``unhealthy`` says so."""

    def __init__(
        self,
        name: str,
        service: Any,
        unhealthy: Callable[[Any], str | None] | None = None,
    ) -> None:
        self.name = name
        self.service = service
        self._unhealthy = unhealthy

    async def start(self) -> None:
        await self.service.start()

    async def stop(self) -> None:
        await self.service.stop()

    def health(self) -> str | None:
        return None if self._unhealthy is None else self._unhealthy(self.service)


# ------------------------------------------------------------------------------ child part

_PR_SET_PDEATHSIG = 1


def _resolve_prctl() -> Callable[..., int] | None:
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


# Resolved here, not in the child: after fork only the calling thread exists, and a dlopen
# there could wait forever on a lock another thread held at the fork.
_PRCTL = _resolve_prctl()


def die_with_parent() -> None:
    """``preexec_fn`` of every child of ours: SIGTERM when the parent dies (e.g. SIGKILL
    outside systemd), so no orphan keeps the SIP ports or fights the next box over the
    database. (Linux ties this to the thread that forked: the event loop's thread, which
    lives as long as the parent.)"""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ChildPart:
    """A child process supervised through the sd_notify protocol: it gets ``NOTIFY_SOCKET``
    (a socket of ours, one per child) and ``WATCHDOG_USEC``; it is up when it sends
    ``READY=1`` and alive while its ``WATCHDOG=1`` pings keep coming. Other ``KEY=VALUE``
    lines it sends (e.g. ``EDGEPBX_SIP=...``) are kept in :attr:`reported`."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        runtime_dir: Path,
        *,
        env: Mapping[str, str] | None = None,
        watchdog: float = 10.0,
        start_timeout: float = 60.0,
        stop_timeout: float = 20.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.runtime_dir = runtime_dir
        self.env = dict(os.environ if env is None else env)
        self.watchdog = watchdog
        self.start_timeout, self.stop_timeout = start_timeout, stop_timeout
        self.reported: dict[str, str] = {}
        self.process: asyncio.subprocess.Process | None = None
        self._sock: socket.socket | None = None
        self._ready = asyncio.Event()
        self._last_ping = 0.0

    @property
    def pid(self) -> int | None:
        p = self.process
        return p.pid if p is not None and p.returncode is None else None

    def _on_datagram(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            fields = parse_notify(data)
            if fields.get("READY") == "1":
                self._ready.set()
            if fields.get("WATCHDOG") == "1" or fields.get("READY") == "1":
                self._last_ping = time.monotonic()
            self.reported.update(fields)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        path = self.runtime_dir / f"{self.name}.notify"
        self._sock = bind_listener(path)
        loop.add_reader(self._sock.fileno(), self._on_datagram)
        self._ready.clear()
        self.reported = {}
        env = self.env | {
            "NOTIFY_SOCKET": str(path),
            "WATCHDOG_USEC": str(int(self.watchdog * 1_000_000)),
        }
        env.pop("WATCHDOG_PID", None)
        # Its own session: a terminal's Ctrl-C (or a signal to our process group) reaches
        # only the supervisor, which stops the children in order.
        self.process = await asyncio.create_subprocess_exec(
            *self.argv, env=env, preexec_fn=die_with_parent, start_new_session=True
        )
        exited = asyncio.ensure_future(self.process.wait())
        ready = asyncio.ensure_future(self._ready.wait())
        try:
            done, _ = await asyncio.wait(
                {exited, ready}, timeout=self.start_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in (exited, ready):
                if not waiter.done():
                    waiter.cancel()
        if ready not in done:
            code = self.process.returncode
            await self.stop()
            if code is not None:
                why = self.reported.get("STATUS", "")
                raise StartFailed(
                    f"{self.name} exited with code {code} before it was ready"
                    + (f" ({why})" if why else "")
                )
            raise StartFailed(f"{self.name} not ready after {self.start_timeout:.0f} s")
        self._last_ping = time.monotonic()

    def health(self) -> str | None:
        if self.process is None:
            return "not started"
        if self.process.returncode is not None:
            return f"exited with code {self.process.returncode}"
        silent = time.monotonic() - self._last_ping
        if silent > self.watchdog:
            return f"no watchdog ping for {silent:.1f} s (event loop stuck?)"
        return None

    async def stop(self) -> None:
        process = self.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), self.stop_timeout)
            except TimeoutError:
                log.warning("child did not stop, killing: part=%s pid=%d", self.name, process.pid)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if process is not None and process.returncode is None:
            await process.wait()
        if self._sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
