"""Extensions: create, list, get, update, delete; passwords set or generated.

A generated password is in the answer of the request that generated it and nowhere else:
the store keeps only HA1 digests. Generated passwords are a secret read, so the cloud origin
cannot have one generated (it may set a password it chose itself).
"""

from __future__ import annotations

import secrets
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from appliance.api.config import PRINTABLE, ConfigService, ExtensionConfig
from appliance.api.errors import AUTH, Invalid, responses
from appliance.api.policy import Permission, Principal, audit, box, enforce, require
from pbx.store import Extension, InvalidValue

router = APIRouter(prefix="/extensions", tags=["extensions"])

Reader = Annotated[Principal, Depends(require(Permission.EXTENSIONS_READ))]
Writer = Annotated[Principal, Depends(require(Permission.EXTENSIONS_WRITE))]
SecretWriter = Annotated[Principal, Depends(require(Permission.SECRETS_WRITE))]
SecretReader = Annotated[Principal, Depends(require(Permission.SECRETS_READ))]

MIN_SIP_PASSWORD = 8
NUMBER = r"^[0-9]{1,16}$"


class ExtensionOut(ExtensionConfig):
    has_password: bool
    created_at: float
    updated_at: float


class ExtensionIn(ExtensionConfig):
    password: str | None = Field(
        None,
        min_length=MIN_SIP_PASSWORD,
        max_length=128,
        description="the SIP password; omit to have one generated (LAN only)",
    )
    generate_password: bool = Field(
        True, description="with no password given: generate one (true) or leave none (false)"
    )


class ExtensionCreated(BaseModel):
    extension: ExtensionOut
    password: str | None = Field(description="the generated password; shown this once only")


class ExtensionPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    display_name: str | None = Field(None, max_length=64, pattern=PRINTABLE)
    enabled: bool | None = None
    call_limit: int | None = Field(None, ge=1, le=1000)
    ring_timeout: int | None = Field(None, ge=1, le=3600)
    record_calls: Literal["none", "inbound", "outbound", "both"] | None = None


class PasswordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: str = Field(min_length=MIN_SIP_PASSWORD, max_length=128)


class PasswordOut(BaseModel):
    password: str = Field(description="the generated password; shown this once only")


def _out(request: Request, e: Extension) -> ExtensionOut:
    has = box(request).store.directory.secret(e.number) is not None
    base = ExtensionConfig.of(e).model_dump()
    return ExtensionOut(**base, has_password=has, created_at=e.created_at, updated_at=e.updated_at)


def _existing(request: Request, number: str) -> Extension:
    e = box(request).store.directory.get(number)
    if e is None:
        raise HTTPException(404, f"no extension {number}")
    return e


def _snapshot(request: Request, who: Principal) -> None:
    config: ConfigService = request.app.state.config
    config.snapshot(actor=who.login, origin=who.origin)


def _set_password(request: Request, number: str, password: str) -> None:
    ctx = box(request)
    try:
        ctx.store.directory.set_password(number, password, ctx.sip.domain)
    except InvalidValue as exc:
        raise Invalid(["body", "password"], str(exc)) from None


@router.get("", response_model=list[ExtensionOut], responses=responses(*AUTH))
def list_extensions(request: Request, _: Reader) -> list[ExtensionOut]:
    return [_out(request, e) for e in box(request).store.directory.list()]


@router.post(
    "", response_model=ExtensionCreated, status_code=201, responses=responses(*AUTH, 409, 422)
)
def create_extension(request: Request, body: ExtensionIn, who: Writer) -> ExtensionCreated:
    generate = body.password is None and body.generate_password
    if body.password is not None:
        enforce(request, who.token, Permission.SECRETS_WRITE)
    if generate:
        enforce(request, who.token, Permission.SECRETS_READ)
    directory = box(request).store.directory
    if directory.get(body.number) is not None:
        raise HTTPException(409, f"extension {body.number} exists already")
    created = directory.create(ExtensionConfig.model_validate(body.model_dump(
        exclude={"password", "generate_password"})).to_extension())  # fmt: skip
    password = secrets.token_urlsafe(12) if generate else body.password
    if password is not None:
        _set_password(request, body.number, password)
    audit(
        request,
        who.login,
        "extension.created",
        body.number,
        {"sip_auth": "generated" if generate else "set" if password else "none"},
    )
    _snapshot(request, who)
    return ExtensionCreated(
        extension=_out(request, created), password=password if generate else None
    )


@router.get("/{number}", response_model=ExtensionOut, responses=responses(*AUTH, 404))
def get_extension(request: Request, number: str, _: Reader) -> ExtensionOut:
    return _out(request, _existing(request, number))


@router.patch("/{number}", response_model=ExtensionOut, responses=responses(*AUTH, 404, 422))
def update_extension(
    request: Request, number: str, body: ExtensionPatch, who: Writer
) -> ExtensionOut:
    current = _existing(request, number)
    changes = body.model_dump(exclude_none=True)
    if not changes:
        return _out(request, current)
    merged = ExtensionConfig.of(current).model_dump() | changes
    try:
        wanted = ExtensionConfig.model_validate(merged).to_extension()
    except ValidationError as exc:
        first = exc.errors()[0]
        raise Invalid(["body", *first["loc"]], first["msg"]) from None
    updated = box(request).store.directory.update(wanted)
    audit(request, who.login, "extension.updated", number, changes)
    _snapshot(request, who)
    return _out(request, updated)


@router.delete("/{number}", status_code=204, responses=responses(*AUTH))
def delete_extension(request: Request, number: str, who: Writer) -> None:
    """Deleting an extension that is already gone succeeds too."""
    if box(request).store.directory.delete(number):
        audit(request, who.login, "extension.deleted", number)
        _snapshot(request, who)


@router.put("/{number}/password", status_code=204, responses=responses(*AUTH, 404, 422))
def set_extension_password(
    request: Request, number: str, body: PasswordIn, who: SecretWriter
) -> None:
    """Set the SIP password to a value the caller chose (allowed from the cloud: a write)."""
    _existing(request, number)
    _set_password(request, number, body.password)
    audit(request, who.login, "extension.password_set", number, {"how": "set"})


@router.post(
    "/{number}/password",
    response_model=PasswordOut,
    responses=responses(*AUTH, 404),
    summary="Generate a new SIP password, answered this once (LAN only)",
)
def generate_extension_password(request: Request, number: str, who: SecretReader) -> PasswordOut:
    _existing(request, number)
    password = secrets.token_urlsafe(12)
    _set_password(request, number, password)
    audit(request, who.login, "extension.password_set", number, {"how": "generated"})
    return PasswordOut(password=password)
