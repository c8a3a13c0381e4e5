"""A management app carrying only the console's endpoints, for `edgepbx setup --serve` and
tests, until the full app factory of the management API (issue 6) mounts them itself."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from fastapi import FastAPI
from pydantic import BaseModel

from appliance.api.console import install_console_routers
from appliance.api.console_deps import ConsoleServices
from appliance.network.memory import MemoryBackend
from appliance.network.netlink import NetlinkBackend
from appliance.network.service import NetworkBackend, NetworkService
from appliance.network.state import Link, NetState
from appliance.setup.overview import OverviewProviders, OverviewService
from appliance.setup.service import CloudPairing, NoCloudLink, SetupService
from pbx.store import Store

DEMO_NETWORK = NetState(
    links=(
        Link(name="eth0", mac="52:54:00:12:34:56", carrier=True),
        Link(name="eth1", mac="52:54:00:12:34:57"),
    ),
    dns=(ipaddress.ip_address("192.168.1.1"),),
)


class ConsoleApiSettings(BaseModel):
    data_dir: Path
    network: Literal["netlink", "memory"] = "netlink"
    netns: str | None = None
    resolv_conf: Path = Path("/etc/resolv.conf")
    realm: str = "edgepbx.local"
    check_timeout: float = 3.0


def build_services(
    settings: ConsoleApiSettings,
    store: Store,
    pairing: CloudPairing | None = None,
    network_backend: NetworkBackend | None = None,
    providers: OverviewProviders | None = None,
) -> ConsoleServices:
    backend: NetworkBackend
    if network_backend is not None:
        backend = network_backend
    elif settings.network == "memory":
        backend = MemoryBackend(DEMO_NETWORK)
    else:
        backend = NetlinkBackend(netns=settings.netns, resolv_conf=settings.resolv_conf)
    network = NetworkService(backend, settings.data_dir, settings.check_timeout)
    setup = SetupService(settings.data_dir, store, settings.realm, pairing or NoCloudLink())
    overview = OverviewService(settings.data_dir, store, setup, providers or OverviewProviders())
    return ConsoleServices(network=network, setup=setup, overview=overview)


def create_console_app(services: ConsoleServices) -> FastAPI:
    app = FastAPI(title="edgepbx management API (console endpoints)", version="1")
    install_console_routers(app, services)
    return app
