"""What the management API needs from the rest of the box, passed in by the composition root.

Each collaborator the API does not own is a small Protocol here, so the API runs the same
whether the SIP core lives in this process or another, and so tests hand in real or twin
parts without reaching into private internals.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from pbx.settings import SipSettings
from pbx.store import Clock

if TYPE_CHECKING:
    from appliance.api.config import BoxConfig
    from appliance.api.console_deps import ConsoleServices
    from appliance.api.recordings import RecordingLibrary
    from appliance.api.vault import IdentityVault
    from appliance.store import SqliteStore

__all__ = [
    "ActiveCallView",
    "AlarmLike",
    "AlarmSource",
    "ApiSettings",
    "BoxContext",
    "CallControl",
    "ConfigApplier",
    "SyncSource",
    "SyncStatusLike",
    "box_version",
]


def box_version() -> str:
    try:
        return version("edgepbx")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


class ApiSettings(BaseModel):
    """Session and login limits. Defaults suit a box; tests shorten them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    token_ttl: float = Field(1800.0, gt=0, description="seconds a login token stays valid")
    # Per account: this many failures in a row lock it for lockout_seconds.
    lockout_after: int = Field(5, ge=1)
    lockout_seconds: float = Field(300.0, gt=0)
    # Per source address: at most login_burst attempts, refilled at login_rate per second.
    login_burst: int = Field(10, ge=1)
    login_rate: float = Field(0.2, gt=0)
    # argon2id cost (RFC 9106 second recommended option by default: 64 MiB, t=3).
    argon2_time_cost: int = Field(3, ge=1)
    argon2_memory_kib: int = Field(65536, ge=64)  # argon2 needs 8 KiB per lane (4 lanes)


class AlarmLike(Protocol):
    """An alarm as :class:`appliance.alarms.Alarm` shapes it."""

    def to_json(self) -> dict[str, object]: ...


class AlarmSource(Protocol):
    def alarms(self) -> Sequence[AlarmLike]: ...


class SyncStatusLike(Protocol):
    """:class:`appliance.sync.status.SyncStatus` as the API reads it."""

    def to_json(self) -> dict[str, Any]: ...


class SyncSource(Protocol):
    def status(self) -> SyncStatusLike: ...


@dataclass(frozen=True, slots=True)
class ActiveCallView:
    """One call on the box right now (what the API lists)."""

    call_id: str
    caller: str
    caller_name: str
    dialed: str
    callee: str | None
    state: str  # "ringing" or "answered"
    start_time: float
    answer_time: float | None
    codec: str | None


class CallControl(Protocol):
    """The SIP core's calls: :class:`pbx.b2bua.CallManager` fits through
    :class:`appliance.api.calls.ManagerCalls`."""

    def active(self) -> list[ActiveCallView]: ...

    def hangup(self, call_id: str) -> Awaitable[bool]:
        """End a call (BYE if answered, CANCEL while ringing); False if it is unknown."""
        ...


@dataclass(frozen=True, slots=True)
class BanView:
    address: str
    seconds_left: float


class GuardControl(Protocol):
    """The SIP core's door guard (:class:`pbx.guard.Guard`): banned sources."""

    def bans(self) -> Awaitable[list[BanView]]: ...

    def unban(self, address: str) -> Awaitable[bool]:
        """Lift a ban; False if the address was not banned."""
        ...


class ConfigApplier(Protocol):
    """A runtime step of applying a configuration document (e.g. telling the SIP core).
    ``apply`` runs inside the store transaction; when a later step fails, ``undo`` is
    called on every step that applied, newest first."""

    name: str

    def apply(self, old: BoxConfig, new: BoxConfig) -> None: ...

    def undo(self, old: BoxConfig, new: BoxConfig) -> None: ...


@dataclass(eq=False)
class BoxContext:
    """Everything :func:`appliance.api.create_app` serves.

    ``store``: the open store (both databases). ``sip``: the SIP core's running settings
    (the domain is the digest realm for extension passwords). The optional parts are None
    when they do not run in this box (or not in this process): their endpoints answer 503.
    """

    store: SqliteStore
    sip: SipSettings = field(default_factory=SipSettings)
    calls: CallControl | None = None
    guard: GuardControl | None = None
    recordings: RecordingLibrary | None = None
    # Site identities unlocked for playback (POST /recordings/unlock); None: no keyring here.
    vault: IdentityVault | None = None
    sync: SyncSource | None = None
    alarm_sources: Sequence[AlarmSource] = ()
    config_appliers: Sequence[ConfigApplier] = ()
    settings: ApiSettings = field(default_factory=ApiSettings)
    clock: Clock = time.time
    version: str = field(default_factory=box_version)
    # network, setup state and pairing for the setup console (None: those endpoints answer 503)
    console: ConsoleServices | None = None

    def all_alarms(self) -> Iterator[AlarmLike]:
        for source in self.alarm_sources:
            yield from source.alarms()
        if self.sync is not None:
            yield from _sync_alarms(self.sync)


def _sync_alarms(sync: SyncSource) -> list[AlarmLike]:
    # SyncStatus carries its alarms already; the system page shows them with the others.
    alarms = sync.status().to_json().get("alarms", [])
    return [_JsonAlarm(a) for a in alarms if isinstance(a, dict)]


@dataclass(frozen=True, slots=True)
class _JsonAlarm:
    data: dict[str, object]

    def to_json(self) -> dict[str, object]:
        return self.data
