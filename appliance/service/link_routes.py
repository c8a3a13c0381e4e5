"""The cloud link's two API routes, added to the management API by the manager process
(the process that runs the link): its status, and pairing with the installer's code.

Pairing decides who manages the box remotely, so it takes the admin role and is LAN only
(``ACCOUNTS_MANAGE`` is in the policy point's LAN-only set): the cloud can never re-pair the
box to another cabinet. Every pairing attempt is an audit event (``link.paired`` or
``link.pair_refused``); the code and the credential are never in it.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel, Field

from appliance.api.errors import AUTH, responses
from appliance.api.policy import Permission, Principal, audit, require
from appliance.link.client import LinkClient, LinkPhase

__all__ = ["install_link_routes"]

router = APIRouter(prefix="/link", tags=["link"])


class LinkStatusOut(BaseModel):
    phase: str = Field(description="unpaired, connecting, connected, waiting, refused, stopped")
    detail: str
    cabinet_url: str
    box_id: str | None
    connects: int
    in_flight: int


class PairIn(BaseModel):
    code: str = Field(min_length=4, max_length=64, pattern=r"^[A-Za-z0-9-]+$")


def _client(request: Request) -> LinkClient:
    client: LinkClient | None = request.app.state.link_client()
    if client is None:
        raise HTTPException(503, "the cloud link does not run in this box")
    return client


def _out(client: LinkClient) -> LinkStatusOut:
    s = client.status
    return LinkStatusOut(
        phase=s.phase.value,
        detail=s.detail,
        cabinet_url=client.settings.cabinet_url,
        box_id=s.box_id,
        connects=s.connects,
        in_flight=s.in_flight,
    )


@router.get("/status", response_model=LinkStatusOut, responses=responses(*AUTH, 503))
def link_status(
    request: Request, _: Annotated[Principal, Depends(require(Permission.SYSTEM_READ))]
) -> LinkStatusOut:
    return _out(_client(request))


@router.post(
    "/pair",
    response_model=LinkStatusOut,
    responses=responses(*AUTH, 409, 503),
    summary="Pair the box with the cabinet using the installer's code",
)
async def pair(
    request: Request,
    body: PairIn,
    who: Annotated[Principal, Depends(require(Permission.ACCOUNTS_MANAGE))],
) -> LinkStatusOut:
    """Waits up to 10 s for the cabinet's answer: 200 when paired, 409 when the cabinet
    refused the code (unknown, expired or used), 200 with phase ``waiting`` if the cabinet
    could not be reached yet (the box keeps trying with that code)."""
    client = _client(request)
    before = client.status.connects
    client.pair(body.code)
    try:
        async with asyncio.timeout(10):
            while True:
                status = client.status
                if status.phase is LinkPhase.REFUSED or (
                    status.phase is LinkPhase.CONNECTED and status.connects > before
                ):
                    break
                await asyncio.sleep(0.05)
    except TimeoutError:
        return _out(client)
    if status.phase is LinkPhase.REFUSED:
        audit(request, who.login, "link.pair_refused", client.settings.cabinet_url)
        raise HTTPException(409, status.detail)
    audit(request, who.login, "link.paired", client.settings.cabinet_url, {"box_id": status.box_id})
    return _out(client)


def install_link_routes(app: FastAPI) -> None:
    """Add the routes; ``app.state.link_client`` must return the running client or None."""
    if not hasattr(app.state, "link_client"):
        app.state.link_client = lambda: None
    app.include_router(router)
