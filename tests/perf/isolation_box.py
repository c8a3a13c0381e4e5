"""Harness for test_bench_isolation: a SIP core and a misbehaving API, on one event loop
(``same``) or in two processes (``core`` and ``api`` run separately).

``python isolation_box.py MODE DATA SIP_PORT API_PORT``; prints ``ready`` when serving.
The API's ``/block`` holds its event loop for ``ms`` milliseconds (a blocking call inside an
``async def``, the classic API bug)."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from fastapi import FastAPI

from appliance.httpserver import EmbeddedServer
from appliance.store import open_store
from pbx.service import SipCore
from pbx.settings import SipSettings


def api_app() -> FastAPI:
    app = FastAPI()

    @app.get("/block")
    async def block(ms: int) -> dict[str, int]:
        time.sleep(ms / 1000)  # the bug: blocks the loop
        return {"blocked": ms}

    return app


async def main(mode: str, data: Path, sip_port: int, api_port: int) -> None:
    serving = None
    if mode in ("same", "core"):
        store = open_store(data, write_behind=True)
        await SipCore(SipSettings(port=sip_port), store, b"k" * 32).start()
    if mode in ("same", "api"):
        import uvicorn  # noqa: PLC0415

        server = EmbeddedServer(
            uvicorn.Config(api_app(), port=api_port, log_config=None, lifespan="off")
        )
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
    print("ready", flush=True)
    await asyncio.Event().wait()
    if serving is not None:
        serving.cancel()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
