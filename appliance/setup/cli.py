"""`edgepbx setup`, `edgepbx serve-api` and `edgepbx network` (see appliance/cli.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import uvicorn

from appliance.api import BoxContext, create_app
from appliance.api.console_app import ConsoleSettings as ServiceSettings
from appliance.api.console_app import build_console_services
from appliance.network.netlink import NetlinkBackend, NetworkApplyError, resolv_conf_for
from appliance.network.plan import describe, plan
from appliance.network.service import NetworkService
from appliance.store import open_store
from tui.app import ConsoleSettings, make_app
from tui.client import ApiClient


def run_setup_command(args: argparse.Namespace) -> int:
    if args.command == "setup":
        return _console(args)
    if args.command == "serve-api":
        return _serve(args)
    return _network(args)


def _console(args: argparse.Namespace) -> int:
    if args.socket is not None:
        client = ApiClient.over_socket(str(args.socket))
    else:
        client = ApiClient.over_http(args.api or "http://127.0.0.1:8780")  # edgepbx run's API
    settings = ConsoleSettings(refresh_seconds=args.refresh, export_dir=args.export_dir)
    make_app(client, settings).run()
    return 0


def _serve(args: argparse.Namespace) -> int:
    data: Path = args.data
    data.mkdir(parents=True, exist_ok=True)
    settings = ServiceSettings(data_dir=data, network=args.network, netns=args.netns)
    store = open_store(data)
    app = create_app(BoxContext(store=store, console=build_console_services(settings, store)))
    try:
        if args.socket is not None:
            args.socket.unlink(missing_ok=True)
            uvicorn.run(app, uds=str(args.socket), log_level="warning")
        else:
            uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
    finally:
        store.close()
    return 0


def _network(args: argparse.Namespace) -> int:
    resolv = args.resolv_conf or resolv_conf_for(args.netns)
    service = NetworkService(NetlinkBackend(netns=args.netns, resolv_conf=resolv), args.data)
    if args.action == "show":
        state = service.backend.read_state()
        for link in state.links:
            addrs = ", ".join(sorted(map(str, link.addresses))) or "-"
            print(
                f"{link.name:<16}{link.mac:<19}{'up' if link.up else 'down':<6}{link.mtu:<7}{addrs}"
            )
        for route in sorted(state.routes):
            print(f"route {route}")
        print("dns " + (" ".join(map(str, state.dns)) or "-"))
        saved = service.saved()
        if saved is not None:
            pending = plan(state, saved.to_target())
            print(
                "saved settings: " + ("in place" if not pending else f"{len(pending)} steps away")
            )
            for step in pending:
                print(f"  {describe(step)}")
        return 0
    try:
        done = asyncio.run(service.apply_saved())
    except NetworkApplyError as exc:
        print(f"edgepbx network: {exc}", file=sys.stderr)
        return 1
    print("\n".join(done) or "network: saved settings already in place")
    return 0
