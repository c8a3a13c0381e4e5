"""Metadata replication status."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel

from appliance.api.errors import AUTH, responses
from appliance.api.policy import Permission, Principal, box, require
from appliance.api.routers.system import AlarmOut

router = APIRouter(prefix="/sync", tags=["sync"])


class SyncStatusOut(BaseModel):
    state: str
    target: str
    last_sync_at: float | None = None
    lag_seconds: float | None = None
    local_txid: int | None = None
    replicated_txid: int | None = None
    restarts: int = 0
    last_error: str | None = None
    alarms: list[AlarmOut] = []
    updated_at: float = 0.0


@router.get("/status", response_model=SyncStatusOut, responses=responses(*AUTH, 503))
def sync_status(
    request: Request, _: Annotated[Principal, Depends(require(Permission.SYNC_READ))]
) -> SyncStatusOut:
    sync = box(request).sync
    if sync is None:
        raise HTTPException(503, "sync does not run in this box")
    return SyncStatusOut.model_validate(sync.status().to_json())
