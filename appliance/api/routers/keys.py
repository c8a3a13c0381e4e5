"""The site identity that recordings are encrypted to: create, export protected, confirm backup.

The identity itself never leaves through the API; only its recipient and a passphrase-protected
copy written to a removable disk do.
"""

from __future__ import annotations

from fastapi import APIRouter

from appliance.api.console_deps import SetupDep, refuse
from appliance.api.schemas.setup import ExportBody, ExportInfo, IdentityInfo, SetupState
from appliance.setup.service import SetupError

router = APIRouter(prefix="/keys/site-identity", tags=["keys"])


@router.post("")
def create_identity(setup: SetupDep) -> IdentityInfo:
    return setup.create_identity()


@router.post("/export")
def export_identity(body: ExportBody, setup: SetupDep) -> ExportInfo:
    try:
        return setup.export_identity(body.passphrase, body.directory)
    except SetupError as exc:
        refuse(exc)


@router.post("/backup-confirmed")
def confirm_backup(setup: SetupDep) -> SetupState:
    try:
        return setup.confirm_backup()
    except SetupError as exc:
        refuse(exc)
