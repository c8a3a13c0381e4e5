"""The link's API routes on the real management app: status for viewers, pairing for LAN
admins only (never from the cloud), every attempt audited."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from support.api import PASSWORD, Box, make_box
from support.linkpeer import BoxFactory
from support.wait import wait_for

from appliance.api.accounts import Role
from appliance.link.cabinet import Cabinet
from appliance.link.client import LinkPhase
from appliance.link.credentials import SqliteCredentials
from appliance.service.link_routes import install_link_routes


@pytest.fixture
async def api_box(tmp_path: Path) -> AsyncIterator[Box]:
    b = make_box(tmp_path)
    install_link_routes(b.app)
    b.account("admin", Role.ADMIN)
    b.account("viewer", Role.VIEWER)
    yield b
    b.store.close()


@pytest.fixture
async def lan(api_box: Box) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=api_box.app, client=("192.0.2.10", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://box") as http:
        yield http


async def login(http: httpx.AsyncClient, who: str) -> dict[str, str]:
    r = await http.post("/auth/login", json={"login": who, "password": PASSWORD})
    return {"Authorization": f"Bearer {r.json()['token']}"}


async def test_pair_from_the_lan(
    box: BoxFactory, cabinet: Cabinet, api_box: Box, lan: httpx.AsyncClient
) -> None:
    client = await box(app=api_box.app, credentials=SqliteCredentials(api_box.store.local))
    api_box.app.state.link_client = lambda: client
    viewer, admin = await login(lan, "viewer"), await login(lan, "admin")
    await wait_for(lambda: client.status.phase is LinkPhase.UNPAIRED)
    status = await lan.get("/link/status", headers=viewer)
    assert status.json()["phase"] == "unpaired"
    assert (
        await lan.post("/link/pair", headers=viewer, json={"code": "ABCD-EFGH"})
    ).status_code == 403
    refused = await lan.post("/link/pair", headers=admin, json={"code": "ABCD-EFGH"})
    assert refused.status_code == 409 and "unknown pairing code" in refused.json()["detail"]
    bad = await lan.post("/link/pair", headers=admin, json={"code": "no spaces"})
    assert bad.status_code == 422 and "code" in bad.text
    code = cabinet.issue_code()
    paired = await lan.post("/link/pair", headers=admin, json={"code": code})
    assert paired.status_code == 200 and paired.json()["phase"] == "connected"
    box_id = paired.json()["box_id"]
    assert [
        e.action for e in api_box.store.audit.events(limit=100) if e.action.startswith("link.")
    ] == [
        "link.pair_refused",
        "link.paired",
    ]
    assert code not in str([e.detail for e in api_box.store.audit.events(limit=100)])
    # Through the link (origin cloud) even an admin cannot re-pair the box.
    token = (
        await cabinet.request(
            box_id, "POST", "/auth/login", json_body={"login": "admin", "password": PASSWORD}
        )
    ).json()["token"]
    auth = (("authorization", f"Bearer {token}"),)
    again = await cabinet.request(
        box_id, "POST", "/link/pair", auth, json_body={"code": cabinet.issue_code()}
    )
    assert again.status == 403
    seen = await cabinet.request(box_id, "GET", "/link/status", auth)
    assert seen.status == 200 and seen.json()["box_id"] == box_id


async def test_no_link_in_this_box(lan: httpx.AsyncClient) -> None:
    assert (await lan.get("/link/status", headers=await login(lan, "viewer"))).status_code == 503
