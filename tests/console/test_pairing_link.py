"""The pairing step against the real cloud link and the reference cabinet on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.console import ADMIN, ConsoleEnv, make_env
from support.linkpeer import FAST

from appliance.link.cabinet import Cabinet
from appliance.link.client import LinkClient, LinkSettings
from appliance.link.credentials import MemoryCredentials
from appliance.setup.pairing import LinkClientPairing
from tui.client import ApiError

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def linked(tmp_path: Path) -> AsyncIterator[tuple[ConsoleEnv, Cabinet]]:
    cabinet = Cabinet(tmp_path / "cabinet.json", ping_interval=0.5, dead_after=2.0)
    await cabinet.start()
    env = make_env(tmp_path / "data")
    settings = LinkSettings(cabinet_url=cabinet.url(), box_name="office", **FAST)  # type: ignore[arg-type]
    link = LinkClient(settings, env.app, MemoryCredentials())
    env.services.setup.pairing = LinkClientPairing(link, cabinet.url())
    await link.start()
    await env.client.bootstrap(*ADMIN)
    yield env, cabinet
    await link.stop()
    await env.close()
    await cabinet.close()


async def _settled(env: ConsoleEnv) -> str:
    for _ in range(200):
        state = (await env.client.pairing()).state
        if state in ("paired", "failed"):
            return state
        await asyncio.sleep(0.05)
    return state


async def test_code_from_the_console_brings_the_link_up(
    linked: tuple[ConsoleEnv, Cabinet],
) -> None:
    env, cabinet = linked
    assert (await env.client.pairing()).state == "unpaired"
    with pytest.raises(ApiError) as err:
        await env.client.pair("no")
    assert "code" in err.value.fields
    code = cabinet.issue_code().lower().replace("-", "")  # typed loosely by the installer
    assert (await env.client.pair(code)).state == "pending"
    assert await _settled(env) == "paired"
    assert "box id" in (await env.client.pairing()).message


async def test_a_wrong_code_is_reported(linked: tuple[ConsoleEnv, Cabinet]) -> None:
    env, _ = linked
    await env.client.pair("ZZZZ-9999")
    assert await _settled(env) == "failed"
    assert "unknown pairing code" in (await env.client.pairing()).message
