"""``edgepbx``: the box's command line. ``edgepbx run`` starts the box with embedded defaults."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import sys
from importlib.metadata import version
from pathlib import Path

from appliance.store import open_store
from appliance.sync import SettingsError, SyncService, load_settings
from appliance.sync.cli import add_sync_commands, run_sync_command
from pbx.runtime import tune_gc
from pbx.service import SipCore
from pbx.settings import SipSettings
from pbx.store import Extension, Store
from pbx.transport import install_best_loop

DEMO_EXTENSIONS = (("101", "Alice (demo)"), ("102", "Bob (demo)"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edgepbx", description="edgepbx office telephony box")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start the box (embedded defaults: loopback)")
    run.add_argument("--host", default="127.0.0.1", help="SIP listen address")
    run.add_argument("--port", type=int, default=5060, help="SIP port (UDP and TCP)")
    run.add_argument("--data", type=Path, default=Path("var"), help="the box's data folder")
    sub.add_parser("version", help="print the version")
    add_sync_commands(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.command == "version":
        print(version("edgepbx"))
        return 0
    if args.command == "sync":
        return run_sync_command(args)
    settings = SipSettings(host=args.host, port=args.port, media_host=args.host)
    loop_name = install_best_loop()
    try:
        asyncio.run(_run(settings, args.data, loop_name))
    except (OSError, SettingsError) as exc:
        print(f"edgepbx: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


def _secret_file(path: Path, make: bytes) -> bytes:
    """Read a private file, creating it (mode 0600) with ``make`` the first time."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(make)
    return path.read_bytes()


def _demo_extensions(store: Store, data: Path, realm: str) -> str:
    """Create the demo extensions once; their passwords are kept in a private file so
    `make run` can show them again (the store keeps only digests)."""
    lines = []
    for number, name in DEMO_EXTENSIONS:
        if store.directory.get(number) is None:
            store.directory.create(Extension(number=number, display_name=name))
            password = secrets.token_urlsafe(9)
            store.directory.set_password(number, password, realm)
            lines.append(f"{number} {password}")
    credentials = data / "demo-credentials.txt"
    if lines:
        credentials.unlink(missing_ok=True)
        _secret_file(credentials, ("\n".join(lines) + "\n").encode())
    return credentials.read_text() if credentials.exists() else ""


async def _run(settings: SipSettings, data: Path, loop_name: str) -> None:
    store = open_store(data, write_behind=True)
    nonce_key = _secret_file(data / "nonce.key", secrets.token_bytes(32))
    demo = _demo_extensions(store, data, settings.domain)
    # Cloud sync of metadata.db (default: the folder <data>/cloud stands for the bucket).
    # Offline first: nothing on the call path waits for it.
    sync = SyncService(load_settings(data), data)
    core = SipCore(settings, store, nonce_key)
    await core.start()
    await sync.start()
    tune_gc()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    host, port = core.endpoint.local("UDP")
    accounts = "\n".join(
        f"    extension {line.split()[0]}  password {line.split()[1]}" for line in demo.splitlines()
    )
    print(
        f"edgepbx {version('edgepbx')} is running ({loop_name} loop, data in {data}/).\n"
        f"  SIP: udp and tcp on {host}:{port}, domain {settings.domain}\n"
        f"  Demo extensions (register a softphone with these):\n{accounts}\n"
        f"  Cloud sync: {sync.status().target} (edgepbx sync status)\n"
        f"  A softphone: user 101, password as above, server {host}:{port}; call 102.\n"
        f"  Or with baresip: see README.md, 'Try it'.\n"
        "  Stop: Ctrl-C",
        flush=True,
    )
    await stop.wait()
    await core.close()
    store.close()
    await sync.stop()  # after the store: Litestream ships the last commits as it stops
