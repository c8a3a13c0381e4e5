"""The app factory: :func:`create_app` builds the management API for one box.

The same app serves the LAN listener (uvicorn on TCP or a unix socket, for the console) and
the cloud link (which runs the cabinet's requests through it in process); the policy point
(:mod:`appliance.api.policy`) tells them apart by the ASGI scope alone.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from appliance.api import errors
from appliance.api.accounts import AccountStore, LoginThrottle
from appliance.api.config import ConfigService
from appliance.api.console import console_routers
from appliance.api.context import BoxContext
from appliance.api.routers import (
    accounts,
    audit,
    auth,
    calls,
    cdr,
    config,
    extensions,
    guard,
    recordings,
    registrations,
    sync,
    system,
)

__all__ = ["create_app"]

TAGS = [
    {"name": "system", "description": "version, health, alarms"},
    {"name": "auth", "description": "login tokens"},
    {"name": "accounts", "description": "local admin accounts (LAN only)"},
    {"name": "extensions", "description": "phone extensions and their passwords"},
    {"name": "sip", "description": "sources banned by the SIP door guard"},
    {"name": "registrations", "description": "registered phones"},
    {"name": "calls", "description": "calls in progress"},
    {"name": "call-records", "description": "finished calls"},
    {"name": "recordings", "description": "encrypted call recordings (LAN only)"},
    {"name": "sync", "description": "metadata replication to the cloud"},
    {"name": "audit", "description": "the hash-chained audit log"},
    {"name": "config", "description": "the versioned configuration document"},
    {"name": "setup", "description": "first-boot setup state (the setup console)"},
    {"name": "network", "description": "network settings, tried and confirmed like netplan try"},
    {"name": "keys", "description": "the site identity recordings are encrypted to (LAN only)"},
    {"name": "pairing", "description": "pairing with the cloud cabinet"},
    {"name": "overview", "description": "one read for the status console"},
]


def create_app(box: BoxContext) -> FastAPI:
    app = FastAPI(
        title="edgepbx management API",
        version=box.version,
        description=(
            "Manage an edgepbx box. Log in with POST /auth/login and send the token as "
            "`Authorization: Bearer <token>`. Requests arriving through the cloud link can "
            "never reach recordings, secrets or admin credentials."
        ),
        openapi_tags=TAGS,
    )
    app.state.box = box
    app.state.accounts = AccountStore(box.store.local, box.settings, box.clock)
    app.state.throttle = LoginThrottle(box.settings, box.clock)
    app.state.config = ConfigService(box)
    errors.install(app)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        # A refused configuration document is an apply attempt too: record and audit it.
        if request.url.path == "/config" and request.method == "PUT":
            config.record_invalid(request, exc)
        response: JSONResponse = await request_validation_exception_handler(request, exc)
        return response

    for module in (
        system,
        auth,
        accounts,
        extensions,
        registrations,
        guard,
        calls,
        cdr,
        recordings,
        sync,
        audit,
        config,
        *console_routers,
    ):
        app.include_router(module.router)
    return app
