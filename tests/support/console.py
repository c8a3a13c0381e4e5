"""The real management app in process for console tests: SQLite store on disk, the console's
services with the in-memory network twin, and the typed client the console uses."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI

from appliance.api import BoxContext, create_app
from appliance.api.console_app import DEMO_NETWORK, ConsoleSettings, build_console_services
from appliance.api.console_deps import ConsoleServices
from appliance.api.context import ActiveCallView
from appliance.api.schemas.setup import PairingState
from appliance.network.memory import MemoryBackend
from appliance.store import SqliteStore, open_store
from pbx.store import Binding, Extension, Store
from support.api import FAST
from tui.client import ApiClient

NOW = 1_800_000_000.0
ADMIN = ("admin", "correct horse battery")


class LinkPairing:
    """Stands in for the cloud link's pairing: a well-formed code brings the link up."""

    def __init__(self) -> None:
        self._state = PairingState()

    def pair(self, code: str) -> PairingState:
        if code == "0000-0000":
            self._state = PairingState(state="failed", message="the cabinet refused the code")
        else:
            self._state = PairingState(state="paired", cabinet="cabinet.example", message="link up")
        return self._state

    def state(self) -> PairingState:
        return self._state


class TwoCalls:
    """The SIP core's call list as the API sees it: two calls up."""

    def active(self) -> list[ActiveCallView]:
        return [
            ActiveCallView(f"c{n}", "101", "Alice", "102", "102", "answered", NOW, NOW, "PCMU")
            for n in range(2)
        ]

    async def hangup(self, call_id: str) -> bool:
        return False


@dataclass
class ConsoleEnv:
    data_dir: Path
    store: SqliteStore
    backend: MemoryBackend
    services: ConsoleServices
    app: FastAPI
    client: ApiClient

    async def close(self) -> None:
        await self.client.aclose()
        self.store.close()


def make_env(data_dir: Path, reachable: set[str] | None = None) -> ConsoleEnv:
    store = open_store(data_dir, clock=lambda: NOW)
    gateways = None if reachable is None else frozenset(map(ipaddress.ip_address, reachable))
    backend = MemoryBackend(DEMO_NETWORK, reachable=gateways)
    # scrypt work factor 10 instead of 18: the same format, a thousandth of the work
    settings = ConsoleSettings(
        data_dir=data_dir, network="memory", check_timeout=0.1, key_work_factor=10
    )
    services = build_console_services(settings, store, LinkPairing(), backend)
    ctx = BoxContext(
        store=store, settings=FAST, clock=lambda: NOW, calls=TwoCalls(), console=services
    )
    app = create_app(ctx)
    client = ApiClient.in_process(app)
    return ConsoleEnv(data_dir, store, backend, services, app, client)


def register_phone(store: Store, number: str, agent: str = "Yealink SIP-T46U") -> None:
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
