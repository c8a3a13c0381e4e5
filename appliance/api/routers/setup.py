"""First-boot setup: language, system identity, admin account, quick extensions, finish."""

from __future__ import annotations

from fastapi import APIRouter

from appliance.api.console_deps import SetupDep, refuse
from appliance.api.schemas.setup import (
    AdminBody,
    ExtensionRangeBody,
    ExtensionRangeResult,
    FinishResult,
    LanguageBody,
    SetupState,
    SystemBody,
)
from appliance.setup.service import SetupError

router = APIRouter(prefix="/setup", tags=["setup"])


@router.get("")
def get_setup(setup: SetupDep) -> SetupState:
    return setup.state()


@router.put("/language")
def put_language(body: LanguageBody, setup: SetupDep) -> SetupState:
    return setup.set_language(body.language)


@router.put("/system")
def put_system(body: SystemBody, setup: SetupDep) -> SetupState:
    try:
        return setup.set_system(body.hostname, body.timezone, body.ntp_servers)
    except SetupError as exc:
        refuse(exc)


@router.post("/admin")
def post_admin(body: AdminBody, setup: SetupDep) -> SetupState:
    return setup.create_admin(body.username, body.password)


@router.post("/extensions")
def post_extension_range(body: ExtensionRangeBody, setup: SetupDep) -> ExtensionRangeResult:
    """Create a range of extensions with generated passwords (shown this once) and a sheet."""
    try:
        return setup.create_extension_range(body.first, body.last)
    except SetupError as exc:
        refuse(exc)


@router.post("/finish")
def post_finish(setup: SetupDep) -> FinishResult:
    return setup.finish()
