"""The app behind a real uvicorn: on a unix socket (how the console reaches it) and on
loopback TCP; the first admin can be created over the unix socket only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from support.api import make_box

pytestmark = pytest.mark.timeout(60)


@asynccontextmanager
async def serving(config: uvicorn.Config) -> AsyncIterator[uvicorn.Server]:
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    assert server.started
    try:
        yield server
    finally:
        server.should_exit = True
        await task


async def test_console_over_a_unix_socket(tmp_path: Path) -> None:
    box = make_box(tmp_path)
    sock = tmp_path / "api.sock"
    config = uvicorn.Config(box.app, uds=str(sock), log_level="warning", lifespan="off")
    async with serving(config):
        transport = httpx.AsyncHTTPTransport(uds=str(sock))
        async with httpx.AsyncClient(transport=transport, base_url="http://box") as console:
            assert (await console.get("/system/health")).json()["status"] == "ok"
            body = {"login": "installer", "password": "a long password"}
            r = await console.post("/auth/bootstrap", json=body)
            assert r.status_code == 201, r.text
            r = await console.post("/auth/login", json=body)
            token = r.json()["token"]
            me = await console.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
            assert me.json() == {"login": "installer", "role": "admin", "origin": "lan"}
    box.store.close()


async def test_loopback_tcp_and_bootstrap_refused_from_elsewhere(tmp_path: Path) -> None:
    box = make_box(tmp_path)
    config = uvicorn.Config(box.app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    async with serving(config) as server:
        port = server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            spec = (await client.get("/openapi.json")).json()
            assert spec["info"]["title"] == "edgepbx management API"
            # A header cannot make a request look like it came from the cloud or the LAN.
            r = await client.get("/recordings", headers={"X-Edgepbx-Origin": "cloud"})
            assert r.status_code == 401
    box.store.close()
