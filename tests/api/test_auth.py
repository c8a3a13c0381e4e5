"""Logins: argon2 accounts, hashed short-lived tokens, logout, rate limit and lockout,
the first admin, and the accounts endpoints."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from support.api import LOCAL_PEER, PASSWORD, Box, TestClient, make_box

from appliance.api.accounts import Role


def test_login_and_me(box: Box) -> None:
    r = box.lan.post("/auth/login", json={"login": "Admin", "password": PASSWORD})
    assert r.status_code == 200
    body = r.json()
    assert body["role"] == "admin" and body["expires_at"] == box.clock.now + 1800
    assert r.headers["Cache-Control"] == "no-store"
    me = box.lan.get("/auth/me", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.json() == {"login": "admin", "role": "admin", "origin": "lan"}
    # local.db keeps the token's hash, never the token; the password only as argon2id.
    rows = box.store.local.query("SELECT token_hash FROM api_sessions")
    assert rows == [(hashlib.sha256(body["token"].encode()).hexdigest(),)]
    [(stored,)] = box.store.local.query(
        "SELECT password_hash FROM api_accounts WHERE login='admin'"
    )
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert box.audit("auth.login")[-1].actor == "admin"


def test_wrong_password_and_unknown_login_look_the_same(box: Box) -> None:
    a = box.lan.post("/auth/login", json={"login": "admin", "password": "wrong"})
    b = box.lan.post("/auth/login", json={"login": "nobody", "password": "wrong"})
    assert a.status_code == b.status_code == 401
    assert a.json() == b.json()
    assert [e.target for e in box.audit("auth.login_failed")] == ["admin", "nobody"]


def test_token_expires(box: Box) -> None:
    h = box.login("viewer")
    box.clock.now += 1799
    assert box.lan.get("/auth/me", headers=h).status_code == 200
    box.clock.now += 2
    assert box.lan.get("/auth/me", headers=h).status_code == 401


def test_logout_ends_the_token(box: Box) -> None:
    h = box.login("viewer")
    assert box.lan.post("/auth/logout", headers=h).status_code == 204
    assert box.lan.get("/auth/me", headers=h).status_code == 401
    assert box.audit("auth.logout")


def test_bad_tokens(box: Box) -> None:
    for value in ("Bearer nonsense", "Bearer ", "Basic YWRtaW46eA==", "Bearer " + "x" * 5000):
        assert box.lan.get("/auth/me", headers={"Authorization": value}).status_code == 401


def test_lockout_per_account(box: Box) -> None:
    for _ in range(5):
        r = box.lan.post("/auth/login", json={"login": "viewer", "password": "wrong"})
        assert r.status_code == 401
    # Locked now: even the right password waits.
    r = box.lan.post("/auth/login", json={"login": "viewer", "password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) == 300
    assert "locked" in r.json()["detail"]
    # Other accounts are not affected.
    assert box.lan.post("/auth/login", json={"login": "admin", "password": PASSWORD}).is_success
    box.clock.now += 301
    assert box.lan.post("/auth/login", json={"login": "viewer", "password": PASSWORD}).is_success
    assert box.audit("auth.throttled")


def test_rate_limit_per_address(box: Box) -> None:
    logins = ["admin", "super", "viewer", "a", "b", "c", "d", "e", "f", "g"]
    for name in logins:  # the burst: 10 attempts
        r = box.lan.post("/auth/login", json={"login": name, "password": "wrong"})
        assert r.status_code == 401
    r = box.lan.post("/auth/login", json={"login": "admin", "password": PASSWORD})
    assert r.status_code == 429 and "address" in r.json()["detail"]
    # Another address is not limited.
    other = TestClient(box.app, client=("192.0.2.99", 1))
    assert other.post("/auth/login", json={"login": "admin", "password": PASSWORD}).is_success
    box.clock.now += 5  # 0.2 attempts per second refill
    assert box.lan.post("/auth/login", json={"login": "admin", "password": PASSWORD}).is_success


def test_login_input_is_checked(box: Box) -> None:
    for body, field in (
        ({"login": "admin"}, "password"),
        ({"password": "x"}, "login"),
        ({"login": "", "password": "x"}, "login"),
        ({"login": "a" * 65, "password": "x"}, "login"),
    ):
        r = box.lan.post("/auth/login", json=body)
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["body", field]


def test_bootstrap_only_once_and_only_on_the_box(tmp_path: Path) -> None:
    box = make_box(tmp_path)
    body = {"login": "installer", "password": "a long password"}
    assert box.lan.post("/auth/bootstrap", json=body).status_code == 403  # a LAN peer
    assert box.cloud.post("/auth/bootstrap", json=body).status_code == 403
    local = TestClient(box.app, client=LOCAL_PEER)
    r = local.post("/auth/bootstrap", json={"login": "installer", "password": "short"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "password"]
    r = local.post("/auth/bootstrap", json=body)
    assert r.status_code == 201 and r.json()["role"] == "admin"
    assert local.post("/auth/bootstrap", json=body).status_code == 409
    assert box.audit("account.created")[0].actor == "installer"
    box.store.close()


def test_accounts_crud(box: Box) -> None:
    h = box.login("admin")
    r = box.lan.post("/accounts", headers=h, json={"login": "Op", "role": "supervisor"})
    assert r.status_code == 201
    generated = r.json()["password"]
    assert r.json()["account"]["login"] == "op" and len(generated) >= 16
    assert box.lan.post("/auth/login", json={"login": "op", "password": generated}).is_success
    # The password is never shown again.
    assert generated not in box.lan.get("/accounts/op", headers=h).text
    assert generated not in box.lan.get("/accounts", headers=h).text
    r = box.lan.post("/accounts", headers=h, json={"login": "op", "role": "viewer"})
    assert r.status_code == 409
    r = box.lan.post("/auth/login", json={"login": "op", "password": generated})
    op = {"Authorization": f"Bearer {r.json()['token']}"}
    r = box.lan.patch("/accounts/op", headers=h, json={"role": "viewer"})
    assert r.status_code == 200 and r.json()["role"] == "viewer"
    assert box.lan.get("/auth/me", headers=op).status_code == 401  # role changed: logged out
    r = box.lan.post("/accounts/op/password", headers=h, json={"password": "a new long one"})
    assert r.status_code == 200 and r.json() == {"password": None}
    assert box.lan.post(
        "/auth/login", json={"login": "op", "password": "a new long one"}
    ).is_success
    assert box.lan.delete("/accounts/op", headers=h).status_code == 204
    assert box.lan.get("/accounts/op", headers=h).status_code == 404
    assert box.lan.delete("/accounts/op", headers=h).status_code == 204  # gone is gone
    actions = [e.action for e in box.store.audit.events(action="account.", limit=100)]
    assert actions == [
        "account.created",
        "account.updated",
        "account.password_set",
        "account.deleted",
    ]


def test_accounts_bad_input(box: Box) -> None:
    h = box.login("admin")
    for body, loc in (
        ({"login": "x y", "role": "viewer"}, ["body", "login"]),
        ({"login": "ok", "role": "root"}, ["body", "role"]),
        ({"login": "ok", "role": "viewer", "password": "short"}, ["body", "password"]),
    ):
        r = box.lan.post("/accounts", headers=h, json=body)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == loc
    assert box.lan.patch("/accounts/ghost", headers=h, json={"role": "viewer"}).status_code == 404
    assert box.lan.patch("/accounts/viewer", headers=h, json={"role": "god"}).status_code == 422
    assert {a.login for a in box.accounts.list()} == {"admin", "super", "viewer"}


def test_last_admin_stays(box: Box) -> None:
    h = box.login("admin")
    assert box.lan.patch("/accounts/admin", headers=h, json={"role": "viewer"}).status_code == 409
    assert box.lan.patch("/accounts/admin", headers=h, json={"enabled": False}).status_code == 409
    assert box.lan.delete("/accounts/admin", headers=h).status_code == 409
    box.accounts.create("second", PASSWORD, Role.ADMIN)
    assert box.lan.delete("/accounts/admin", headers=h).status_code == 204


def test_disabled_account_cannot_log_in(box: Box) -> None:
    h = box.login("admin")
    v = box.login("viewer")
    assert box.lan.patch("/accounts/viewer", headers=h, json={"enabled": False}).is_success
    assert box.lan.get("/auth/me", headers=v).status_code == 401
    r = box.lan.post("/auth/login", json={"login": "viewer", "password": PASSWORD})
    assert r.status_code == 401


def test_only_admins_manage_accounts(box: Box) -> None:
    for who in ("super", "viewer"):
        assert box.lan.get("/accounts", headers=box.login(who)).status_code == 403


def test_change_own_password(box: Box) -> None:
    h = box.login("viewer")
    wrong = {"current_password": "not it", "new_password": "a brand new one"}
    assert box.lan.post("/auth/password", headers=h, json=wrong).status_code == 403
    body = {"current_password": PASSWORD, "new_password": "a brand new one"}
    r = box.lan.post("/auth/password", headers=h, json={**body, "new_password": "short"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "new_password"]
    assert box.lan.post("/auth/password", headers=h, json=body).status_code == 204
    assert box.lan.get("/auth/me", headers=h).status_code == 401  # sessions ended
    r = box.lan.post("/auth/login", json={"login": "viewer", "password": "a brand new one"})
    assert r.is_success
    # Not over the cloud link: a credential of the box.
    ch = box.login("admin", box.cloud)
    body = {"current_password": PASSWORD, "new_password": "from the cloud"}
    assert box.cloud.post("/auth/password", headers=ch, json=body).status_code == 403
    assert box.audit("policy.denied")[-1].target == "POST /auth/password"


def test_first_admin_is_created_once_even_when_raced(tmp_path: Path) -> None:
    box = make_box(tmp_path)
    results: list[object] = []
    threads = [
        threading.Thread(
            target=lambda n=n: results.append(
                box.accounts.create_first(f"first{n}", "a long password")
            )
        )
        for n in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is not None for r in results) == 1
    assert box.accounts.count() == 1
    box.store.close()
