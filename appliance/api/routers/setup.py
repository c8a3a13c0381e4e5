"""First-boot setup: language, host name and time, quick extensions, finish.

The first admin account is made with ``POST /auth/bootstrap``; the console then logs in.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from appliance.api.accounts import AccountStore, Role
from appliance.api.console_deps import SetupDep, refuse
from appliance.api.errors import AUTH, responses
from appliance.api.policy import Permission, Principal, also_require, audit, box, require
from appliance.api.schemas.setup import (
    ExtensionRangeBody,
    ExtensionRangeResult,
    FinishResult,
    LanguageBody,
    SetupState,
    SystemBody,
    Welcome,
)
from appliance.setup.service import SetupError

router = APIRouter(prefix="/setup", tags=["setup"])

Reader = Annotated[Principal, Depends(require(Permission.CONFIG_READ))]
Writer = Annotated[Principal, Depends(require(Permission.CONFIG_WRITE))]
# the answer carries generated SIP passwords: a secret read (LAN only)
SecretReader = Annotated[Principal, Depends(require(Permission.SECRETS_READ))]


def _accounts(request: Request) -> AccountStore:
    accounts: AccountStore = request.app.state.accounts
    return accounts


def _first_admin(request: Request) -> str | None:
    admins = [a.login for a in _accounts(request).list() if a.role is Role.ADMIN and a.enabled]
    return admins[0] if admins else None


def _state(request: Request, setup: SetupDep) -> SetupState:
    return setup.state().model_copy(update={"admin_user": _first_admin(request)})


@router.get("/welcome", response_model=Welcome)
def welcome(request: Request, setup: SetupDep) -> Welcome:
    """No login: whether this is a new box (no account yet) and the console's language."""
    return Welcome(first_boot=_accounts(request).count() == 0, language=setup.state().language)


@router.get("", response_model=SetupState, responses=responses(*AUTH))
def get_setup(request: Request, setup: SetupDep, _: Reader) -> SetupState:
    return _state(request, setup)


@router.put("/language", response_model=SetupState, responses=responses(*AUTH, 422))
def put_language(request: Request, body: LanguageBody, setup: SetupDep, who: Writer) -> SetupState:
    setup.set_language(body.language)
    audit(request, who.login, "setup.language", body.language)
    return _state(request, setup)


@router.put("/system", response_model=SetupState, responses=responses(*AUTH, 422))
def put_system(request: Request, body: SystemBody, setup: SetupDep, who: Writer) -> SetupState:
    try:
        setup.set_system(body.hostname, body.timezone, body.ntp_servers)
    except SetupError as exc:
        refuse(exc)
    audit(request, who.login, "setup.system", body.hostname, {"timezone": body.timezone})
    return _state(request, setup)


@router.post(
    "/extensions", response_model=ExtensionRangeResult, responses=responses(*AUTH, 409, 422)
)
def post_extension_range(
    request: Request, body: ExtensionRangeBody, setup: SetupDep, who: SecretReader
) -> ExtensionRangeResult:
    """Create a range of extensions with generated passwords (shown this once) and a sheet."""
    also_require(request, who, Permission.EXTENSIONS_WRITE)
    try:
        result = setup.create_extension_range(body.first, body.last, box(request).sip.domain)
    except SetupError as exc:
        refuse(exc)
    detail = {"count": len(result.extensions)}
    audit(request, who.login, "extension.range_created", f"{body.first}-{body.last}", detail)
    return result


@router.post("/finish", response_model=FinishResult, responses=responses(*AUTH))
def post_finish(request: Request, setup: SetupDep, who: Writer) -> FinishResult:
    result = setup.finish(has_admin=_first_admin(request) is not None)
    if result.completed:
        audit(request, who.login, "setup.completed")
    return result
