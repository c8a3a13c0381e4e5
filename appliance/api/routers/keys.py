"""The site identity that recordings are encrypted to: create, export protected, confirm backup.

LAN only: the identity never leaves through the API; only its recipient, and a
passphrase-protected copy written to a removable disk on the box, do.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from appliance.api.console_deps import SetupDep, refuse
from appliance.api.errors import AUTH, responses
from appliance.api.policy import Permission, Principal, audit, require
from appliance.api.schemas.setup import (
    ExportBody,
    ExportInfo,
    IdentityBody,
    IdentityInfo,
    SetupState,
)
from appliance.setup.service import SetupError

router = APIRouter(prefix="/keys/site-identity", tags=["keys"])

Keys = Annotated[Principal, Depends(require(Permission.KEYS_MANAGE))]


@router.post("", response_model=IdentityInfo, responses=responses(*AUTH, 422))
def create_identity(
    request: Request, body: IdentityBody, setup: SetupDep, who: Keys
) -> IdentityInfo:
    """Create the site identity once, protected by the passphrase; later calls return its
    recipient (never a new key: rotation is `edgepbx keys rotate`)."""
    info = setup.create_identity(body.passphrase)
    if info.created:
        audit(request, who.login, "keys.identity_created", info.recipient)
    return info


@router.post("/export", response_model=ExportInfo, responses=responses(*AUTH, 409, 422))
def export_identity(request: Request, body: ExportBody, setup: SetupDep, who: Keys) -> ExportInfo:
    try:
        info = setup.export_identity(body.directory)
    except SetupError as exc:
        refuse(exc)
    audit(request, who.login, "keys.identity_exported", info.path)
    return info


@router.post("/backup-confirmed", response_model=SetupState, responses=responses(*AUTH, 409))
def confirm_backup(request: Request, setup: SetupDep, who: Keys) -> SetupState:
    try:
        state = setup.confirm_backup()
    except SetupError as exc:
        refuse(exc)
    audit(request, who.login, "keys.backup_confirmed")
    return state
