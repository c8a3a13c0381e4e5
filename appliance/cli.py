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
    _add_setup_commands(sub)
    args = parser.parse_args(argv)
    if args.command in ("setup", "console-api", "network"):
        # imported here: the SIP core's start-up should not load Textual and FastAPI; and
        # before logging is set up, since log lines on stderr would tear the console's screen
        from appliance.setup.cli import run_setup_command  # noqa: PLC0415

        return run_setup_command(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.command == "version":
        print(version("edgepbx"))
        return 0
    settings = SipSettings(host=args.host, port=args.port, media_host=args.host)
    loop_name = install_best_loop()
    try:
        asyncio.run(_run(settings, args.data, loop_name))
    except OSError as exc:
        print(f"edgepbx: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


def _add_setup_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    setup = sub.add_parser("setup", help="the setup console (first-boot wizard, status)")
    setup.add_argument("--socket", type=Path, help="the management API's unix socket")
    setup.add_argument("--api", help="the management API's URL (default http://127.0.0.1:8080)")
    setup.add_argument("--refresh", type=float, default=2.0, help="status refresh, seconds")
    setup.add_argument("--export-dir", default="/media/usb", help="suggested key export folder")
    api = sub.add_parser("console-api", help="serve the console's API endpoints")
    api.add_argument("--data", type=Path, default=Path("var"), help="the box's data folder")
    api.add_argument("--socket", type=Path, help="listen on this unix socket")
    api.add_argument("--port", type=int, default=8080, help="else on 127.0.0.1:PORT")
    api.add_argument("--network", choices=("netlink", "memory"), default="netlink")
    api.add_argument("--netns", help="manage this network namespace instead of the host's")
    net = sub.add_parser("network", help="network settings")
    net.add_argument("action", choices=("show", "apply-saved"))
    net.add_argument("--data", type=Path, default=Path("var"), help="the box's data folder")
    net.add_argument("--netns", help="a network namespace instead of the host's")


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
    core = SipCore(settings, store, nonce_key)
    await core.start()
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
        f"  A softphone: user 101, password as above, server {host}:{port}; call 102.\n"
        f"  Or with baresip: see README.md, 'Try it'.\n"
        "  Stop: Ctrl-C",
        flush=True,
    )
    await stop.wait()
    await core.close()
    store.close()
