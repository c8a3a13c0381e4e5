"""Pairing the box with the cloud cabinet by the code the installer enters."""

from __future__ import annotations

from fastapi import APIRouter

from appliance.api.console_deps import SetupDep
from appliance.api.schemas.setup import PairBody, PairingState

router = APIRouter(prefix="/pairing", tags=["pairing"])


@router.get("")
def get_pairing(setup: SetupDep) -> PairingState:
    return setup.state().pairing


@router.post("")
def post_pairing(body: PairBody, setup: SetupDep) -> PairingState:
    return setup.pair(body.code)
