"""The app answers, logins work, the OpenAPI description is there."""

from __future__ import annotations

from support.api import Box


def test_health_needs_no_login(box: Box) -> None:
    r = box.lan.get("/system/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


def test_version_needs_a_token(box: Box) -> None:
    assert box.lan.get("/system/version").status_code == 401
    r = box.lan.get("/system/version", headers=box.login("viewer"))
    assert r.status_code == 200 and r.json()["version"]


def test_openapi(box: Box) -> None:
    spec = box.lan.get("/openapi.json").json()
    assert "/config" in spec["paths"]
