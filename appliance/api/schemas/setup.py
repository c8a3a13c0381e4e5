"""Request and response bodies of the setup, network, keys, pairing and overview endpoints.

These are the API's contract: the console (`tui/client.py`) imports them and nothing else
from `appliance`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Language = Literal["en", "ru"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- setup state -----------------------------------------------------------------------


class PairingState(_Body):
    state: Literal["unpaired", "pending", "paired", "failed"] = "unpaired"
    cabinet: str | None = None
    message: str = ""


class SetupState(_Body):
    language: Language = "en"
    hostname: str | None = None
    timezone: str | None = None
    ntp_servers: list[str] = []
    admin_user: str | None = None
    recipient: str | None = None  # the site's age recipient, once the identity exists
    identity_exported_to: str | None = None
    backup_confirmed: bool = False
    pairing: PairingState = PairingState()
    extensions: list[str] = []  # numbers created by the quick-create step
    network_confirmed: bool = False
    completed: bool = False


class LanguageBody(_Body):
    language: Language


class SystemBody(_Body):
    hostname: str = Field(min_length=1, max_length=253)
    timezone: str
    ntp_servers: list[str] = Field(default=[], max_length=8)


class Welcome(_Body):
    """Public: what the console asks before anyone has logged in."""

    first_boot: bool  # no account exists yet: the wizard creates the first admin
    language: Language


class IdentityInfo(_Body):
    recipient: str
    created: bool  # False: it already existed (the site key is never replaced here)


class IdentityBody(_Body):
    # the identity is stored only encrypted with it: without it, recordings cannot be opened
    passphrase: str = Field(min_length=10, max_length=256)


class ExportBody(_Body):
    # a removable disk's mount point or the exports folder; no path holds a NUL byte
    directory: str = Field(min_length=1, max_length=4096, pattern=r"^[^\x00]+$")


class ExportInfo(_Body):
    path: str
    size: int


class PairBody(_Body):
    code: str = Field(pattern=r"^[A-Za-z0-9]{4}-?[A-Za-z0-9]{4}$")


class ExtensionRangeBody(_Body):
    first: int = Field(ge=10, le=99999)
    last: int = Field(ge=10, le=99999)


class CreatedExtension(_Body):
    number: str
    password: str  # returned this once; the box keeps only digests


class ExtensionRangeResult(_Body):
    extensions: list[CreatedExtension]
    sheet_path: str
    sheet: str


class FinishResult(_Body):
    completed: bool
    missing: list[str] = []


# -- network ---------------------------------------------------------------------------


class LinkInfo(_Body):
    name: str
    mac: str
    up: bool
    carrier: bool
    mtu: int
    kind: str | None
    addresses: list[str]
    dhcp: bool


class RouteInfo(_Body):
    dst: str
    gateway: str
    iface: str


class NetworkView(_Body):
    links: list[LinkInfo]
    routes: list[RouteInfo]
    dns: list[str]
    saved: dict[str, object] | None  # the confirmed configuration document
    trial: TrialInfo


class TrialInfo(_Body):
    outcome: Literal["unchanged", "pending", "rolled_back", "confirmed", "failed"]
    message: str = ""
    steps: list[str] = []
    confirm_within: float | None = None


class TryBody(_Body):
    config: dict[str, object]
    confirm_within: float = Field(default=120.0, gt=0, le=3600)


NetworkView.model_rebuild()


# -- overview (the status console) -------------------------------------------------------


class Phone(_Body):
    extension: str
    contact: str
    user_agent: str | None = None
    expires_in: int


class Gateway(_Body):
    name: str
    kind: str
    state: str
    signal: int | None = None  # percent, for GSM/LTE
    sim: str | None = None


class Alarm(_Body):
    severity: Literal["info", "warning", "critical"]
    text: str
    source: str = "setup"


class Overview(_Body):
    hostname: str | None
    phones: list[Phone]
    active_calls: int | None  # None: the SIP core does not run in this process
    gateways: list[Gateway]
    sync_lag_seconds: float | None  # None: sync not configured on this box
    disk_used_percent: float
    disk_free_bytes: int
    alarms: list[Alarm]
