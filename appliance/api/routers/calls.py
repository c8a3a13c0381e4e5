"""Calls in progress: list, hang up (supervisor)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel

from appliance.api.context import CallControl
from appliance.api.errors import AUTH, responses
from appliance.api.policy import Permission, Principal, audit, box, require

router = APIRouter(prefix="/calls", tags=["calls"])


class ActiveCallOut(BaseModel):
    call_id: str
    caller: str
    caller_name: str
    dialed: str
    callee: str | None
    state: Literal["ringing", "answered"]
    start_time: float
    answer_time: float | None
    codec: str | None


def _calls(request: Request) -> CallControl:
    calls = box(request).calls
    if calls is None:
        raise HTTPException(503, "the SIP core does not run in this process")
    return calls


@router.get("", response_model=list[ActiveCallOut], responses=responses(*AUTH, 503))
async def list_calls(
    request: Request, _: Annotated[Principal, Depends(require(Permission.CALLS_READ))]
) -> list[ActiveCallOut]:
    return [
        ActiveCallOut(
            call_id=c.call_id,
            caller=c.caller,
            caller_name=c.caller_name,
            dialed=c.dialed,
            callee=c.callee,
            state="answered" if c.state == "answered" else "ringing",
            start_time=c.start_time,
            answer_time=c.answer_time,
            codec=c.codec,
        )
        for c in _calls(request).active()
    ]


@router.delete("/{call_id}", status_code=204, responses=responses(*AUTH, 404, 503))
async def hang_up(
    request: Request,
    call_id: str,
    who: Annotated[Principal, Depends(require(Permission.CALLS_HANGUP))],
) -> None:
    """End the call: BYE to both phones if answered, CANCEL while ringing."""
    if not await _calls(request).hangup(call_id):
        raise HTTPException(404, f"no call {call_id} in progress")
    audit(request, who.login, "call.hung_up", call_id)
