"""The audit log: read with filters, and verify the hash chain."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from appliance.api.errors import AUTH, responses
from appliance.api.policy import Permission, Principal, box, require
from pbx.store import MAX_PAGE

router = APIRouter(prefix="/audit", tags=["audit"])

Reader = Annotated[Principal, Depends(require(Permission.AUDIT_READ))]


class AuditEventOut(BaseModel):
    seq: int
    time: float
    actor: str
    origin: str
    action: str
    target: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    items: list[AuditEventOut]
    next_after: int | None


class VerifyOut(BaseModel):
    ok: bool
    events: int
    head: str
    bad_seq: int | None
    problem: str


@router.get("/events", response_model=AuditPage, responses=responses(*AUTH, 422))
def events(
    request: Request,
    _: Reader,
    after: Annotated[int, Query(ge=0, le=2**62, description="events with seq > after")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    action: Annotated[str | None, Query(max_length=100, description="a prefix")] = None,
    target: Annotated[str | None, Query(max_length=200)] = None,
) -> AuditPage:
    """Oldest first; pass ``next_after`` as ``after`` for the next page."""
    found = box(request).store.audit.events(after=after, limit=limit, action=action, target=target)
    items = [
        AuditEventOut(
            seq=e.seq,
            time=e.time,
            actor=e.actor,
            origin=e.origin,
            action=e.action,
            target=e.target,
            detail=dict(e.detail),
            prev_hash=e.prev_hash,
            hash=e.hash,
        )
        for e in found
    ]
    return AuditPage(items=items, next_after=items[-1].seq if len(items) == limit else None)


@router.get("/verify", response_model=VerifyOut, responses=responses(*AUTH))
def verify(request: Request, _: Reader) -> VerifyOut:
    """Check the whole chain against the anchor kept in local.db."""
    r = box(request).store.audit.verify()
    return VerifyOut(ok=r.ok, events=r.events, head=r.head, bad_seq=r.bad_seq, problem=r.problem)
