"""``edgepbx run``: the box's one service command (the composition root of every process).

Process layout (the decision DESIGN.md asked for)
-------------------------------------------------
``edgepbx run`` is a small supervisor process with two children:

* **core**: the SIP/RTP core (transports, registrar, calls, media relay, call records);
* **manager**: the management API (uvicorn on the LAN listener), the cloud link that runs
  the cabinet's requests through the same ASGI app, and the embedded reference cabinet
  of ``make run``.

Why two processes and not one event loop: calls are real time and the API is not. On one
loop, any API handler that holds the loop (a slow query serialized in the loop thread, a
blocking call in an ``async def``, a bug) freezes SIP retransmissions and the RTP relay for
as long: the call drops audio although nothing is wrong with telephony. An API that leaks
memory or crashes the interpreter would take the calls with it. In its own process the core
keeps calls up whatever the manager does; ``tests/daemon/test_daemon.py`` kills the manager
with SIGKILL in the middle of a call and checks that the call carries on and ends normally,
and ``tests/perf/test_bench_isolation.py`` measures the SIP answer time while an API handler
blocks its loop for 300 ms, ten times (OPTIONS probed every 10 ms, 2-core build machine):
on one loop the worst answer took 303 ms and 10 probes waited over 100 ms (SIP stood still
for every blocked request); in two processes the worst took 18 ms, none over 100 ms.
What it costs: everything persistent is shared through SQLite (WAL, busy_timeout), which is
multi-process by design, but two things live in the core's memory: the live calls and the
core's copy of the extension directory. The core's control socket
(:mod:`appliance.service.corectl`) serves the first to the API (list, hang up) and takes
the API's directory writes for the second, before the API answers. The supervisor is kept
small so it has little that can fail.

Both children speak the sd_notify protocol to the supervisor (READY=1, WATCHDOG=1): a child
whose loop stalls past its watchdog, or that exits, is restarted with backoff. The
supervisor speaks the same protocol to systemd (``Type=notify``, ``WatchdogSec``).

Stopping (SIGTERM, or SIGINT from a terminal): ``STOPPING=1``; the manager stops first (no new
API work), then the core hangs up calls in progress with BYE and commits its queued database
writes (``SqliteStore.close``); then the sync service (if present) ships the last commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import secrets
import signal
import sys
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

from appliance.files import secret_file, write_private
from appliance.logs import register_secret, setup_logging
from appliance.service.sdnotify import Notifier, watchdog_interval
from appliance.service.supervisor import (
    ChildPart,
    HookPart,
    Part,
    PartStatus,
    StartFailed,
    Supervisor,
)
from appliance.sync import SyncService, load_settings

__all__ = ["RunOptions", "run_box", "run_part"]

log = logging.getLogger("edgepbx.daemon")

DEMO_EXTENSIONS = (("101", "Alice (demo)"), ("102", "Bob (demo)"))
OPTIONS_ENV = "EDGEPBX_RUN_OPTIONS"


@dataclass(frozen=True)
class RunOptions:
    """What ``edgepbx run`` was told; children receive it as JSON in the environment (not
    on the command line, where ``ps`` would show a pairing code)."""

    data: str = "var"
    sip_host: str = "127.0.0.1"
    sip_port: int = 5060
    rtp_ports: tuple[int, int] | None = None  # None: the SIP settings' default range
    api_host: str = "127.0.0.1"
    api_port: int = 8780
    cabinet_url: str | None = None  # None: the embedded cabinet on loopback
    cabinet_host: str = "127.0.0.1"
    cabinet_port: int = 8782  # the embedded cabinet's link port
    cabinet_operator_port: int = 8781  # its operator HTTP front
    pairing_code: str | None = None
    ca_file: str | None = None
    log_format: Literal["kv", "json"] = "kv"
    child_watchdog: float = 10.0
    sync: bool = True
    runtime_dir: str = ""  # set by the supervisor: notify sockets, the core's control socket
    record: Literal["none", "inbound", "outbound", "both"] = "none"  # box-wide recording
    recipients: tuple[str, ...] = ()  # age recipients besides the keyring's site key
    journal: str | None = None  # the recordings' key journal (RAM folder); None: default
    retention_days: float | None = None  # delete recordings older than this (None: keep)
    retention_by_extension: dict[str, float] = field(default_factory=dict)  # per extension

    @property
    def data_dir(self) -> Path:
        return Path(self.data)

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> RunOptions:
        raw = json.loads(os.environ[OPTIONS_ENV])
        if raw.get("rtp_ports") is not None:
            raw["rtp_ports"] = tuple(raw["rtp_ports"])
        raw["recipients"] = tuple(raw.get("recipients", ()))
        return cls(**raw)

    def sip_settings(self) -> Any:
        """The SIP core's settings (refused with the field named when invalid)."""
        from pbx.settings import SipSettings  # noqa: PLC0415

        host = self.sip_host
        if self.rtp_ports is None:
            return SipSettings(host=host, port=self.sip_port, media_host=host)
        low, high = self.rtp_ports
        return SipSettings(
            host=host, port=self.sip_port, media_host=host, rtp_port_min=low, rtp_port_max=high
        )


# ------------------------------------------------------------------------------ helpers


def prepare_data(data: Path, realm: str) -> list[tuple[str, str]]:
    """Create and migrate the data folder, the nonce key and the demo extensions (once);
    returns the demo (extension, password) pairs, kept in a private file so ``make run``
    can show them again (the store keeps only digests)."""
    from appliance.store import open_store  # noqa: PLC0415  (the supervisor stays light)
    from pbx.store import Extension  # noqa: PLC0415

    data.mkdir(parents=True, exist_ok=True)
    secret_file(data / "nonce.key", secrets.token_bytes(32))
    store = open_store(data)
    try:
        lines = []
        for number, name in DEMO_EXTENSIONS:
            if store.directory.get(number) is None:
                store.directory.create(Extension(number=number, display_name=name))
                password = secrets.token_urlsafe(9)
                store.directory.set_password(number, password, realm)
                lines.append(f"{number} {password}")
    finally:
        store.close()
    credentials = data / "demo-credentials.txt"
    if lines:
        write_private(credentials, "\n".join(lines) + "\n")
    demo = []
    if credentials.exists():
        for line in credentials.read_text().splitlines():
            number, _, password = line.partition(" ")
            register_secret(password)
            demo.append((number, password))
    return demo


def _stop_on_signals(stop: asyncio.Event, signals: tuple[signal.Signals, ...]) -> None:
    loop = asyncio.get_running_loop()
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)


async def _watchdog(notifier: Notifier, interval: float | None) -> None:
    if interval is None:
        return
    while True:
        notifier.watchdog()
        await asyncio.sleep(interval)


def _sync_part(data: Path) -> Part:
    """The cloud sync supervisor. It restarts Litestream by itself, so the part is never ill."""
    return HookPart("sync", SyncService(load_settings(data), data))


def _optional_discovery() -> Part | None:
    """Device discovery (pyudev, gateways): the hook for the hardware package. Any object
    with ``async start()``/``stop()`` fits :class:`HookPart`; none exists yet."""
    try:
        hardware: Any = importlib.import_module("appliance.hardware")
    except ImportError:
        return None
    return HookPart("discovery", hardware.DiscoveryService())


# ------------------------------------------------------------------------------ supervisor


async def _supervise(options: RunOptions) -> int:
    from pbx.settings import SipSettings  # noqa: PLC0415

    data = options.data_dir
    try:
        options.sip_settings()  # refused here, with the field named, not in a child
    except ValueError as exc:  # pydantic's ValidationError
        print(f"edgepbx: invalid settings: {exc}", file=sys.stderr, flush=True)
        return 2
    demo = prepare_data(data, SipSettings().domain)
    runtime = Path(os.environ.get("RUNTIME_DIRECTORY") or data / "run")
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    options = replace(options, runtime_dir=str(runtime))
    env = dict(os.environ) | {OPTIONS_ENV: options.to_env()}
    env.pop("NOTIFY_SOCKET", None)
    child = [sys.executable, "-m", "appliance.cli", "part"]
    core = ChildPart("core", [*child, "core"], runtime, env=env, watchdog=options.child_watchdog)
    manager = ChildPart(
        "manager", [*child, "manager"], runtime, env=env, watchdog=options.child_watchdog
    )
    parts: list[Part] = []
    if options.sync:
        parts.append(_sync_part(data))
    parts += [core, manager]
    discovery = _optional_discovery()
    if discovery is not None:
        parts.append(discovery)

    notifier = Notifier.from_env()

    def changed(status: PartStatus) -> None:
        if status.state.value != "running":
            notifier.status(f"{status.name} {status.state.value}: {status.detail}"[:200])

    supervisor = Supervisor(parts, on_change=changed)
    stop = asyncio.Event()
    _stop_on_signals(stop, (signal.SIGTERM, signal.SIGINT))
    try:
        await supervisor.start()
    except StartFailed as exc:
        log.error("cannot start: %s", exc)
        print(f"edgepbx: cannot start: {exc}", file=sys.stderr, flush=True)
        notifier.stopping(f"failed: {exc}")
        await supervisor.stop()
        return 1
    sip = core.reported.get("EDGEPBX_SIP", "")
    api = manager.reported.get("EDGEPBX_API", "")
    summary = f"running: sip {sip}, api {api}"
    print(_banner(options, demo, core.reported, manager.reported), flush=True)
    # Besides READY and STATUS, where things listen (systemd ignores unknown variables;
    # tests and tools read them).
    where = {
        k: v for k, v in (core.reported | manager.reported).items() if k.startswith("EDGEPBX_")
    }
    notifier.ready(summary, **where)
    tasks = [
        asyncio.create_task(supervisor.watch(), name="supervisor"),
        asyncio.create_task(_watchdog(notifier, watchdog_interval(os.environ)), name="watchdog"),
    ]
    await stop.wait()
    log.info("stopping")
    notifier.stopping()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await supervisor.stop()
    log.info("stopped")
    notifier.close()
    return 0


def _banner(
    options: RunOptions,
    demo: list[tuple[str, str]],
    core: dict[str, str],
    manager: dict[str, str],
) -> str:
    sip = core.get("EDGEPBX_SIP", f"{options.sip_host}:{options.sip_port}")
    accounts = "\n".join(f"    extension {n}  password {p}" for n, p in demo)
    api = manager.get("EDGEPBX_API", "")
    lines = [
        f"edgepbx {version('edgepbx')} is running (data in {options.data}/).",
        f"  SIP: udp and tcp on {sip}, domain edgepbx.local",
        "  Demo extensions (register a softphone with these):",
        accounts,
        f"  A softphone: user 101, password as above, server {sip}; call 102.",
        f"  Management API: {api}  (OpenAPI: {api}/docs)",
    ]
    admin = manager.get("EDGEPBX_ADMIN", "")
    if admin:
        lines.append(f"  API login: {admin}")
    lines.append(f"  Console: edgepbx setup --api {api}")
    operator = manager.get("EDGEPBX_CABINET", "")
    if operator:
        box = manager.get("EDGEPBX_BOX_ID", "<box id>")
        lines.append(
            f"  Cloud link: paired with the local reference cabinet; try\n"
            f"    curl {operator}/boxes\n"
            f"    curl {operator}/boxes/{box}/system/health   (through the link)"
        )
    if options.sync:
        lines.append("  Cloud sync of metadata.db: edgepbx sync status")
    lines.append("  Stop: Ctrl-C (or SIGTERM); under systemd: image/systemd/edgepbx.service")
    return "\n".join(lines)


def run_box(options: RunOptions) -> int:
    """``edgepbx run``: the supervisor process."""
    setup_logging(style=options.log_format)
    try:
        return asyncio.run(_supervise(options))
    except OSError as exc:
        print(f"edgepbx: cannot start: {exc}", file=sys.stderr)
        return 1


# ------------------------------------------------------------------------------ children


async def _core_main(options: RunOptions) -> int:
    from appliance.config_doc import desired_sip_settings  # noqa: PLC0415
    from appliance.recordings import start_box_recording  # noqa: PLC0415
    from appliance.service.corectl import CoreControlServer  # noqa: PLC0415
    from appliance.service.registrar_worker import worker_spawner  # noqa: PLC0415
    from appliance.store import open_store  # noqa: PLC0415
    from pbx.recording.service import RecordingSettings  # noqa: PLC0415
    from pbx.runtime import tune_gc  # noqa: PLC0415
    from pbx.service import SipCore  # noqa: PLC0415

    notifier = Notifier.from_env()
    data = options.data_dir
    store = open_store(data, write_behind=True)
    # The command line says where to listen; the last applied configuration document (if
    # any) sets the rest of the SIP section: its changes take effect at this start.
    settings = desired_sip_settings(store.metadata, options.sip_settings())
    # Recording: lock the recordings folder, finalize what a crash left, record answered calls.
    recording = start_box_recording(
        store,
        data,
        RecordingSettings(
            policy=options.record,
            retention_days=options.retention_days,
            retention_by_extension=options.retention_by_extension,
        ),
        recipients=options.recipients,
        journal_dir=Path(options.journal) if options.journal else None,
    )
    core = SipCore(
        settings,
        store,
        secret_file(data / "nonce.key", secrets.token_bytes(32)),
        recording.recorder,
        spawn_worker=worker_spawner(settings, data, log_format=options.log_format),
    )
    control = CoreControlServer(
        core.calls,
        Path(options.runtime_dir) / "core.sock",
        store,
        on_directory=core.pool.directory_changed if core.pool is not None else None,
        guard=core.guard,
    )
    try:
        await core.start()
        retention = asyncio.create_task(recording.run_retention())
        await control.start()
        tune_gc()
        host, port = core.endpoint.local("UDP")
        stop = asyncio.Event()
        _stop_on_signals(stop, (signal.SIGTERM,))
        notifier.ready(f"sip on {host}:{port}", EDGEPBX_SIP=f"{host}:{port}")
        pings = asyncio.create_task(_watchdog(notifier, watchdog_interval(os.environ)))
        await stop.wait()
        notifier.stopping("hanging up calls")
        pings.cancel()
        retention.cancel()
        log.info("core stopping: calls=%d", len(core.calls.calls))
    finally:
        await control.close()
        await core.close()  # BYE to every call in progress; recordings are finalized
        recording.close()
        store.close()  # commits the queued bindings and call records
    return 0


async def _manager_main(options: RunOptions) -> int:
    from appliance.config_doc import desired_sip_settings  # noqa: PLC0415
    from appliance.link.cabinet import Cabinet  # noqa: PLC0415
    from appliance.link.client import LinkClient, LinkSettings  # noqa: PLC0415
    from appliance.link.credentials import SqliteCredentials  # noqa: PLC0415
    from appliance.service.api import build_api  # noqa: PLC0415
    from appliance.service.corectl import (  # noqa: PLC0415
        RemoteCalls,
        RemoteGuard,
        notifying_directory,
    )
    from appliance.service.parts import ApiPart, CabinetPart, LinkPart  # noqa: PLC0415
    from appliance.setup.pairing import LinkClientPairing  # noqa: PLC0415
    from appliance.store import open_store  # noqa: PLC0415

    notifier = Notifier.from_env()
    data = options.data_dir
    store = open_store(data)
    core_socket = Path(options.runtime_dir) / "core.sock"
    notifying_directory(store, core_socket)  # API writes reach the core's in-memory copy
    calls = RemoteCalls(core_socket)
    parts: list[Part] = [calls]
    reported: dict[str, str] = {}
    try:
        sip = desired_sip_settings(store.metadata, options.sip_settings())
        built = build_api(store, data, sip, calls, RemoteGuard(core_socket))
        for value in built.secrets:
            register_secret(value)
        api = ApiPart(built.app, options.api_host, options.api_port)
        cabinet_part = None
        if options.cabinet_url is None:
            cabinet = Cabinet(data / "cabinet" / "registry.json")
            cabinet_part = CabinetPart(
                cabinet, options.cabinet_host, options.cabinet_port, options.cabinet_operator_port
            )
            parts.append(cabinet_part)
        parts.append(api)
        credentials = SqliteCredentials(store.local)

        def make_link() -> LinkClient:
            # Built when the link part starts: the embedded cabinet's URL is known by then.
            url = options.cabinet_url or cabinet.url()
            saved = credentials.load(url)
            if saved is not None:
                register_secret(saved.credential)
            code = options.pairing_code
            if saved is None and code is None and cabinet_part is not None:
                code = cabinet.issue_code()  # the embedded cabinet pairs the box at once
            link = LinkClient(
                LinkSettings(cabinet_url=url, ca_file=options.ca_file),
                built.app,
                credentials,
                pairing_code=code,
            )
            built.attach_pairing(LinkClientPairing(link, url))  # the console's pairing step
            return link

        link_part = LinkPart(make_link)
        parts.append(link_part)
        built.app.state.link_client = lambda: link_part.client
        supervisor = Supervisor(parts)
        try:
            await supervisor.start()
        except StartFailed:
            await supervisor.stop()  # what did start (the cabinet, the calls mirror)
            raise
        if cabinet_part is not None:
            operator = f"http://{options.cabinet_host}:{cabinet_part.operator_port}"
            reported["EDGEPBX_CABINET"] = operator
            with contextlib.suppress(TimeoutError):
                reported["EDGEPBX_BOX_ID"] = await cabinet.wait_connected(timeout=5)
        reported["EDGEPBX_API"] = api.url
        if built.admin_hint:
            reported["EDGEPBX_ADMIN"] = built.admin_hint
        stop = asyncio.Event()
        _stop_on_signals(stop, (signal.SIGTERM,))
        notifier.ready(f"api on {api.url}", **reported)
        tasks = [
            asyncio.create_task(supervisor.watch()),
            asyncio.create_task(_watchdog(notifier, watchdog_interval(os.environ))),
        ]
        await stop.wait()
        notifier.stopping()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await supervisor.stop()
    finally:
        store.close()
    return 0


def run_part(name: str) -> int:
    """A child of ``edgepbx run`` (``edgepbx part core|manager``, not for humans)."""
    from pbx.transport import install_best_loop  # noqa: PLC0415

    # Ctrl-C in a terminal reaches the whole process group: only the supervisor acts on it,
    # and stops its children in order with SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    install_best_loop()
    if name == "registrar-worker":  # a child of the core, told what to do by the core
        from appliance.service.registrar_worker import registrar_worker_main  # noqa: PLC0415

        return asyncio.run(registrar_worker_main())
    options = RunOptions.from_env()
    setup_logging(style=options.log_format)
    main = {"core": _core_main, "manager": _manager_main}[name]
    try:
        return asyncio.run(main(options))
    except (OSError, StartFailed) as exc:
        log.error("cannot start: part=%s error=%s", name, exc)
        Notifier.from_env().status(f"cannot start: {exc}")  # the supervisor shows why
        return 1
