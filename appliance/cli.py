"""``edgepbx``: the box's command line. ``edgepbx run`` starts the box with embedded defaults."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from importlib.metadata import version

from pbx.runtime import tune_gc
from pbx.service import SipCore
from pbx.settings import SipSettings
from pbx.transport import install_best_loop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edgepbx", description="edgepbx office telephony box")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start the box (embedded defaults: loopback)")
    run.add_argument("--host", default="127.0.0.1", help="SIP listen address")
    run.add_argument("--port", type=int, default=5060, help="SIP port (UDP and TCP)")
    sub.add_parser("version", help="print the version")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.command == "version":
        print(version("edgepbx"))
        return 0
    settings = SipSettings(host=args.host, port=args.port)
    loop_name = install_best_loop()
    try:
        asyncio.run(_run(settings, loop_name))
    except OSError as exc:
        print(f"edgepbx: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


async def _run(settings: SipSettings, loop_name: str) -> None:
    core = SipCore(settings)
    await core.start()
    tune_gc()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    host, port = core.endpoint.local("UDP")
    print(
        f"edgepbx {version('edgepbx')} is running ({loop_name} loop).\n"
        f"  SIP core: udp and tcp on {host}:{port}\n"
        f"  Try it:   sipp -sn uac {host}:{port} -m 1   (answers 480 until calls land)\n"
        f"            sipp -sf tests/interop/scenarios/options.xml {host}:{port} -m 1\n"
        "  Stop:     Ctrl-C",
        flush=True,
    )
    await stop.wait()
    await core.close()
