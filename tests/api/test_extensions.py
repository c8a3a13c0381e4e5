"""Extensions: CRUD, passwords set or generated and shown once, bad input refused with the
field named and nothing changed, every change audited."""

from __future__ import annotations

from typing import Any

import pytest
from support.api import Box

from pbx.store import make_secret


def test_create_with_generated_password_shown_once(box: Box) -> None:
    h = box.login("admin")
    r = box.lan.post("/extensions", headers=h, json={"number": "101", "display_name": "Alice"})
    assert r.status_code == 201, r.text
    body = r.json()
    password = body["password"]
    assert password and body["extension"]["has_password"] is True
    # The store holds the HA1 of exactly that password for the box's realm.
    secret = box.store.directory.secret("101")
    assert secret == make_secret("101", password, "edgepbx.local")
    # Never again: not in reads, not in the audit log, not in local.db.
    for path in ("/extensions", "/extensions/101", "/config"):
        assert password not in box.lan.get(path, headers=h).text
    assert password not in str(box.store.audit.events(limit=1000))
    assert password not in str(box.store.local.query("SELECT * FROM extension_secrets"))
    [event] = box.audit("extension.created")
    assert (event.actor, event.origin, event.target) == ("admin", "lan", "101")


def test_create_with_given_password_or_none(box: Box) -> None:
    h = box.login("admin")
    r = box.lan.post("/extensions", headers=h, json={"number": "102", "password": "given-pass"})
    assert r.status_code == 201 and r.json()["password"] is None
    assert box.store.directory.secret("102") == make_secret("102", "given-pass", "edgepbx.local")
    r = box.lan.post("/extensions", headers=h, json={"number": "103", "generate_password": False})
    assert r.status_code == 201 and r.json()["extension"]["has_password"] is False


def test_list_get_update_delete(box: Box) -> None:
    h = box.login("admin")
    for n in ("100", "99", "1000"):
        box.lan.post("/extensions", headers=h, json={"number": n, "generate_password": False})
    assert [e["number"] for e in box.lan.get("/extensions", headers=h).json()] == [
        "99",
        "100",
        "1000",
    ]
    r = box.lan.patch("/extensions/100", headers=h, json={"call_limit": 5, "enabled": False})
    assert r.status_code == 200
    assert r.json()["call_limit"] == 5 and r.json()["enabled"] is False
    assert r.json()["display_name"] == ""  # untouched fields stay
    got = box.lan.get("/extensions/100", headers=box.login("viewer")).json()
    assert got["call_limit"] == 5
    assert box.lan.delete("/extensions/100", headers=h).status_code == 204
    assert box.lan.get("/extensions/100", headers=h).status_code == 404
    assert box.lan.delete("/extensions/100", headers=h).status_code == 204
    actions = [e.action for e in box.store.audit.events(action="extension.", limit=100)]
    assert actions.count("extension.created") == 3
    assert actions[-2:] == ["extension.updated", "extension.deleted"]


def test_set_and_generate_password(box: Box) -> None:
    h = box.login("admin")
    box.lan.post("/extensions", headers=h, json={"number": "101", "generate_password": False})
    r = box.lan.put("/extensions/101/password", headers=h, json={"password": "a-new-password"})
    assert r.status_code == 204
    assert box.store.directory.secret("101") == make_secret(
        "101", "a-new-password", "edgepbx.local"
    )
    r = box.lan.post("/extensions/101/password", headers=h)
    assert r.status_code == 200
    assert box.store.directory.secret("101") == make_secret(
        "101", r.json()["password"], "edgepbx.local"
    )
    assert box.lan.post("/extensions/404/password", headers=h).status_code == 404
    r = box.lan.put("/extensions/404/password", headers=h, json={"password": "a-new-password"})
    assert r.status_code == 404


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"number": "12a"}, ["body", "number"]),
        ({"number": ""}, ["body", "number"]),
        ({"number": "1" * 17}, ["body", "number"]),
        ({}, ["body", "number"]),
        ({"number": "1", "call_limit": 0}, ["body", "call_limit"]),
        ({"number": "1", "ring_timeout": 3601}, ["body", "ring_timeout"]),
        ({"number": "1", "record_calls": "sometimes"}, ["body", "record_calls"]),
        ({"number": "1", "display_name": "x" * 65}, ["body", "display_name"]),
        ({"number": "1", "display_name": "tab\there"}, ["body", "display_name"]),
        ({"number": "1", "password": "short"}, ["body", "password"]),
        ({"number": "1", "nickname": "x"}, ["body", "nickname"]),
    ],
)
def test_create_bad_input(box: Box, body: dict[str, Any], loc: list[Any]) -> None:
    r = box.lan.post("/extensions", headers=box.login("admin"), json=body)
    assert r.status_code == 422
    assert loc in [e["loc"] for e in r.json()["detail"]]
    assert box.store.directory.list() == []
    assert not box.audit("extension.")


def test_update_bad_input_changes_nothing(box: Box) -> None:
    h = box.login("admin")
    box.lan.post("/extensions", headers=h, json={"number": "101", "generate_password": False})
    before = box.store.directory.get("101")
    for body, loc in (
        ({"call_limit": -1}, ["body", "call_limit"]),
        ({"number": "102"}, ["body", "number"]),
        ({"record_calls": "x"}, ["body", "record_calls"]),
    ):
        r = box.lan.patch("/extensions/101", headers=h, json=body)
        assert r.status_code == 422 and loc in [e["loc"] for e in r.json()["detail"]]
    r = box.lan.patch("/extensions/101", headers=h, json={"display_name": "bad\x00"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "display_name"]
    assert box.store.directory.get("101") == before
    assert box.lan.patch("/extensions/999", headers=h, json={}).status_code == 404


def test_duplicate_is_409(box: Box) -> None:
    h = box.login("admin")
    box.lan.post("/extensions", headers=h, json={"number": "101", "password": "first-pass"})
    r = box.lan.post("/extensions", headers=h, json={"number": "101"})
    assert r.status_code == 409
    assert box.store.directory.secret("101") == make_secret("101", "first-pass", "edgepbx.local")


def test_viewer_reads_but_cannot_write(box: Box) -> None:
    v = box.login("viewer")
    assert box.lan.get("/extensions", headers=v).status_code == 200
    assert box.lan.post("/extensions", headers=v, json={"number": "1"}).status_code == 403
    assert box.store.directory.list() == []
