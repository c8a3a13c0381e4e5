"""Building the console's services for the management app, and serving the app for the console
(`edgepbx serve-api`) until `edgepbx run` serves it with the rest of the box (issue 6)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from appliance.api.console_deps import ConsoleServices
from appliance.network.memory import MemoryBackend
from appliance.network.netlink import NetlinkBackend, Pyroute2DhcpClient, resolv_conf_for
from appliance.network.service import NetworkBackend, NetworkService
from appliance.network.state import Link, NetState
from appliance.setup.service import CloudPairing, NoCloudLink, SetupService
from pbx.recording.keys import DEFAULT_WORK_FACTOR
from pbx.store import Store

# the in-memory network of `--network memory` (a demo, and tests without root)
DEMO_NETWORK = NetState(
    links=(
        Link(name="eth0", mac="52:54:00:12:34:56", carrier=True),
        Link(name="eth1", mac="52:54:00:12:34:57"),
    ),
    dns=(ipaddress.ip_address("192.168.1.1"),),
)


class ConsoleSettings(BaseModel):
    data_dir: Path
    network: Literal["netlink", "memory"] = "netlink"
    netns: str | None = None
    resolv_conf: Path | None = None  # None: /etc/resolv.conf, or the namespace's own
    check_timeout: float = 3.0
    export_roots: tuple[Path, ...] = (Path("/media"), Path("/mnt"), Path("/run/media"))
    key_work_factor: int = DEFAULT_WORK_FACTOR


def build_console_services(
    settings: ConsoleSettings,
    store: Store,
    pairing: CloudPairing | None = None,
    network_backend: NetworkBackend | None = None,
) -> ConsoleServices:
    backend: NetworkBackend
    if network_backend is not None:
        backend = network_backend
    elif settings.network == "memory":
        backend = MemoryBackend(DEMO_NETWORK)
    else:
        resolv = settings.resolv_conf or resolv_conf_for(settings.netns)
        dhcp = Pyroute2DhcpClient(settings.netns, workdir=settings.data_dir / "dhcp")
        backend = NetlinkBackend(netns=settings.netns, resolv_conf=resolv, dhcp=dhcp)
    network = NetworkService(backend, settings.data_dir, settings.check_timeout)
    setup = SetupService(
        settings.data_dir,
        store,
        pairing or NoCloudLink(),
        export_roots=settings.export_roots,
        key_work_factor=settings.key_work_factor,
    )
    return ConsoleServices(network=network, setup=setup)
