"""The registrar worker processes of the SIP core (see :mod:`pbx.registrar_workers`): how
the core starts one, and what runs in it (``edgepbx part registrar-worker``).

A worker reads the extension directory from the data folder's SQLite files (read only; the
core tells it when to read again) and the nonce key from ``nonce.key``, so a challenge one
process issued verifies in any other. It writes nothing: its binding changes go to the core.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Literal

from appliance.service.supervisor import die_with_parent
from pbx.registrar_workers import SpawnWorker
from pbx.settings import SipSettings

__all__ = ["WORKER_ENV", "registrar_worker_main", "worker_spawner"]

WORKER_ENV = "EDGEPBX_REGISTRAR_WORKER"
# The core's own line to its supervisor: a worker is the core's child and reports nothing.
_CORE_ONLY = frozenset({"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"})


def worker_spawner(
    settings: SipSettings, data: Path, *, log_format: Literal["kv", "json"] = "kv"
) -> SpawnWorker:
    """How the core starts worker ``index``: this Python, ``appliance.cli part
    registrar-worker``, the two descriptors inherited, the core's settings in the
    environment (with the rest of the core's environment: its run options, logging)."""

    async def spawn(
        index: int, count: int, udp_fd: int, channel: socket.socket
    ) -> asyncio.subprocess.Process:
        spec = {
            "index": index,
            "count": count,
            "udp_fd": udp_fd,
            "channel_fd": channel.fileno(),
            "data": str(data),
            "settings": settings.model_dump(mode="json"),
            "log_format": log_format,
        }
        env = {k: v for k, v in os.environ.items() if k not in _CORE_ONLY}
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "appliance.cli",
            "part",
            "registrar-worker",
            env=env | {WORKER_ENV: json.dumps(spec)},
            pass_fds=(udp_fd, channel.fileno()),
            preexec_fn=die_with_parent,
        )

    return spawn


async def registrar_worker_main() -> int:
    from appliance.logs import setup_logging  # noqa: PLC0415
    from appliance.store.database import open_database  # noqa: PLC0415
    from appliance.store.schema import LOCAL, METADATA  # noqa: PLC0415
    from appliance.store.sqlite import SqliteDirectory  # noqa: PLC0415
    from appliance.store.store import LOCAL_DB, METADATA_DB  # noqa: PLC0415
    from pbx.registrar_workers import RegistrarWorker  # noqa: PLC0415
    from pbx.runtime import tune_gc  # noqa: PLC0415
    from pbx.service import build_registrar  # noqa: PLC0415
    from pbx.sip.uas import Capabilities  # noqa: PLC0415

    spec = json.loads(os.environ[WORKER_ENV])
    setup_logging(style=spec["log_format"])
    settings = SipSettings.model_validate(spec["settings"])
    data = Path(spec["data"])
    metadata = open_database(data / METADATA_DB, METADATA)
    local = open_database(data / LOCAL_DB, LOCAL, private=True)
    try:
        directory = SqliteDirectory(metadata, local)
        key = (data / "nonce.key").read_bytes()  # the core made it; a worker only reads
        worker = RegistrarWorker(
            socket.socket(fileno=spec["channel_fd"]),
            socket.socket(fileno=spec["udp_fd"]),
            lambda bindings: build_registrar(settings, directory, bindings, key),
            directory,
            Capabilities(user_agent=settings.user_agent),
            timers=settings.timers,
        )
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        tune_gc()
        with contextlib.suppress(asyncio.CancelledError):  # SIGTERM: the core stops us
            await worker.run()
    finally:
        metadata.close()
        local.close()
    return 0
