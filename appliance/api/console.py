"""Mounting of the endpoints the setup console needs (network, setup, keys, pairing, overview)."""

from __future__ import annotations

from fastapi import FastAPI

from appliance.api.console_deps import ConsoleServices
from appliance.api.routers import keys, network, overview, pairing, setup

PREFIX = "/api/v1"


def install_console_routers(app: FastAPI, services: ConsoleServices) -> None:
    app.state.console = services
    for module in (network, setup, keys, pairing, overview):
        app.include_router(module.router, prefix=PREFIX)
