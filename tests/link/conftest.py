"""Link tests: a real reference cabinet on 127.0.0.1 (port 0) and real box clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.linkpeer import FAST, BoxFactory, make_test_app

from appliance.link.asgi import ASGIApp
from appliance.link.cabinet import Cabinet
from appliance.link.client import LinkClient, LinkSettings
from appliance.link.credentials import CredentialStore, MemoryCredentials


@pytest.fixture
async def cabinet(tmp_path: Path) -> AsyncIterator[Cabinet]:
    cab = Cabinet(tmp_path / "cabinet.json", ping_interval=0.5, dead_after=2.0)
    await cab.start()
    yield cab
    await cab.close()


@pytest.fixture
async def box(cabinet: Cabinet) -> AsyncIterator[BoxFactory]:
    started: list[LinkClient] = []

    async def make(
        *,
        code: str | None = None,
        app: ASGIApp | None = None,
        credentials: CredentialStore | None = None,
        url: str | None = None,
        **settings: object,
    ) -> LinkClient:
        client = LinkClient(
            LinkSettings(
                cabinet_url=url or cabinet.url(), box_name="test-box", **(FAST | settings)
            ),  # type: ignore[arg-type]
            app or make_test_app(),
            credentials or MemoryCredentials(),
            pairing_code=code,
        )
        await client.start()
        started.append(client)
        return client

    yield make
    for client in started:
        await client.stop()
