"""The configuration document: versioned, validated with the field named, applied all or
nothing, rolled back on failure, reported and audited."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support.api import Box, make_box

from appliance.api.accounts import Role
from appliance.api.config import BoxConfig, ConfigConflict, ExtensionConfig
from appliance.config_doc import desired_sip_settings
from pbx.settings import SipSettings
from pbx.store import Extension


@dataclass
class Step:
    """A runtime apply step that logs what it was asked to do (and can be told to fail)."""

    name: str
    fail: bool = False
    log: list[str] = field(default_factory=list)

    def apply(self, old: BoxConfig, new: BoxConfig) -> None:
        if self.fail:
            raise RuntimeError(f"{self.name} could not apply")
        self.log.append(f"apply {len(new.extensions)}")

    def undo(self, old: BoxConfig, new: BoxConfig) -> None:
        self.log.append(f"undo to {len(old.extensions)}")


def _box(tmp_path: Path, *steps: Step) -> Box:
    b = make_box(tmp_path, config_appliers=list(steps))
    b.account("admin", Role.ADMIN)
    b.account("viewer", Role.VIEWER)
    return b


@pytest.fixture
def cbox(tmp_path: Path) -> Box:
    return _box(tmp_path)


def _doc(box: Box, h: dict[str, str]) -> dict[str, Any]:
    r = box.lan.get("/config", headers=h)
    assert r.status_code == 200
    doc: dict[str, Any] = r.json()
    assert r.headers["ETag"] == f'"{doc["version"]}"'
    return doc


def _state(box: Box) -> tuple[list[Extension], Any, int]:
    """What must not change when an apply is refused."""
    exts = [(e.number, e.display_name, e.enabled, e.call_limit) for e in box.store.directory.list()]
    return exts, box.app.state.config.current(), box.app.state.config.version()  # type: ignore[return-value]


def test_get_starts_from_the_running_state(cbox: Box) -> None:
    cbox.store.directory.create(Extension("101", display_name="Alice"))
    doc = _doc(cbox, cbox.login("viewer"))
    assert doc["version"] == 0
    assert doc["sip"]["domain"] == "edgepbx.local"
    assert [e["number"] for e in doc["extensions"]] == ["101"]
    assert "password" not in str(doc).lower()


def test_put_applies_and_reports(cbox: Box) -> None:
    h = cbox.login("admin")
    cbox.store.directory.create(Extension("101"))
    cbox.store.directory.create(Extension("102"))
    cbox.store.directory.set_password("102", "old-password", "edgepbx.local")
    doc = _doc(cbox, h)
    doc["extensions"] = [
        {"number": "102", "display_name": "Bob", "record_calls": "both"},
        {"number": "103", "display_name": "Carol", "call_limit": 4},
    ]
    doc["sip"]["max_calls"] = 50
    r = cbox.lan.put("/config", headers=h, json=doc)
    assert r.status_code == 200, r.text
    status = r.json()
    assert status["result"] == "applied" and status["version"] == 1
    assert status["restart_required"] is True and status["errors"] == []
    assert r.headers["ETag"] == '"1"'
    exts = {e.number: e for e in cbox.store.directory.list()}
    assert set(exts) == {"102", "103"}
    assert exts["102"].display_name == "Bob" and exts["102"].record_calls.value == "both"
    assert exts["103"].call_limit == 4
    assert cbox.store.directory.secret("102") is not None  # kept: not part of the document
    after = _doc(cbox, h)
    assert after["version"] == 1 and after["sip"]["max_calls"] == 50
    assert cbox.lan.get("/config/status", headers=h).json()["result"] == "applied"
    [event] = cbox.audit("config.applied")
    assert event.actor == "admin" and event.origin == "lan"
    assert event.detail["created"] == ["103"] and event.detail["deleted"] == ["101"]


def test_deleted_extension_loses_its_secret(cbox: Box) -> None:
    h = cbox.login("admin")
    cbox.store.directory.create(Extension("101"))
    cbox.store.directory.set_password("101", "old-password", "edgepbx.local")
    doc = _doc(cbox, h)
    doc["extensions"] = []
    assert cbox.lan.put("/config", headers=h, json=doc).status_code == 200
    assert cbox.store.local.query("SELECT * FROM extension_secrets") == []


def test_stale_version_is_refused_with_409(cbox: Box) -> None:
    h = cbox.login("admin")
    doc = _doc(cbox, h)
    assert cbox.lan.put("/config", headers=h, json=doc).status_code == 200
    doc["sip"]["max_calls"] = 7
    r = cbox.lan.put("/config", headers=h, json=doc)  # still version 0
    assert r.status_code == 409 and "version 0" in r.json()["detail"]
    assert _doc(cbox, h)["sip"]["max_calls"] == 1000
    assert cbox.lan.get("/config/status", headers=h).json()["result"] == "conflict"
    assert cbox.audit("config.conflict")


def test_extension_edits_move_the_version(cbox: Box) -> None:
    h = cbox.login("admin")
    doc = _doc(cbox, h)
    r = cbox.lan.post("/extensions", headers=h, json={"number": "101", "generate_password": False})
    assert r.status_code == 201
    r = cbox.lan.put("/config", headers=h, json=doc)  # would silently delete 101
    assert r.status_code == 409
    assert cbox.store.directory.get("101") is not None


def test_if_match_must_agree(cbox: Box) -> None:
    h = cbox.login("admin")
    doc = _doc(cbox, h)
    r = cbox.lan.put("/config", headers={**h, "If-Match": '"5"'}, json=doc)
    assert r.status_code == 412
    r = cbox.lan.put("/config", headers={**h, "If-Match": '"0"'}, json=doc)
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        (lambda d: d["sip"].update(port=70000), ["body", "sip", "port"]),
        (lambda d: d["sip"].update(domain="not a domain"), ["body", "sip", "domain"]),
        (lambda d: d["sip"].update(transports=[]), ["body", "sip", "transports"]),
        (lambda d: d["sip"].update(transports=["UDP", "UDP"]), ["body", "sip", "transports"]),
        (lambda d: d["sip"].update(colour="red"), ["body", "sip", "colour"]),
        (
            lambda d: d["sip"].update(trusted_networks=["10.0.0.0/8", "10.1.0.0/33"]),
            ["body", "sip", "trusted_networks", 1],
        ),
        (lambda d: d["sip"].update(ban_after_failures=0), ["body", "sip", "ban_after_failures"]),
        (lambda d: d.update(extensions=[{"number": "12a"}]), ["body", "extensions", 0, "number"]),
        (
            lambda d: d.update(extensions=[{"number": "1", "call_limit": 0}]),
            ["body", "extensions", 0, "call_limit"],
        ),
        (
            lambda d: d.update(extensions=[{"number": "1", "display_name": "a\nb"}]),
            ["body", "extensions", 0, "display_name"],
        ),
        (lambda d: d.update(version=-1), ["body", "version"]),
        (lambda d: d.pop("version"), ["body", "version"]),
        # semantic checks, past pydantic
        (
            lambda d: d.update(extensions=[{"number": "1"}, {"number": "1"}]),
            ["body", "extensions", 1, "number"],
        ),
        (
            lambda d: d["sip"].update(rtp_port_min=30000, rtp_port_max=30001),
            ["body", "sip", "rtp_port_max"],
        ),
        (lambda d: d["sip"].update(port=20002), ["body", "sip", "port"]),
    ],
)
def test_invalid_document_names_the_field_and_changes_nothing(
    cbox: Box, change: Any, loc: list[Any]
) -> None:
    h = cbox.login("admin")
    cbox.store.directory.create(Extension("101"))
    doc = _doc(cbox, h)
    before = _state(cbox)
    change(doc)
    r = cbox.lan.put("/config", headers=h, json=doc)
    assert r.status_code == 422, r.text
    assert loc in [e["loc"] for e in r.json()["detail"]]
    assert _state(cbox) == before
    status = cbox.lan.get("/config/status", headers=h).json()
    assert status["result"] == "rejected" and status["version"] == 0
    assert loc in [e["loc"] for e in status["errors"]]
    assert cbox.audit("config.rejected")[-1].actor == "admin"


def test_domain_change_that_breaks_passwords_is_refused(cbox: Box) -> None:
    h = cbox.login("admin")
    cbox.store.directory.create(Extension("101"))
    cbox.store.directory.set_password("101", "old-password", "edgepbx.local")
    doc = _doc(cbox, h)
    doc["sip"]["domain"] = "pbx.example.com"
    r = cbox.lan.put("/config", headers=h, json=doc)
    assert r.status_code == 422
    [err] = r.json()["detail"]
    assert err["loc"] == ["body", "sip", "domain"] and "101" in err["msg"]


def test_apply_failing_halfway_is_rolled_back(tmp_path: Path) -> None:
    first, second, third = Step("sip-core"), Step("recorder", fail=True), Step("never")
    box = _box(tmp_path, first, second, third)
    h = box.login("admin")
    box.store.directory.create(Extension("101", display_name="Alice"))
    box.store.directory.set_password("101", "old-password", "edgepbx.local")
    doc = _doc(box, h)
    before = _state(box)
    doc["extensions"] = [
        {"number": "101", "display_name": "Changed"},
        {"number": "102"},
    ]
    doc["sip"]["max_calls"] = 9
    r = box.lan.put("/config", headers=h, json=doc)
    assert r.status_code == 422
    [err] = r.json()["detail"]
    assert err["loc"] == ["apply", "recorder"] and "could not apply" in err["msg"]
    # The first step was applied and then undone; the third never ran.
    assert first.log == ["apply 2", "undo to 1"] and third.log == []
    # The store is as it was: extension rows, secret, version, sip settings.
    assert _state(box) == before
    assert box.store.directory.secret("101") is not None
    assert box.store.directory.get("102") is None
    status = box.lan.get("/config/status", headers=h).json()
    assert status["result"] == "rolled_back" and status["version"] == 0
    assert box.audit("config.rolled_back")
    # Once the step works again the same document applies.
    second.fail = False
    r = box.lan.put("/config", headers=h, json=doc)
    assert r.status_code == 200 and r.json()["version"] == 1
    assert box.store.directory.get("101").display_name == "Changed"  # type: ignore[union-attr]


def test_store_failure_halfway_is_rolled_back(cbox: Box) -> None:
    """A database rule that only SQLite checks fails in the middle of the writes."""
    h = cbox.login("admin")
    doc = _doc(cbox, h)
    before = _state(cbox)
    # A trigger stands in for any write failure after the first rows went in.
    cbox.store.metadata.execute(
        "CREATE TRIGGER no_999 BEFORE INSERT ON extensions WHEN NEW.number = '999'"
        " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
    )
    doc["extensions"] = [{"number": "100"}, {"number": "101"}, {"number": "999"}]
    r = cbox.lan.put("/config", headers=h, json=doc)
    assert r.status_code == 422
    assert "refused by the test" in r.json()["detail"][0]["msg"]
    assert _state(cbox) == before


def test_viewer_cannot_put_and_cloud_admin_can(cbox: Box) -> None:
    doc = _doc(cbox, cbox.login("viewer"))
    assert cbox.lan.put("/config", headers=cbox.login("viewer"), json=doc).status_code == 403
    r = cbox.cloud.put("/config", headers=cbox.login("admin", cbox.cloud), json=doc)
    assert r.status_code == 200
    assert r.json()["origin"] == "cloud"
    assert cbox.audit("config.applied")[-1].origin == "cloud"


def test_the_sip_core_starts_with_the_applied_sip_section(cbox: Box) -> None:
    base = SipSettings(host="127.0.0.1", port=5070)
    assert desired_sip_settings(cbox.store.metadata, base) == base
    h = cbox.login("admin")
    doc = _doc(cbox, h)
    doc["sip"].update(port=5080, digest_algorithms=["SHA-256", "MD5"], max_calls=20)
    doc["sip"].update(trusted_networks=["192.168.10.0/24"], ban_seconds=60, registrar_workers=1)
    assert cbox.lan.put("/config", headers=h, json=doc).status_code == 200
    started = desired_sip_settings(cbox.store.metadata, base)
    assert (started.host, started.port, started.max_calls) == ("127.0.0.1", 5080, 20)
    assert started.digest_algorithms == ("SHA-256", "MD5")
    assert started.worker_count == 1 and started.guard.ban_seconds == 60
    assert started.guard.trusted == ("192.168.10.0/24",)


def test_concurrent_puts_one_wins_the_other_conflicts(cbox: Box) -> None:
    service = cbox.app.state.config
    doc = service.current()
    outcomes: list[str] = []

    def put(name: str) -> None:
        wanted = doc.model_copy(
            update={"extensions": [ExtensionConfig(number="1", display_name=name)]}
        )
        try:
            service.apply(wanted, actor="admin", origin="lan")
            outcomes.append("applied")
        except ConfigConflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=put, args=(f"editor {i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["applied", "conflict", "conflict", "conflict"]
    assert service.version() == 1
    assert len(cbox.store.directory.list()) == 1
