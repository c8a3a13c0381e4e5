"""The management API app as the manager process serves it, on the LAN listener and through
the cloud link (the same app object: one policy point for both origins)."""

from __future__ import annotations

import importlib
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from appliance.api import BoxContext, CallControl, SyncSource, create_app
from appliance.api.accounts import AccountStore, Role
from appliance.api.age_library import AgeFolderLibrary
from appliance.api.console_app import ConsoleSettings, build_console_services
from appliance.api.console_deps import ConsoleServices
from appliance.api.context import GuardControl
from appliance.api.vault import IdentityVault
from appliance.files import create_private
from appliance.recordings import open_recordings
from appliance.recordings_api import CatalogedLibrary, RecordingAlarms
from appliance.service.link_routes import install_link_routes
from appliance.setup.service import CloudPairing
from appliance.store import SqliteStore
from pbx.recording.age import X25519Identity
from pbx.recording.keys import Keyring
from pbx.settings import SipSettings

__all__ = ["DEMO_ADMIN", "BuiltApi", "build_api"]

DEMO_ADMIN = "admin"


@dataclass
class BuiltApi:
    app: FastAPI
    secrets: list[str] = field(default_factory=list)  # values the logs must never show
    admin_hint: str = ""  # how to log in, for the banner of make run
    console: ConsoleServices | None = None

    def attach_pairing(self, pairing: CloudPairing) -> None:
        """The cloud link is built after the API: its pairing reaches the console this way."""
        if self.console is not None:
            self.console.setup.pairing = pairing


def _demo_admin(accounts: AccountStore, data: Path) -> str | None:
    """A first admin account so a new box can be managed at once; its password is kept in
    a private file beside the demo extensions' (change it through the API)."""
    path = data / "demo-admin.txt"
    if accounts.count() == 0:
        password = secrets.token_urlsafe(12)
        accounts.create(DEMO_ADMIN, password, Role.ADMIN)
        path.unlink(missing_ok=True)
        create_private(path, f"{DEMO_ADMIN} {password}\n")
    if not path.exists():
        return None
    return path.read_text().split()[1]


class _SyncStatusFile:
    """The sync service runs in the supervisor process and writes its status to a file; the
    API (manager process) reads it there with the sync package's own ``read_status``."""

    def __init__(self, sync: Any, data: Path) -> None:
        self._sync, self._data = sync, data
        self._settings = sync.load_settings(data)

    def status(self) -> Any:
        return self._sync.read_status(self._settings, self._data, time.time())


def _sync_source(data: Path) -> SyncSource | None:
    """The hook for ``appliance.sync`` (when that package is part of the box)."""
    try:
        sync: Any = importlib.import_module("appliance.sync")
        return _SyncStatusFile(sync, data)
    except Exception:  # not installed, or its settings refused: the API answers 503 for sync
        return None


def _recordings(store: SqliteStore, data: Path) -> tuple[AgeFolderLibrary, IdentityVault]:
    """Recordings as the recorder lays them out (``recordings/**/<id>.wav.age``), played with
    the site identity from the keyring (``keys/``) once a supervisor unlocked it."""

    def unlock(passphrase: str) -> list[X25519Identity]:
        return Keyring(data / "keys").unlock(passphrase)  # read at each unlock: setup may add it

    vault = IdentityVault(unlock, clock=time.time)
    return AgeFolderLibrary(data / "recordings", store.metadata, vault.identities), vault


def build_api(
    store: SqliteStore,
    data: Path,
    sip: SipSettings,
    calls: CallControl | None,
    guard: GuardControl | None = None,
) -> BuiltApi:
    # The console's network settings act on the host only where the box's image asks for it
    # (EDGEPBX_NETWORK=netlink); elsewhere (make run on a laptop) on an in-memory network.
    network = "netlink" if os.environ.get("EDGEPBX_NETWORK") == "netlink" else "memory"
    console = build_console_services(ConsoleSettings(data_dir=data, network=network), store)
    library, vault = _recordings(store, data)
    recordings = open_recordings(store, data)  # the recorder's catalog and alarms
    context = BoxContext(
        store=store,
        sip=sip,
        calls=calls,
        guard=guard,
        sync=_sync_source(data),
        recordings=CatalogedLibrary(library, recordings),
        vault=vault,
        console=console,
        alarm_sources=[RecordingAlarms(recordings.alarms)],
    )
    app = create_app(context)
    install_link_routes(app)
    password = _demo_admin(app.state.accounts, data)
    if password is None:
        return BuiltApi(app, console=console)
    return BuiltApi(app, [password], f"{DEMO_ADMIN} / {password}", console)
