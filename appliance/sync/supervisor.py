"""The sync service: runs ``litestream replicate`` for ``metadata.db`` as a child process,
restarts it with backoff when it dies, reads its position from the control socket, and
keeps a :class:`SyncStatus` (with alarms) for the API, the console and
``edgepbx sync status`` (through ``<data>/sync/status.json``).

Offline first: nothing here is on the path of a call or a write. The box writes
``metadata.db`` as always; Litestream reads the WAL on its own and catches up when the
target is back. The service only starts processes and reads sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from appliance.alarms import Alarm
from appliance.files import write_private
from appliance.service.supervisor import die_with_parent
from appliance.sync.config import (
    SHUTDOWN_SYNC_SECONDS,
    RuntimePaths,
    describe_target,
    litestream_env,
    render_config,
    render_text,
    secret_values,
)
from appliance.sync.litestream import (
    ControlClient,
    ControlError,
    LitestreamMissing,
    find_litestream,
    parse_log_line,
)
from appliance.sync.settings import SyncSettings
from appliance.sync.status import Backoff, SyncMonitor, SyncState, SyncStatus

__all__ = ["SyncError", "SyncService", "read_status"]

log = logging.getLogger("edgepbx.sync")
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes with the terminating NUL; keep a margin
_ERROR_MAX = 500  # characters of a Litestream error kept for the status
_READY_SECONDS = 5.0  # how long start() waits for the control socket of a new Litestream


class SyncError(Exception):
    """A forced sync did not complete (Litestream not running, or the target unreachable)."""


class SyncService:
    """``start()`` returns once Litestream is spawned (never waits for the target);
    ``stop()`` asks it to ship what is left (for a few seconds) and ends it."""

    def __init__(
        self,
        settings: SyncSettings,
        data_dir: Path,
        *,
        clock: Callable[[], float] = time.time,
        environ: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._socket_dir: Path | None = None
        self.paths = RuntimePaths.for_data(data_dir)
        self.control = ControlClient(self.paths.socket)
        self._environ = dict(os.environ if environ is None else environ)
        self._secrets = secret_values(settings)
        self.monitor = SyncMonitor(
            describe_target(settings.target, self.paths.data_dir),
            behind_after=settings.behind_after,
            alarm_after=settings.alarm_after,
            backoff=Backoff(settings.restart_min, settings.restart_max, settings.stable_after),
            enabled=settings.enabled,
        )
        self._process: asyncio.subprocess.Process | None = None
        self._stopping = asyncio.Event()
        self._spawned = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # ---------------------------------------------------------------- public

    @property
    def pid(self) -> int | None:
        """The running Litestream's pid (tests kill it to prove the restart)."""
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    def status(self) -> SyncStatus:
        return self.monitor.status(self.clock())

    def alarms(self) -> tuple[Alarm, ...]:
        return self.monitor.alarms(self.clock())

    async def start(self) -> None:
        if not self.settings.enabled or self._tasks:
            return
        try:
            binary = find_litestream(self.settings.litestream)
        except LitestreamMissing as exc:
            # The box runs without its cloud copy rather than not at all: alarm, no process.
            log.error("cloud sync cannot start: %s", exc)
            now = self.clock()
            self.monitor.started(now)
            self.monitor.error(str(exc))
            self.monitor.exited(now, None)
            return
        if len(str(self.paths.socket)) > _SOCKET_PATH_MAX:
            self._socket_dir = Path(tempfile.mkdtemp(prefix="edgepbx-sync-"))
            self.paths = RuntimePaths.for_data(self.paths.data_dir, self._socket_dir)
            self.control = ControlClient(self.paths.socket)
        self.paths.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.paths.folder, 0o700)
        write_private(self.paths.config, render_text(render_config(self.settings, self.paths)))
        self._stopping.clear()
        self._tasks = [
            asyncio.create_task(self._supervise(binary), name="sync-supervise"),
            asyncio.create_task(self._poll(), name="sync-poll"),
        ]
        await self._spawned.wait()
        await self._control_ready(_READY_SECONDS)
        log.info("cloud sync started: %s", self.monitor.target)

    async def stop(self) -> None:
        if not self._tasks:
            self.monitor.stopped()
            return
        self._stopping.set()
        await self._terminate()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self.monitor.stopped()
        self._write_status()
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None
            self.paths = RuntimePaths.for_data(self.paths.data_dir)
            self.control = ControlClient(self.paths.socket)

    async def sync_now(self, timeout: float = 30.0) -> tuple[int, int]:
        """Force a sync and wait until the target has everything committed so far;
        returns (local txid, replicated txid)."""
        if self.pid is None or not await self._control_ready(min(timeout, _READY_SECONDS)):
            raise SyncError("litestream is not running")
        try:
            txid, replicated = await self.control.sync(self.paths.database, timeout=timeout)
        except ControlError as exc:
            raise SyncError(str(exc)) from exc
        self.monitor.synced(self.clock(), txid, replicated)
        return txid, replicated

    async def _control_ready(self, timeout: float) -> bool:
        """Wait until Litestream's control socket answers (local: milliseconds; the target
        is not involved). False if it did not within ``timeout``."""
        deadline = self.clock() + timeout
        while self.pid is not None:
            try:
                await self.control.request("GET", "/info", timeout=1.0)
            except ControlError:
                if self.clock() > deadline:
                    return False
                await asyncio.sleep(0.02)
                continue
            return True
        return False

    # ---------------------------------------------------------------- tasks

    async def _supervise(self, binary: Path) -> None:
        env = litestream_env(self.settings, self._environ)
        args = [str(binary), "replicate", "-config", str(self.paths.config), "-no-expand-env"]
        while not self._stopping.is_set():
            try:
                process = await asyncio.create_subprocess_exec(
                    *args,
                    env=env,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT,
                    preexec_fn=die_with_parent,
                    # Its own session: a Ctrl-C on the terminal reaches edgepbx only, which
                    # stops Litestream in order (after the store's last commits).
                    start_new_session=True,
                )
            except OSError as exc:
                self.monitor.error(f"cannot start litestream: {exc.strerror}")
                delay = self.monitor.exited(self.clock(), None)
                self._spawned.set()
                await self._sleep(delay)
                continue
            self._process = process
            self.monitor.started(self.clock())
            self._spawned.set()
            assert process.stdout is not None
            reader = asyncio.create_task(self._read_log(process.stdout))
            returncode = await process.wait()
            await asyncio.gather(reader, return_exceptions=True)
            if self._stopping.is_set():
                break
            delay = self.monitor.exited(self.clock(), returncode)
            log.warning(
                "litestream exited (code %s); restarting in %.1f s: %s",
                returncode,
                delay,
                self.monitor.last_error,
            )
            self._write_status()
            await self._sleep(delay)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _read_log(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            text = self._scrub(line.decode(errors="replace"))
            entry = parse_log_line(text)
            if entry.level == "ERROR":
                self.monitor.error(entry.summary[:_ERROR_MAX])
                log.warning("litestream: %s", entry.text)
            elif entry.level == "WARN":
                log.info("litestream: %s", entry.text)
            else:
                log.debug("litestream: %s", entry.text)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    async def _poll(self) -> None:
        while not self._stopping.is_set():
            await self._sleep(self.settings.status_interval)
            if self.pid is not None:
                await self._read_position()
            self._write_status()

    async def _read_position(self) -> None:
        try:
            databases = await self.control.databases()
            txid = await self.control.txid(self.paths.database)
        except (ControlError, KeyError, ValueError) as exc:
            log.debug("litestream position not readable: %s", exc)  # e.g. still starting
            return
        mine = [d for d in databases if Path(d.path) == self.paths.database]
        last_sync = mine[0].last_sync_at if mine else None
        self.monitor.observed(self.clock(), last_sync, txid)

    def _write_status(self) -> None:
        try:
            write_private(self.paths.status, json.dumps(self.status().to_json()) + "\n")
        except OSError as exc:
            log.debug("cannot write %s: %s", self.paths.status, exc)

    async def _terminate(self) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), SHUTDOWN_SYNC_SECONDS + 2)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


def read_status(settings: SyncSettings, data_dir: Path, now: float) -> SyncStatus:
    """The status a running box last wrote (for ``edgepbx sync status`` in another
    process); a file older than a few status intervals means the box is not running."""
    paths = RuntimePaths.for_data(data_dir)
    target = describe_target(settings.target, paths.data_dir)
    if not settings.enabled:
        return SyncStatus(state=SyncState.DISABLED, target=target, updated_at=now)
    try:
        status = SyncStatus.from_json(json.loads(paths.status.read_text()))
    except (OSError, ValueError, KeyError):
        return SyncStatus(state=SyncState.STOPPED, target=target, updated_at=now)
    if now - status.updated_at > max(5.0, 5 * settings.status_interval):
        return SyncStatus(
            state=SyncState.STOPPED,
            target=target,
            last_sync_at=status.last_sync_at,
            local_txid=status.local_txid,
            replicated_txid=status.replicated_txid,
            restarts=status.restarts,
            last_error=status.last_error,
            updated_at=now,
        )
    return status
