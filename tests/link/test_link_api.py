"""The real management API through the real link: the cabinet's requests run through the
same app object as the LAN's, and the policy point sees origin "cloud" only for them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.api import PASSWORD, Box, make_box
from support.linkpeer import BoxFactory, paired

from appliance.api.accounts import Role
from appliance.link.cabinet import Cabinet


@pytest.fixture
async def api_box(tmp_path: Path) -> AsyncIterator[Box]:
    b = make_box(tmp_path)
    b.account("admin", Role.ADMIN)
    b.account("super", Role.SUPERVISOR)
    b.recordings.add("rec-1", b"\x01\x02" * 40_000, call_id="c1")
    yield b
    b.store.close()


async def cloud_login(cabinet: Cabinet, box_id: str, login: str) -> tuple[tuple[str, str], ...]:
    answer = await cabinet.request(
        box_id, "POST", "/auth/login", json_body={"login": login, "password": PASSWORD}
    )
    assert answer.status == 200, answer.body
    return (("authorization", f"Bearer {answer.json()['token']}"),)


async def test_recordings_and_secrets_refused_through_the_link(
    box: BoxFactory, cabinet: Cabinet, api_box: Box
) -> None:
    _, box_id = await paired(box, cabinet, app=api_box.app)
    for login in ("admin", "super"):
        auth = await cloud_login(cabinet, box_id, login)
        for method, path in [
            ("GET", "/recordings"),
            ("GET", "/recordings/rec-1"),
            ("GET", "/recordings/rec-1/audio"),
            ("GET", "/recordings/rec-1/download"),
            ("DELETE", "/recordings/rec-1"),
            ("GET", "/accounts"),
        ]:
            answer = await cabinet.request(box_id, method, path, auth)
            assert answer.status == 403, (login, method, path, answer.body)
        # The same app serves what the cloud may see.
        assert (await cabinet.request(box_id, "GET", "/extensions", auth)).status == 200
    # The same recording from the LAN with the supervisor role: served.
    lan = api_box.lan.get("/recordings/rec-1/audio", headers=api_box.login("super"))
    assert lan.status_code == 200 and len(lan.content) == 80_000
    assert api_box.recordings.get("rec-1") is not None  # the cloud's DELETE did nothing
    denied = api_box.audit("policy.denied")
    assert denied and all(e.origin == "cloud" for e in denied)


async def test_cabinet_pushes_a_configuration_document(
    box: BoxFactory, cabinet: Cabinet, api_box: Box
) -> None:
    _, box_id = await paired(box, cabinet, app=api_box.app)
    auth = await cloud_login(cabinet, box_id, "admin")
    doc = (await cabinet.request(box_id, "GET", "/config", auth)).json()
    doc["extensions"] = [{"number": "201", "display_name": "Front desk"}]
    pushed = await cabinet.request(box_id, "PUT", "/config", auth, json_body=doc)
    assert pushed.status == 200, pushed.body
    assert pushed.json()["result"] == "applied"
    status = (await cabinet.request(box_id, "GET", "/config/status", auth)).json()
    assert status["result"] == "applied" and status["version"] == doc["version"] + 1
    assert [e.number for e in api_box.store.directory.list()] == ["201"]
    [event] = api_box.audit("config.applied")
    assert event.origin == "cloud"
    # An invalid document: refused with the field named, nothing changed.
    doc = (await cabinet.request(box_id, "GET", "/config", auth)).json()
    doc["extensions"] = [{"number": "2x1"}]
    refused = await cabinet.request(box_id, "PUT", "/config", auth, json_body=doc)
    assert refused.status == 422 and "number" in refused.body.decode()
    assert [e.number for e in api_box.store.directory.list()] == ["201"]
