"""Login tokens: log in, log out, who am I; and the first admin account of a new box."""

from __future__ import annotations

import ipaddress
import math
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from appliance.api.accounts import (
    MAX_PASSWORD,
    MIN_PASSWORD,
    Account,
    AccountStore,
    LoginRefused,
    LoginThrottle,
    Role,
    check_login_name,
    check_password,
)
from appliance.api.errors import AUTH, Invalid, responses
from appliance.api.policy import Permission, Principal, audit, origin_of, require
from pbx.store import InvalidValue

router = APIRouter(prefix="/auth", tags=["auth"])


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


LOGIN_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class LoginIn(_In):
    login: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD)


class TokenOut(BaseModel):
    token: str = Field(description="send as `Authorization: Bearer <token>`")
    token_type: str = "bearer"
    expires_at: float
    login: str
    role: Role


class MeOut(BaseModel):
    login: str
    role: Role
    origin: str


def _accounts(request: Request) -> AccountStore:
    store: AccountStore = request.app.state.accounts
    return store


def source_address(request: Request) -> str:
    """Where a login came from, for the per-address limit: the peer address, "local" on a
    unix socket, and the cloud link as one address of its own."""
    host = request.client.host if request.client else "local"
    return f"cloud:{host}" if origin_of(request.scope) == "cloud" else host


@router.post(
    "/login",
    response_model=TokenOut,
    responses=responses(401, 422, 429),
    summary="Log in; the token is valid for token_ttl seconds",
)
def login(request: Request, body: LoginIn, response: Response) -> TokenOut:
    accounts = _accounts(request)
    throttle: LoginThrottle = request.app.state.throttle
    name = body.login.lower()
    try:
        throttle.before(name, source_address(request))
    except LoginRefused as exc:
        wait = math.ceil(exc.retry_after or 1)
        audit(request, name, "auth.throttled", name, {"reason": exc.reason})
        raise HTTPException(429, exc.reason, headers={"Retry-After": str(wait)}) from None
    account = accounts.verify_password(name, body.password)
    if account is None:
        locked = throttle.failed(name)
        audit(request, name, "auth.login_failed", name, {"locked": locked})
        raise HTTPException(401, "wrong login or password", headers={"WWW-Authenticate": "Bearer"})
    throttle.succeeded(name)
    token, session = accounts.open_session(account.login)
    audit(request, account.login, "auth.login", account.login, {"role": account.role.value})
    response.headers["Cache-Control"] = "no-store"
    return TokenOut(
        token=token, expires_at=session.expires_at, login=account.login, role=account.role
    )


@router.post("/logout", status_code=204, responses=responses(*AUTH))
def logout(request: Request, who: Annotated[Principal, Depends(require(Permission.SELF))]) -> None:
    _accounts(request).close_session(who.token)
    audit(request, who.login, "auth.logout", who.login)


@router.get("/me", response_model=MeOut, responses=responses(*AUTH))
def me(who: Annotated[Principal, Depends(require(Permission.SELF))]) -> MeOut:
    return MeOut(login=who.login, role=who.role, origin=who.origin)


class PasswordChangeIn(_In):
    current_password: str = Field(min_length=1, max_length=MAX_PASSWORD)
    new_password: str = Field(min_length=MIN_PASSWORD, max_length=MAX_PASSWORD)


@router.post(
    "/password",
    status_code=204,
    responses=responses(*AUTH, 422, 429),
    summary="Change one's own password (LAN only); every session of the account ends",
)
def change_password(
    request: Request,
    body: PasswordChangeIn,
    who: Annotated[Principal, Depends(require(Permission.OWN_PASSWORD))],
) -> None:
    accounts = _accounts(request)
    throttle: LoginThrottle = request.app.state.throttle
    try:
        throttle.before(who.login, source_address(request))
    except LoginRefused as exc:
        wait = math.ceil(exc.retry_after or 1)
        raise HTTPException(429, exc.reason, headers={"Retry-After": str(wait)}) from None
    if accounts.verify_password(who.login, body.current_password) is None:
        throttle.failed(who.login)
        audit(request, who.login, "account.password_change_failed", who.login)
        raise HTTPException(403, "the current password is wrong")
    throttle.succeeded(who.login)
    accounts.set_password(who.login, body.new_password)
    audit(request, who.login, "account.password_changed", who.login)


class BootstrapIn(_In):
    login: str = Field(pattern=LOGIN_PATTERN, description="letters, digits, '.', '_', '-'")
    password: str = Field(min_length=MIN_PASSWORD, max_length=MAX_PASSWORD)


class AccountOut(BaseModel):
    login: str
    role: Role
    enabled: bool
    created_at: float
    updated_at: float

    @classmethod
    def of(cls, a: Account) -> AccountOut:
        return cls(
            login=a.login,
            role=a.role,
            enabled=a.enabled,
            created_at=a.created_at,
            updated_at=a.updated_at,
        )


def _local_peer(request: Request) -> bool:
    if request.client is None:  # a unix socket: the console on the box itself
        return True
    try:
        return ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return False


@router.post(
    "/bootstrap",
    response_model=AccountOut,
    status_code=201,
    responses=responses(403, 409, 422),
    summary="Create the first admin account (only on the box itself, only once)",
)
def bootstrap(request: Request, body: BootstrapIn) -> AccountOut:
    accounts = _accounts(request)
    if origin_of(request.scope) == "cloud" or not _local_peer(request):
        raise HTTPException(403, "the first account can only be created on the box itself")
    if accounts.count() > 0:
        raise HTTPException(409, "accounts exist already; log in as an admin instead")
    name = body.login.lower()
    checked_account_fields(name, body.password)
    account = accounts.create_first(name, body.password)
    if account is None:
        raise HTTPException(409, "accounts exist already; log in as an admin instead")
    audit(request, account.login, "account.created", account.login, {"role": "admin"})
    return AccountOut.of(account)


def checked_account_fields(login: str | None, password: str | None) -> None:
    """Login and password rules, answered 422 naming the field."""
    try:
        if login is not None:
            check_login_name(login)
    except InvalidValue as exc:
        raise Invalid(["body", "login"], str(exc)) from None
    try:
        if password is not None:
            check_password(password)
    except InvalidValue as exc:
        raise Invalid(["body", "password"], str(exc)) from None
