"""Pairing the box with the cloud cabinet by the code the installer enters."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from appliance.api.console_deps import SetupDep
from appliance.api.errors import AUTH, responses
from appliance.api.policy import Permission, Principal, audit, require
from appliance.api.schemas.setup import PairBody, PairingState

router = APIRouter(prefix="/pairing", tags=["pairing"])


@router.get("", response_model=PairingState, responses=responses(*AUTH))
def get_pairing(
    setup: SetupDep, _: Annotated[Principal, Depends(require(Permission.CONFIG_READ))]
) -> PairingState:
    return setup.state().pairing


@router.post("", response_model=PairingState, responses=responses(*AUTH, 422))
def post_pairing(
    request: Request,
    body: PairBody,
    setup: SetupDep,
    who: Annotated[Principal, Depends(require(Permission.CONFIG_WRITE))],
) -> PairingState:
    state = setup.pair(body.code)
    audit(request, who.login, "pairing.attempt", state.state)  # the code itself is not kept
    return state
