"""The policy with the cloud link's own request path (appliance.link.asgi): the scope the
link builds for a cabinet request, run through the app in process. An admin token gets the
extensions and never a recording or a secret; headers from the cabinet cannot change that."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support.api import Box

from appliance.link.asgi import Exchange, build_scope
from pbx.store import Extension


async def through_link(
    box: Box, method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> tuple[int, Any]:
    answer: dict[str, Any] = {"body": b""}

    async def start(status: int, _headers: Any, data: bytes, more: bool) -> None:
        answer["status"] = status
        answer["body"] += data

    async def more_body(data: bytes, more: bool) -> None:
        answer["body"] += data

    async def cancel(reason: str) -> None:
        answer["cancelled"] = reason

    scope = build_scope(method, path, tuple(headers.items()), client=("203.0.113.9", 443))
    exchange = Exchange(scope, body, True, start=start, body=more_body, cancel=cancel)
    await exchange.run(box.app)
    raw = answer["body"]
    return answer["status"], json.loads(raw) if raw else None


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/recordings", b""),
        ("GET", "/recordings/rec-1/audio", b""),
        ("GET", "/recordings/rec-1/download", b""),
        ("DELETE", "/recordings/rec-1", b""),
        ("POST", "/recordings/unlock", b'{"passphrase": "x"}'),
        ("POST", "/extensions/101/password", b""),
        ("GET", "/accounts", b""),
        ("POST", "/auth/password", b'{"current_password": "a", "new_password": "bbbbbbbbbbbb"}'),
    ],
)
async def test_cabinet_requests_are_refused(box: Box, method: str, path: str, body: bytes) -> None:
    box.recordings.add("rec-1", b"RIFF" + bytes(100))
    box.store.directory.create(Extension("101"))
    status, token = await through_link(
        box, "POST", "/auth/login", {"content-type": "application/json"},
        json.dumps({"login": "admin", "password": "correct horse battery"}).encode(),
    )  # fmt: skip
    assert status == 200
    headers = {
        "authorization": f"Bearer {token['token']}",
        "content-type": "application/json",
        # A cabinet trying to pass itself off as the LAN: the link drops x-edgepbx-* headers,
        # and the policy reads the scope only.
        "x-edgepbx-origin": "lan",
        "forwarded": "for=192.0.2.10",
        "x-forwarded-for": "127.0.0.1",
    }
    status, answer = await through_link(box, method, path, headers, body)
    assert status == 403, answer
    assert "cloud" in answer["detail"]
    event = box.audit("policy.denied")[-1]
    assert (event.actor, event.origin) == ("admin", "cloud")
    assert box.recordings.get("rec-1") is not None


async def test_cabinet_reads_and_pushes_config(box: Box) -> None:
    _, token = await through_link(
        box, "POST", "/auth/login", {"content-type": "application/json"},
        json.dumps({"login": "admin", "password": "correct horse battery"}).encode(),
    )  # fmt: skip
    h = {"authorization": f"Bearer {token['token']}", "content-type": "application/json"}
    status, doc = await through_link(box, "GET", "/config", h)
    assert status == 200 and doc["version"] == 0
    doc["extensions"] = [{"number": "201", "display_name": "From the cabinet"}]
    status, result = await through_link(box, "PUT", "/config", h, json.dumps(doc).encode())
    assert status == 200 and result["result"] == "applied" and result["origin"] == "cloud"
    status, report = await through_link(box, "GET", "/config/status", h)
    assert report["version"] == 1
    assert box.store.directory.get("201") is not None
