"""Dependencies of the console's routers: their services from ``BoxContext.console`` (503 when
the box runs without them), and `refuse`, which answers like FastAPI's validation errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, NoReturn

from fastapi import Depends, HTTPException, Request

from appliance.api.policy import box
from appliance.network.config import NetworkConfigError
from appliance.network.service import NetworkService
from appliance.setup.service import SetupError, SetupService


@dataclass
class ConsoleServices:
    network: NetworkService
    setup: SetupService


def _services(request: Request) -> ConsoleServices:
    services = box(request).console
    if services is None:
        raise HTTPException(503, "network and setup services do not run in this process")
    return services


def _network(request: Request) -> NetworkService:
    return _services(request).network


def _setup(request: Request) -> SetupService:
    return _services(request).setup


NetworkDep = Annotated[NetworkService, Depends(_network)]
SetupDep = Annotated[SetupService, Depends(_setup)]


def refuse(exc: SetupError | NetworkConfigError, where: str = "body") -> NoReturn:
    """Answer like FastAPI's own validation errors: a list of {loc, msg, type}."""
    if isinstance(exc, SetupError):
        if exc.status != 422:  # a conflict, not bad input: ErrorOut's plain detail
            raise HTTPException(exc.status, detail=f"{exc.field}: {exc}")
        detail = [{"loc": [where, *exc.field.split(".")], "msg": str(exc), "type": "value_error"}]
        raise HTTPException(exc.status, detail=detail)
    detail = [
        {"loc": [where, *e.field.split(".")], "msg": e.message, "type": "value_error"}
        for e in exc.errors
    ]
    raise HTTPException(422, detail=detail)
