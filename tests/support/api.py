"""Helpers for the management API tests: a real store on disk, the app, clients for both origins.

The cloud client wraps the app the way the cloud link does: it sets
``scope["edgepbx.origin"] = "cloud"`` on every request; nothing else differs.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from appliance.api import ApiSettings, BoxContext, create_app
from appliance.api.accounts import AccountStore, Role
from appliance.api.recordings import MemoryRecordingLibrary
from appliance.store import SqliteStore, open_store

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

PASSWORD = "correct horse battery"
LAN_PEER = ("192.0.2.10", 50000)  # a LAN address (not loopback)
LOCAL_PEER = ("127.0.0.1", 50000)

# argon2 at its lowest cost: the tests log in hundreds of times.
FAST = ApiSettings(argon2_time_cost=1, argon2_memory_kib=64)


@dataclass
class Clock:
    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def cloud(app: Any) -> Any:
    """The ASGI app as the cloud link runs it: origin "cloud" in the scope."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope = {**scope, "edgepbx.origin": "cloud"}
        await app(scope, receive, send)

    return wrapped


@dataclass
class Box:
    """One box under test: its store, context, app and clients."""

    store: SqliteStore
    ctx: BoxContext
    app: FastAPI
    clock: Clock
    recordings: MemoryRecordingLibrary
    lan: TestClient
    cloud: TestClient
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def accounts(self) -> AccountStore:
        store: AccountStore = self.app.state.accounts
        return store

    def account(self, login: str, role: Role) -> None:
        self.accounts.create(login, PASSWORD, role)

    def login(self, login: str, client: TestClient | None = None) -> dict[str, str]:
        """Authorization headers for ``login`` (logged in over ``client``, the LAN by default)."""
        r = (client or self.lan).post("/auth/login", json={"login": login, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['token']}"}

    def audit(self, action: str) -> list[Any]:
        return self.store.audit.events(action=action, limit=1000)


def make_box(tmp_path: Path, **ctx: Any) -> Box:
    store = open_store(tmp_path / "data")
    clock = Clock()
    recordings = MemoryRecordingLibrary(chunk=1000)
    ctx.setdefault("recordings", recordings)
    context = BoxContext(store=store, settings=FAST, clock=clock, **ctx)
    app = create_app(context)
    lan = TestClient(app, client=LAN_PEER)
    cloud_client = TestClient(cloud(app), client=("203.0.113.5", 443))
    return Box(store, context, app, clock, recordings, lan, cloud_client)
