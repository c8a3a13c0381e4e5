"""System: version, health (no login: for probes and the console), alarms."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from appliance.api.errors import AUTH, responses
from appliance.api.policy import Permission, Principal, box, require

router = APIRouter(prefix="/system", tags=["system"])


class VersionOut(BaseModel):
    version: str
    api: str = "1"


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"]
    parts: dict[str, bool]


class AlarmOut(BaseModel):
    code: str
    source: str
    severity: Literal["warning", "critical"]
    message: str
    since: float


@router.get("/health", response_model=HealthOut)
def health(request: Request) -> HealthOut:
    """Whether the API and its store answer; which optional parts run in this box."""
    ctx = box(request)
    ctx.store.metadata.one("SELECT 1")
    ctx.store.local.one("SELECT 1")
    parts = {
        "store": True,
        "calls": ctx.calls is not None,
        "recordings": ctx.recordings is not None,
        "sync": ctx.sync is not None,
    }
    critical = any(a.to_json().get("severity") == "critical" for a in ctx.all_alarms())
    return HealthOut(status="degraded" if critical else "ok", parts=parts)


@router.get("/version", response_model=VersionOut, responses=responses(*AUTH))
def get_version(
    request: Request, _: Annotated[Principal, Depends(require(Permission.SYSTEM_READ))]
) -> VersionOut:
    return VersionOut(version=box(request).version)


@router.get("/alarms", response_model=list[AlarmOut], responses=responses(*AUTH))
def alarms(
    request: Request, _: Annotated[Principal, Depends(require(Permission.SYSTEM_READ))]
) -> list[AlarmOut]:
    """Active alarms from every part of the box (sync, later gateways and storage)."""
    return [AlarmOut.model_validate(a.to_json()) for a in box(request).all_alarms()]
