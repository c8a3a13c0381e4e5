"""Registered phones (the registrar's active bindings)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from appliance.api.errors import AUTH, responses
from appliance.api.policy import Permission, Principal, box, require

router = APIRouter(prefix="/registrations", tags=["registrations"])


class RegistrationOut(BaseModel):
    extension: str
    contact: str
    expires_at: float
    expires_in: float
    transport: str
    source_host: str
    source_port: int
    user_agent: str | None
    updated_at: float


@router.get("", response_model=list[RegistrationOut], responses=responses(*AUTH, 422))
def list_registrations(
    request: Request,
    _: Annotated[Principal, Depends(require(Permission.REGISTRATIONS_READ))],
    extension: Annotated[str | None, Query(pattern=r"^[0-9]{1,16}$")] = None,
) -> list[RegistrationOut]:
    ctx = box(request)
    now = ctx.clock()
    if extension is None:
        bindings = ctx.store.bindings.all_active(now)
    else:
        bindings = ctx.store.bindings.list(extension, now)
    return [
        RegistrationOut(
            extension=b.aor,
            contact=b.contact,
            expires_at=b.expires_at,
            expires_in=max(0.0, b.expires_at - now),
            transport=b.source_transport,
            source_host=b.source_host,
            source_port=b.source_port,
            user_agent=b.user_agent,
            updated_at=b.updated_at,
        )
        for b in bindings
    ]
