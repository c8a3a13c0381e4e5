"""The management API app as the manager process serves it (LAN listener and cloud link).

Until the API package lands this is a minimal stand-in with a health route, so the daemon,
the link and the policy contract can be exercised end to end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request

from appliance.link.asgi import ASGIApp
from appliance.store import SqliteStore

__all__ = ["BuiltApi", "build_api"]


@dataclass
class BuiltApi:
    app: ASGIApp
    secrets: list[str] = field(default_factory=list)  # values the logs must never show
    admin_hint: str = ""  # how to log in, for the banner of make run


def build_api(store: SqliteStore, data: Path) -> BuiltApi:
    app = FastAPI(title="edgepbx management API", version=version("edgepbx"))

    @app.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        return {"status": "ok", "origin": request.scope.get("edgepbx.origin", "lan")}

    return BuiltApi(app)
