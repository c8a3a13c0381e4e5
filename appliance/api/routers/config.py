"""The configuration document: GET, PUT (versioned, atomic, rolled back on failure), status."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError

from appliance.api.config import (
    ConfigConflict,
    ConfigDocument,
    ConfigRejected,
    ConfigService,
    ConfigStatus,
)
from appliance.api.errors import AUTH, FieldError, responses
from appliance.api.policy import Permission, Principal, origin_of, principal_of, require

router = APIRouter(prefix="/config", tags=["config"])


def _service(request: Request) -> ConfigService:
    service: ConfigService = request.app.state.config
    return service


def _etag(version: int) -> str:
    return f'"{version}"'


@router.get("", response_model=ConfigDocument, responses=responses(*AUTH))
def get_config(
    request: Request,
    response: Response,
    _: Annotated[Principal, Depends(require(Permission.CONFIG_READ))],
) -> ConfigDocument:
    """The running configuration; edit it and PUT it back with its ``version``."""
    doc = _service(request).current()
    response.headers["ETag"] = _etag(doc.version)
    return doc


@router.put(
    "",
    response_model=ConfigStatus,
    responses=responses(*AUTH, 409, 412, 422),
    summary="Apply a configuration document (all or nothing)",
)
def put_config(
    request: Request,
    response: Response,
    doc: ConfigDocument,
    who: Annotated[Principal, Depends(require(Permission.CONFIG_WRITE))],
    if_match: Annotated[str | None, Header(max_length=40)] = None,
) -> ConfigStatus:
    """``version`` must be the box's current version (or pass it as ``If-Match``): 409
    otherwise. Invalid documents get 422 with the fields named; a failure while applying
    rolls everything back (422, ``loc`` starting with ``apply``). Nothing changes unless
    the answer is 200."""
    if if_match is not None and if_match.strip() not in (_etag(doc.version), str(doc.version)):
        raise HTTPException(412, f"If-Match {if_match} does not match the body's version")
    try:
        status = _service(request).apply(doc, actor=who.login, origin=who.origin)
    except ConfigConflict as exc:
        raise HTTPException(
            409,
            f"stale document: it is based on version {exc.given}, the box runs version "
            f"{exc.current}; GET /config and apply your change again",
        ) from None
    except ConfigRejected as exc:
        raise _Rejected(exc.errors) from None
    response.headers["ETag"] = _etag(status.version)
    return status


@router.get("/status", response_model=ConfigStatus, responses=responses(*AUTH))
def config_status(
    request: Request, _: Annotated[Principal, Depends(require(Permission.CONFIG_READ))]
) -> ConfigStatus:
    """The latest apply attempt: applied, rejected, conflict or rolled back, with errors."""
    return _service(request).status()


class _Rejected(RequestValidationError):
    """Semantic or apply errors, answered like pydantic's (422 with ``loc``)."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__([e.model_dump() for e in errors])
        self.recorded = True


def record_invalid(request: Request, exc: RequestValidationError) -> None:
    """A PUT refused before the service saw it (pydantic): still an attempt to report."""
    if getattr(exc, "recorded", False):
        return
    who = principal_of(request)
    if who is None:  # refused before the policy check passed: not an attempt
        return
    errors = [
        FieldError(
            loc=[p if isinstance(p, int) else str(p) for p in e.get("loc", ())],
            msg=str(e.get("msg", "")),
            type=str(e.get("type", "")),
        )
        for e in exc.errors()
    ]
    _service(request).record_rejected(errors, actor=who.login, origin=origin_of(request.scope))
