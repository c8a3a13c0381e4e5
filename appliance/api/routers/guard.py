"""The SIP door guard: sources banned for password guessing or floods; an admin lifts a ban."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, IPvAnyAddress

from appliance.api.context import GuardControl
from appliance.api.errors import AUTH, responses
from appliance.api.policy import Permission, Principal, audit, box, require

router = APIRouter(prefix="/sip/bans", tags=["sip"])


class BanOut(BaseModel):
    address: str
    seconds_left: float


def _guard(request: Request) -> GuardControl:
    guard = box(request).guard
    if guard is None:
        raise HTTPException(503, "the SIP core does not run in this box")
    return guard


@router.get("", response_model=list[BanOut], responses=responses(*AUTH, 503))
async def list_bans(
    request: Request, _: Annotated[Principal, Depends(require(Permission.SYSTEM_READ))]
) -> list[BanOut]:
    try:
        bans = await _guard(request).bans()
    except (OSError, TimeoutError) as exc:
        raise HTTPException(503, "the SIP core is not answering") from exc
    return [BanOut(address=b.address, seconds_left=b.seconds_left) for b in bans]


@router.delete("/{address}", status_code=204, responses=responses(*AUTH, 404, 503))
async def lift_ban(
    request: Request,
    address: IPvAnyAddress,
    who: Annotated[Principal, Depends(require(Permission.CONFIG_WRITE))],
) -> None:
    """Let the address in again (a phone that was mistyped, an office behind one NAT)."""
    try:
        lifted = await _guard(request).unban(str(address))
    except (OSError, TimeoutError) as exc:
        raise HTTPException(503, "the SIP core is not answering") from exc
    if not lifted:
        raise HTTPException(404, f"{address} is not banned")
    audit(request, who.login, "sip.unbanned", str(address))
