"""Dependencies of the console's routers: services from ``app.state.console``, so tests can
hand in in-memory twins; and `refuse`, which answers like FastAPI's own validation errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, NoReturn

from fastapi import Depends, HTTPException, Request

from appliance.network.config import NetworkConfigError
from appliance.network.service import NetworkService
from appliance.setup.overview import OverviewService
from appliance.setup.service import SetupError, SetupService


@dataclass
class ConsoleServices:
    network: NetworkService
    setup: SetupService
    overview: OverviewService


def _services(request: Request) -> ConsoleServices:
    services: ConsoleServices = request.app.state.console
    return services


def _network(request: Request) -> NetworkService:
    return _services(request).network


def _setup(request: Request) -> SetupService:
    return _services(request).setup


def _overview(request: Request) -> OverviewService:
    return _services(request).overview


NetworkDep = Annotated[NetworkService, Depends(_network)]
SetupDep = Annotated[SetupService, Depends(_setup)]
OverviewDep = Annotated[OverviewService, Depends(_overview)]


def refuse(exc: SetupError | NetworkConfigError, where: str = "body") -> NoReturn:
    """Answer like FastAPI's own validation errors: a list of {loc, msg, type}."""
    if isinstance(exc, SetupError):
        detail = [{"loc": [where, *exc.field.split(".")], "msg": str(exc), "type": "value_error"}]
        raise HTTPException(exc.status, detail=detail)
    detail = [
        {"loc": [where, *e.field.split(".")], "msg": e.message, "type": "value_error"}
        for e in exc.errors
    ]
    raise HTTPException(422, detail=detail)
