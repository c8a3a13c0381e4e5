"""The console's typed client of the management API (httpx; loopback, unix socket or in process).

The console holds no logic of its own: every read and every change is one of these calls. Refused
input comes back as `ApiError` with the fields named, the way the API names them.
"""

from __future__ import annotations

from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from appliance.api.schemas.setup import (
    ExportInfo,
    ExtensionRangeResult,
    FinishResult,
    IdentityInfo,
    Language,
    NetworkView,
    Overview,
    PairingState,
    SetupState,
    TrialInfo,
    Welcome,
)

M = TypeVar("M", bound=BaseModel)


class ApiError(Exception):
    """The API refused a request; `fields` maps a dotted field path to its message."""

    def __init__(self, status: int, message: str, fields: dict[str, str] | None = None) -> None:
        self.status = status
        self.fields = fields or {}
        super().__init__(message)


def _error(response: httpx.Response) -> ApiError:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = response.text
    if isinstance(detail, list):
        fields = {}
        for item in detail:
            loc = [str(p) for p in item.get("loc", [])]
            if loc and loc[0] in ("body", "config", "query", "path"):
                loc = loc[1:]
            fields[".".join(loc)] = str(item.get("msg", ""))
        message = "; ".join(f"{k}: {v}" if k else v for k, v in fields.items())
        return ApiError(response.status_code, message, fields)
    return ApiError(response.status_code, str(detail or response.reason_phrase))


class Session(BaseModel):
    token: str
    login: str
    role: str
    expires_at: float


class _Account(BaseModel):
    login: str
    role: str


class _AccountCreated(BaseModel):
    account: _Account


class ApiClient:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.session: Session | None = None

    @classmethod
    def over_socket(cls, path: str, timeout: float = 30.0) -> ApiClient:
        transport = httpx.AsyncHTTPTransport(uds=path)
        return cls(httpx.AsyncClient(transport=transport, base_url="http://box", timeout=timeout))

    @classmethod
    def over_http(cls, url: str, timeout: float = 30.0) -> ApiClient:
        return cls(httpx.AsyncClient(base_url=url, timeout=timeout))

    @classmethod
    def in_process(cls, app: Any) -> ApiClient:
        """Against an ASGI app in this process (tests, and a box without a running API)."""
        transport = httpx.ASGITransport(app=app)
        return cls(httpx.AsyncClient(transport=transport, base_url="http://box", timeout=30.0))

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _call(
        self, method: str, path: str, model: type[M], body: dict[str, Any] | None = None
    ) -> M:
        try:
            headers = {}
            if self.session is not None:
                headers["Authorization"] = f"Bearer {self.session.token}"
            response = await self.http.request(method, path, json=body, headers=headers)
        except httpx.TransportError as exc:
            raise ApiError(0, f"cannot reach the box's management API: {exc}") from exc
        if response.status_code >= 400:
            raise _error(response)
        return model.model_validate(response.json())

    # -- accounts ----------------------------------------------------------------------

    async def welcome(self) -> Welcome:
        return await self._call("GET", "/setup/welcome", Welcome)

    async def login(self, login: str, password: str) -> Session:
        body = {"login": login, "password": password}
        self.session = await self._call("POST", "/auth/login", Session, body)
        return self.session

    async def bootstrap(self, login: str, password: str) -> Session:
        """Create the first admin account (a new box, on the box itself), then log in."""
        body = {"login": login, "password": password}
        await self._call("POST", "/auth/bootstrap", _Account, body)
        return await self.login(login, password)

    async def create_admin(self, login: str, password: str) -> None:
        """Another admin account (needs an admin's login)."""
        body = {"login": login, "password": password, "role": "admin"}
        await self._call("POST", "/accounts", _AccountCreated, body)

    # -- setup -------------------------------------------------------------------------

    async def setup_state(self) -> SetupState:
        return await self._call("GET", "/setup", SetupState)

    async def set_language(self, language: Language) -> SetupState:
        return await self._call("PUT", "/setup/language", SetupState, {"language": language})

    async def set_system(self, hostname: str, timezone: str, ntp: list[str]) -> SetupState:
        body = {"hostname": hostname, "timezone": timezone, "ntp_servers": ntp}
        return await self._call("PUT", "/setup/system", SetupState, body)

    async def create_extensions(self, first: int, last: int) -> ExtensionRangeResult:
        body = {"first": first, "last": last}
        return await self._call("POST", "/setup/extensions", ExtensionRangeResult, body)

    async def finish(self) -> FinishResult:
        return await self._call("POST", "/setup/finish", FinishResult)

    # -- keys and pairing --------------------------------------------------------------

    async def create_identity(self, passphrase: str) -> IdentityInfo:
        body = {"passphrase": passphrase}
        return await self._call("POST", "/keys/site-identity", IdentityInfo, body)

    async def export_identity(self, directory: str) -> ExportInfo:
        body = {"directory": directory}
        return await self._call("POST", "/keys/site-identity/export", ExportInfo, body)

    async def confirm_backup(self) -> SetupState:
        return await self._call("POST", "/keys/site-identity/backup-confirmed", SetupState)

    async def pair(self, code: str) -> PairingState:
        return await self._call("POST", "/pairing", PairingState, {"code": code})

    async def pairing(self) -> PairingState:
        return await self._call("GET", "/pairing", PairingState)

    # -- network -----------------------------------------------------------------------

    async def network(self) -> NetworkView:
        return await self._call("GET", "/network", NetworkView)

    async def try_network(self, config: dict[str, Any], confirm_within: float) -> TrialInfo:
        body = {"config": config, "confirm_within": confirm_within}
        return await self._call("POST", "/network/try", TrialInfo, body)

    async def confirm_network(self) -> TrialInfo:
        return await self._call("POST", "/network/confirm", TrialInfo)

    async def revert_network(self) -> TrialInfo:
        return await self._call("POST", "/network/revert", TrialInfo)

    # -- status ------------------------------------------------------------------------

    async def overview(self) -> Overview:
        return await self._call("GET", "/overview", Overview)
