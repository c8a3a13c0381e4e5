"""The one policy point: the cloud origin never reaches recordings, secrets or admin
credentials, whatever its credentials; the LAN needs a role; every refusal is audited."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from fastapi.routing import APIRoute
from support.api import Box

from appliance.api.accounts import Role
from appliance.api.policy import (
    LAN_ONLY,
    MINIMUM_ROLE,
    Decision,
    Permission,
    decide,
    origin_of,
)
from pbx.store import Extension

AUDIO = b"RIFF" + bytes(range(256)) * 20

# Every endpoint that touches a recording or a secret, with a request that succeeds for a
# LAN supervisor (or admin, where noted) and the status it gets there.
SENSITIVE: list[tuple[str, str, dict[str, Any], str, int]] = [
    ("GET", "/recordings", {}, "super", 200),
    ("GET", "/recordings/rec-1", {}, "super", 200),
    ("GET", "/recordings/rec-1/audio", {}, "super", 200),
    ("GET", "/recordings/rec-1/audio", {"headers": {"Range": "bytes=0-99"}}, "super", 206),
    ("GET", "/recordings/rec-1/download", {}, "super", 200),
    ("DELETE", "/recordings/rec-1", {}, "admin", 204),
    ("POST", "/extensions/101/password", {}, "admin", 200),
    ("POST", "/extensions", {"json": {"number": "150"}}, "admin", 201),
    ("GET", "/accounts", {}, "admin", 200),
    ("GET", "/accounts/viewer", {}, "admin", 200),
    ("POST", "/accounts", {"json": {"login": "new", "role": "viewer"}}, "admin", 201),
    ("PATCH", "/accounts/viewer", {"json": {"enabled": False}}, "admin", 200),
    ("POST", "/accounts/viewer/password", {"json": {}}, "admin", 200),
    ("DELETE", "/accounts/viewer", {}, "admin", 204),
    (
        "POST",
        "/auth/password",
        {"json": {"current_password": "correct horse battery", "new_password": "another one!"}},
        "admin",
        204,
    ),
]


def _prepare(box: Box) -> None:
    box.recordings.add("rec-1", AUDIO, call_id="c1", started_at=1.0)
    box.store.directory.create(Extension("101"))


@pytest.mark.parametrize(("method", "path", "kwargs", "role", "status"), SENSITIVE)
def test_cloud_with_admin_token_is_refused_and_audited(
    box: Box, method: str, path: str, kwargs: dict[str, Any], role: str, status: int
) -> None:
    _prepare(box)
    # The admin logged in over the cloud link: a valid token for the cloud origin.
    headers = {**box.login("admin", box.cloud), **kwargs.get("headers", {})}
    kwargs = {k: v for k, v in kwargs.items() if k != "headers"}
    before = len(box.audit("policy.denied"))
    r = box.cloud.request(method, path, headers=headers, **kwargs)
    assert r.status_code == 403, r.text
    assert "cloud" in r.json()["detail"]
    denied = box.audit("policy.denied")
    assert len(denied) == before + 1
    event = denied[-1]
    assert (event.actor, event.origin, event.target) == ("admin", "cloud", f"{method} {path}")
    # Nothing happened: the recording, the extension's password and the accounts stand.
    assert box.recordings.get("rec-1") is not None
    assert box.store.directory.secret("101") is None
    assert box.store.directory.get("150") is None
    assert {a.login for a in box.accounts.list()} == {"admin", "super", "viewer"}
    assert all(a.enabled for a in box.accounts.list())
    assert not box.audit("recording.played") and not box.audit("recording.exported")


# Creating an extension needs a login before its body decides whether a password is read.
STATIC = [s for s in SENSITIVE if (s[0], s[1]) != ("POST", "/extensions")]


@pytest.mark.parametrize(("method", "path", "kwargs", "role", "status"), STATIC)
def test_cloud_without_token_is_refused_the_same_way(
    box: Box, method: str, path: str, kwargs: dict[str, Any], role: str, status: int
) -> None:
    _prepare(box)
    r = box.cloud.request(method, path, **kwargs)
    assert r.status_code == 403
    assert box.audit("policy.denied")[-1].actor == "anonymous"


@pytest.mark.parametrize(("method", "path", "kwargs", "role", "status"), SENSITIVE)
def test_the_same_requests_from_the_lan_succeed(
    box: Box, method: str, path: str, kwargs: dict[str, Any], role: str, status: int
) -> None:
    _prepare(box)
    headers = {**box.login(role), **kwargs.get("headers", {})}
    kwargs = {k: v for k, v in kwargs.items() if k != "headers"}
    r = box.lan.request(method, path, headers=headers, **kwargs)
    assert r.status_code == status, r.text
    assert not box.audit("policy.denied")


def test_recording_access_from_the_lan_is_audited(box: Box) -> None:
    _prepare(box)
    h = box.login("super")
    assert box.lan.get("/recordings/rec-1/audio", headers=h).content == AUDIO
    assert box.lan.get("/recordings/rec-1/download", headers=h).content == AUDIO
    played, exported = box.audit("recording.played"), box.audit("recording.exported")
    assert [(e.actor, e.origin, e.target) for e in played] == [("super", "lan", "rec-1")]
    assert [(e.actor, e.origin, e.target) for e in exported] == [("super", "lan", "rec-1")]


def test_viewer_cannot_list_or_play_recordings(box: Box) -> None:
    _prepare(box)
    h = box.login("viewer")
    for path in ("/recordings", "/recordings/rec-1/audio"):
        r = box.lan.get(path, headers=h)
        assert r.status_code == 403 and "supervisor" in r.json()["detail"]
    assert [e.detail["reason"] for e in box.audit("policy.denied")] == ["role_too_low"] * 2


def test_supervisor_cannot_delete_recordings(box: Box) -> None:
    _prepare(box)
    r = box.lan.delete("/recordings/rec-1", headers=box.login("super"))
    assert r.status_code == 403
    assert box.recordings.get("rec-1") is not None


def test_cloud_may_do_what_is_not_lan_only(box: Box) -> None:
    h = box.login("admin", box.cloud)
    assert box.cloud.get("/extensions", headers=h).status_code == 200
    # It may set a password it chose (a write), never have one generated (a read).
    r = box.cloud.post(
        "/extensions", headers=h, json={"number": "160", "password": "chosen-by-cabinet"}
    )
    assert r.status_code == 201 and r.json()["password"] is None
    assert box.store.directory.secret("160") is not None
    r = box.cloud.post("/extensions", headers=h, json={"number": "161", "generate_password": False})
    assert r.status_code == 201
    r = box.cloud.put("/extensions/161/password", headers=h, json={"password": "chosen-again"})
    assert r.status_code == 204


def test_unknown_origin_values_count_as_cloud() -> None:
    assert origin_of({}) == "lan"
    assert origin_of({"edgepbx.origin": "lan"}) == "lan"
    assert origin_of({"edgepbx.origin": "console"}) == "console"
    for odd in ("cloud", "LAN", "", None, 1, "lan "):
        assert origin_of({"edgepbx.origin": odd}) == "cloud"


def test_no_header_sets_the_origin(box: Box) -> None:
    _prepare(box)
    h = {**box.login("admin", box.cloud), "X-Edgepbx-Origin": "lan", "Origin": "lan"}
    assert box.cloud.get("/recordings", headers=h).status_code == 403


def test_decision_table_exhaustively() -> None:
    roles: list[Role | None] = [None, *Role]
    for origin, role, permission in itertools.product(
        ("lan", "console", "cloud"), roles, Permission
    ):
        got = decide(origin, role, permission)  # type: ignore[arg-type]
        if origin == "cloud" and permission in LAN_ONLY:
            assert got is Decision.CLOUD_FORBIDDEN
        elif role is None:
            assert got is Decision.UNAUTHENTICATED
        elif role.rank < MINIMUM_ROLE[permission].rank:
            assert got is Decision.ROLE_TOO_LOW
        else:
            assert got is Decision.ALLOW
    assert decide("lan", Role.SUPERVISOR, Permission.RECORDINGS_PLAY) is Decision.ALLOW
    assert decide("lan", Role.VIEWER, Permission.RECORDINGS_PLAY) is Decision.ROLE_TOO_LOW


PUBLIC = {
    ("GET", "/system/health"),
    ("POST", "/auth/login"),
    ("POST", "/auth/bootstrap"),
    ("GET", "/setup/welcome"),  # the console's first question: a new box, and its language
}


def test_every_route_goes_through_the_policy_point(box: Box) -> None:
    """Architecture check: each API route depends on require(...) unless listed public;
    every recordings and accounts route needs a LAN-only permission."""
    for route in box.app.routes:
        if not isinstance(route, APIRoute) or route.path.startswith(("/docs", "/openapi")):
            continue
        names = {d.call.__name__ for d in route.dependant.dependencies if d.call}
        for method in route.methods:
            if (method, route.path) in PUBLIC:
                assert not any(n.startswith("require_") for n in names)
                continue
            required = [n for n in names if n.startswith("require_")]
            assert len(required) == 1, (method, route.path, names)
            if route.path.startswith(("/recordings", "/accounts")):
                permission = Permission[required[0].removeprefix("require_").upper()]
                assert permission in LAN_ONLY, (method, route.path)
