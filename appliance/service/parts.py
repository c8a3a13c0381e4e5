"""The async parts of the manager process: the management API (uvicorn on the LAN side),
the cloud link, and the embedded reference cabinet of ``make run``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable

import uvicorn

from appliance.httpserver import EmbeddedServer
from appliance.link.asgi import ASGIApp
from appliance.link.cabinet import Cabinet
from appliance.link.client import LinkClient

__all__ = ["ApiPart", "CabinetPart", "LinkPart"]

log = logging.getLogger(__name__)


class ApiPart:
    """uvicorn serving the API app on the LAN listener (127.0.0.1 by default). Requests
    here never carry ``scope["edgepbx.origin"]``: uvicorn builds their scope."""

    name = "api"

    def __init__(self, app: ASGIApp, host: str, port: int) -> None:
        self.app, self.host, self.port = app, host, port
        self.bound_port = 0
        self._server: EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # Bound here, not by uvicorn: a taken port is a clear OSError at start (uvicorn
        # would log it and call sys.exit inside its task).
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise OSError(f"cannot serve the API on {self.host}:{self.port}: {exc}") from exc
        self.bound_port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self.bound_port,
            log_config=None,  # our root handler (key=value, redacted)
            access_log=False,
            lifespan="on",
            interface="asgi3",
            proxy_headers=False,
        )
        server = self._server = EmbeddedServer(config)
        self._task = asyncio.create_task(server.serve(sockets=[sock]), name="api-server")
        while not server.started:
            if self._task.done():
                self._task = None
                sock.close()
                raise OSError(f"the API server on {self.host}:{self.bound_port} did not start")
            await asyncio.sleep(0.02)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.bound_port}"

    def health(self) -> str | None:
        if self._task is None or self._task.done():
            return "the API server stopped"
        return None

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 10)
            except TimeoutError:
                self._task.cancel()
            except Exception:
                log.exception("API server ended with an error")
            self._task = None
        self._server = None


class LinkPart:
    """The outbound cloud link. A link that is down is not a failed part: the client
    reconnects by itself; only a dead client task is."""

    name = "link"

    def __init__(self, make: Callable[[], LinkClient]) -> None:
        self._make = make
        self.client: LinkClient | None = None

    async def start(self) -> None:
        if self.client is None:
            self.client = self._make()
        await self.client.start()

    def health(self) -> str | None:
        if self.client is None or not self.client.running():
            return "the link task ended"
        return None

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.stop()


class CabinetPart:
    """The reference cabinet on loopback (embedded default: a "cloud" on this machine)."""

    name = "cabinet"

    def __init__(self, cabinet: Cabinet, host: str, port: int, operator_port: int) -> None:
        self.cabinet, self.host = cabinet, host
        self.port, self.operator_port = port, operator_port
        self._up = False

    async def start(self) -> None:
        await self.cabinet.start(self.host, self.port)
        try:
            await self.cabinet.serve_operator(self.host, self.operator_port)
        except BaseException:
            await self.cabinet.close()
            raise
        # Restarts keep the ports first bound, so the box's stored URL stays valid.
        self.port, self.operator_port = self.cabinet.port, self.cabinet.operator_port
        self._up = True

    def health(self) -> str | None:
        return None if self._up else "the cabinet is not serving"

    async def stop(self) -> None:
        self._up = False
        with contextlib.suppress(Exception):
            await self.cabinet.close()
