"""The real console endpoints in process: FastAPI app, in-memory store and network twins."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from appliance.api.console_app import (
    DEMO_NETWORK,
    ConsoleApiSettings,
    build_services,
    create_console_app,
)
from appliance.api.console_deps import ConsoleServices
from appliance.api.schemas.setup import PairingState
from appliance.network.memory import MemoryBackend
from appliance.setup.overview import OverviewProviders
from pbx.store import Binding, Extension, MemoryStore
from tui.client import ApiClient

NOW = 1_800_000_000.0


class LinkPairing:
    """Stands in for the cloud link's pairing: a well-formed code brings the link up."""

    def __init__(self) -> None:
        self._state = PairingState()

    def pair(self, code: str) -> PairingState:
        if code == "00000000":
            self._state = PairingState(state="failed", message="the cabinet refused the code")
        else:
            self._state = PairingState(state="paired", cabinet="cabinet.example", message="link up")
        return self._state

    def state(self) -> PairingState:
        return self._state


@dataclass
class ConsoleEnv:
    data_dir: Path
    store: MemoryStore
    backend: MemoryBackend
    services: ConsoleServices
    client: ApiClient


def make_env(data_dir: Path, reachable: set[str] | None = None) -> ConsoleEnv:
    store = MemoryStore(clock=lambda: NOW)
    gateways = None if reachable is None else frozenset(map(ipaddress.ip_address, reachable))
    backend = MemoryBackend(DEMO_NETWORK, reachable=gateways)
    settings = ConsoleApiSettings(data_dir=data_dir, network="memory", check_timeout=0.1)
    providers = OverviewProviders(active_calls=lambda: 2, clock=lambda: NOW)
    services = build_services(settings, store, LinkPairing(), backend, providers)
    client = ApiClient.in_process(create_console_app(services))
    return ConsoleEnv(data_dir, store, backend, services, client)


def register_phone(store: MemoryStore, number: str, agent: str = "Yealink SIP-T46U") -> None:
    if store.directory.get(number) is None:
        store.directory.create(Extension(number=number, display_name=number))
    store.bindings.put(
        Binding(
            aor=number,
            contact=f"sip:{number}@192.168.1.{50 + int(number) % 100}:5060",
            expires_at=NOW + 300,
            call_id=f"c{number}",
            cseq=1,
            source_transport="UDP",
            source_host="192.168.1.50",
            source_port=5060,
            updated_at=NOW,
            user_agent=agent,
        )
    )
