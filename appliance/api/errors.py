"""Error bodies and handlers: every error the API answers has a model in the OpenAPI
description and names what was wrong."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from appliance.store.database import StorageFailure
from pbx.store import AlreadyExists, InvalidValue, NotFound

__all__ = [
    "AUTH",
    "ErrorOut",
    "FieldError",
    "Invalid",
    "ValidationOut",
    "field_error",
    "install",
    "responses",
]


class ErrorOut(BaseModel):
    """Every 4xx/5xx except validation errors."""

    detail: str


class FieldError(BaseModel):
    """One problem with the input; ``loc`` names where (e.g. ``["body", "sip", "domain"]``)."""

    loc: list[str | int]
    msg: str
    type: str


class ValidationOut(BaseModel):
    """422: the input was refused; nothing was changed."""

    detail: list[FieldError]


_TEXT = {
    400: "bad request",
    401: "no valid login token",
    403: "refused by the policy (origin or role)",
    404: "not found",
    409: "conflict (exists already, or a stale version)",
    412: "precondition failed",
    416: "range not satisfiable",
    422: "invalid input; the fields are named",
    429: "too many attempts; see Retry-After",
    503: "that part of the box is not running",
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the given error codes (401 and 403 come with every route
    that needs a login, so callers list them explicitly)."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        model = ValidationOut if code == 422 else ErrorOut
        out[code] = {"model": model, "description": _TEXT.get(code, "error")}
    return out


AUTH = (401, 403)


def field_error(loc: list[str | int], msg: str, kind: str = "value_error") -> JSONResponse:
    body = ValidationOut(detail=[FieldError(loc=loc, msg=msg, type=kind)])
    return JSONResponse(body.model_dump(), status_code=422)


class Invalid(Exception):
    """Raised by a route for a value pydantic could not judge: answered 422 naming ``loc``."""

    def __init__(self, loc: list[str | int], msg: str, kind: str = "value_error") -> None:
        super().__init__(msg)
        self.loc, self.msg, self.kind = loc, msg, kind


def install(app: FastAPI) -> None:
    """Store errors that escape a route become clear 4xx/503 answers, not 500."""

    @app.exception_handler(Invalid)
    async def _route_invalid(request: Request, exc: Invalid) -> JSONResponse:
        return field_error(exc.loc, exc.msg, exc.kind)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": f"not found: {exc}"}, status_code=404)

    @app.exception_handler(AlreadyExists)
    async def _exists(request: Request, exc: AlreadyExists) -> JSONResponse:
        return JSONResponse({"detail": f"exists already: {exc}"}, status_code=409)

    @app.exception_handler(InvalidValue)
    async def _invalid(request: Request, exc: InvalidValue) -> JSONResponse:
        return field_error(["body"], str(exc))

    @app.exception_handler(StorageFailure)
    async def _storage(request: Request, exc: StorageFailure) -> JSONResponse:
        return JSONResponse({"detail": "the box's storage failed; try again"}, status_code=503)
