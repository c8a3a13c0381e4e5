"""Helpers for the link tests: a small FastAPI app standing in for the box's management API
where a test needs special routes (streaming, slow, concurrent), and waiting helpers."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from appliance.link.cabinet import Cabinet
from appliance.link.client import LinkClient, LinkPhase
from support.wait import wait_for

FAST = {
    "backoff_initial": 0.05,
    "backoff_max": 0.4,
    "ping_interval": 0.5,
    "dead_after": 2.0,
    "open_timeout": 2.0,
}


def make_test_app(concurrency: int = 6) -> FastAPI:
    app = FastAPI()
    arrived = 0
    all_here = asyncio.Event()

    @app.get("/origin")
    async def origin(request: Request) -> dict[str, object]:
        return {
            "origin": request.scope.get("edgepbx.origin"),
            "headers": sorted(request.headers.keys()),
            "query": request.url.query,
        }

    @app.put("/config")
    async def put_config(request: Request) -> dict[str, object]:
        body = await request.body()
        return {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}

    @app.get("/big")
    async def big(n: int) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            sent = 0
            while sent < n:
                piece = bytes((sent + i) % 251 for i in range(min(100_000, n - sent)))
                sent += len(piece)
                yield piece

        return StreamingResponse(chunks(), media_type="application/octet-stream")

    @app.get("/together")
    async def together() -> dict[str, int]:
        """Answers only when ``concurrency`` requests are inside at once: proof that the link
        runs requests in parallel (a serial link would time out here)."""
        nonlocal arrived
        arrived += 1
        if arrived >= concurrency:
            all_here.set()
        await asyncio.wait_for(all_here.wait(), 10)
        return {"arrived": arrived}

    @app.get("/recordings/{rec}")
    async def recording(rec: str, request: Request) -> JSONResponse:
        # The policy point's contract, as the API implements it: origin cloud is refused.
        if request.scope.get("edgepbx.origin") == "cloud":
            return JSONResponse({"detail": "recordings are LAN only"}, status_code=403)
        return JSONResponse({"id": rec})

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("handler bug")

    return app


BoxFactory = Callable[..., Awaitable[LinkClient]]


async def paired(box: BoxFactory, cabinet: Cabinet, **kwargs: object) -> tuple[LinkClient, str]:
    client = await box(code=cabinet.issue_code(), **kwargs)
    await wait_for(lambda: client.status.phase is LinkPhase.CONNECTED)
    box_id = client.status.box_id
    assert box_id is not None
    await cabinet.wait_connected(box_id)
    return client, box_id
