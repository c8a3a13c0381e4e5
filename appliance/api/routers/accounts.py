"""Admin accounts: LAN only (admin credentials are secrets of the box), admin role."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from appliance.api.accounts import MAX_PASSWORD, MIN_PASSWORD, AccountStore, Role
from appliance.api.errors import AUTH, responses
from appliance.api.policy import Permission, Principal, audit, require
from appliance.api.routers.auth import LOGIN_PATTERN, AccountOut, _In, checked_account_fields

router = APIRouter(prefix="/accounts", tags=["accounts"])

Admin = Annotated[Principal, Depends(require(Permission.ACCOUNTS_MANAGE))]


class AccountIn(_In):
    login: str = Field(pattern=LOGIN_PATTERN, description="letters, digits, '.', '_', '-'")
    role: Role
    password: str | None = Field(
        None,
        min_length=MIN_PASSWORD,
        max_length=MAX_PASSWORD,
        description="omit to have one generated",
    )


class AccountCreated(BaseModel):
    account: AccountOut
    password: str | None = Field(description="the generated password; shown this once only")


class AccountPatch(_In):
    role: Role | None = None
    enabled: bool | None = None


class PasswordIn(_In):
    password: str | None = Field(
        None, min_length=MIN_PASSWORD, max_length=MAX_PASSWORD, description="omit to generate"
    )


class PasswordOut(BaseModel):
    password: str | None = Field(description="the generated password; shown this once only")


def _store(request: Request) -> AccountStore:
    store: AccountStore = request.app.state.accounts
    return store


def _existing(request: Request, login: str) -> AccountOut:
    account = _store(request).get(login)
    if account is None:
        raise HTTPException(404, f"no account {login!r}")
    return AccountOut.of(account)


@router.get("", response_model=list[AccountOut], responses=responses(*AUTH))
def list_accounts(request: Request, _: Admin) -> list[AccountOut]:
    return [AccountOut.of(a) for a in _store(request).list()]


@router.post(
    "", response_model=AccountCreated, status_code=201, responses=responses(*AUTH, 409, 422)
)
def create_account(request: Request, body: AccountIn, who: Admin) -> AccountCreated:
    login = body.login.lower()
    checked_account_fields(login, body.password)
    if _store(request).get(login) is not None:
        raise HTTPException(409, f"account {login!r} exists already")
    generated = secrets.token_urlsafe(15) if body.password is None else None
    account = _store(request).create(login, body.password or generated or "", body.role)
    audit(request, who.login, "account.created", login, {"role": body.role.value})
    return AccountCreated(account=AccountOut.of(account), password=generated)


@router.get("/{login}", response_model=AccountOut, responses=responses(*AUTH, 404))
def get_account(request: Request, login: str, _: Admin) -> AccountOut:
    return _existing(request, login)


def _last_admin(request: Request, login: str) -> bool:
    store = _store(request)
    account = store.get(login)
    return (
        account is not None
        and account.role is Role.ADMIN
        and account.enabled
        and store.admins() <= 1
    )


@router.patch("/{login}", response_model=AccountOut, responses=responses(*AUTH, 404, 409, 422))
def update_account(request: Request, login: str, body: AccountPatch, who: Admin) -> AccountOut:
    _existing(request, login)
    demoted = (body.role is not None and body.role is not Role.ADMIN) or body.enabled is False
    if demoted and _last_admin(request, login):
        raise HTTPException(409, "this is the last enabled admin account; keep one")
    account = _store(request).update(login, role=body.role, enabled=body.enabled)
    changes = body.model_dump(mode="json", exclude_none=True)
    audit(request, who.login, "account.updated", login, changes)
    return AccountOut.of(account)


@router.post("/{login}/password", response_model=PasswordOut, responses=responses(*AUTH, 404, 422))
def set_account_password(request: Request, login: str, body: PasswordIn, who: Admin) -> PasswordOut:
    _existing(request, login)
    checked_account_fields(None, body.password)
    generated = secrets.token_urlsafe(15) if body.password is None else None
    _store(request).set_password(login, body.password or generated or "")
    audit(request, who.login, "account.password_set", login, {"generated": generated is not None})
    return PasswordOut(password=generated)


@router.delete("/{login}", status_code=204, responses=responses(*AUTH, 409))
def delete_account(request: Request, login: str, who: Admin) -> None:
    if _last_admin(request, login):
        raise HTTPException(409, "this is the last enabled admin account; keep one")
    if _store(request).delete(login):
        audit(request, who.login, "account.deleted", login)
