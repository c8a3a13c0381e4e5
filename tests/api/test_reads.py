"""Read endpoints: registrations, call records (filters, pages, totals), audit log,
sync status, system."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.api import Box, make_box

from appliance.api.accounts import Role
from pbx.store import Binding, CallRecord, Direction, Disposition, Extension, HangupSide

# ---------------------------------------------------------------------- registrations


def test_registrations_list_active_bindings(box: Box) -> None:
    now = box.clock.now
    for n in ("101", "102"):
        box.store.directory.create(Extension(n))

    def bind(aor: str, contact: str, expires: float) -> None:
        box.store.bindings.put(
            Binding(aor, contact, now + expires, "cid", 1, "UDP", "192.0.2.7", 5062, now,
                    user_agent="baresip")
        )  # fmt: skip

    bind("101", "sip:101@192.0.2.7:5062", 300)
    bind("102", "sip:102@192.0.2.8:5062", 60)
    bind("102", "sip:102@192.0.2.9:5062", -1)  # expired
    h = box.login("viewer")
    rows = box.lan.get("/registrations", headers=h).json()
    assert [(r["extension"], r["contact"]) for r in rows] == [
        ("101", "sip:101@192.0.2.7:5062"),
        ("102", "sip:102@192.0.2.8:5062"),
    ]
    assert rows[0]["expires_in"] == 300 and rows[0]["user_agent"] == "baresip"
    only = box.lan.get("/registrations?extension=102", headers=h).json()
    assert [r["contact"] for r in only] == ["sip:102@192.0.2.8:5062"]
    r = box.lan.get("/registrations?extension=abc", headers=h)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "extension"]


# ---------------------------------------------------------------------- call records


def _record(
    i: int, *, caller: str = "101", dialed: str = "102", answered: bool = True
) -> CallRecord:
    start = 1000.0 + i * 10
    return CallRecord(
        call_id=f"call-{i:03d}",
        sip_call_id=f"sip-{i}",
        caller_number=caller,
        dialed=dialed,
        callee_number=dialed if answered else None,
        direction=Direction.INTERNAL,
        start_time=start,
        answer_time=start + 1 if answered else None,
        end_time=start + 5,
        disposition=Disposition.ANSWERED if answered else Disposition.NO_ANSWER,
        hangup_side=HangupSide.CALLER,
    )


@pytest.fixture
def records(box: Box) -> Box:
    for i in range(30):
        box.store.cdr.write(_record(i, answered=i % 3 != 0, caller="103" if i >= 25 else "101"))
    return box


def test_call_records_pages_and_total(records: Box) -> None:
    h = records.login("viewer")
    page = records.lan.get("/call-records?limit=10&offset=5", headers=h).json()
    assert page["total"] == 30 and page["limit"] == 10 and page["offset"] == 5
    assert [r["call_id"] for r in page["items"]] == [f"call-{i:03d}" for i in range(24, 14, -1)]
    missed, answered = page["items"][0], page["items"][1]  # call 24 rang out, 23 was answered
    assert missed["disposition"] == "NO ANSWER" and missed["billable"] == 0
    assert answered["duration"] == 5 and answered["billable"] == 4


def test_call_records_filters(records: Box) -> None:
    h = records.login("viewer")

    def get(query: str) -> dict[str, Any]:
        r = records.lan.get(f"/call-records?{query}", headers=h)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    assert get("disposition=NO%20ANSWER")["total"] == 10
    assert get("number=103")["total"] == 5
    assert get("since=1100&until=1200")["total"] == 10  # start 1100..1190
    both = get("since=1100&until=1200&disposition=ANSWERED")
    assert both["total"] == 7 and all(r["disposition"] == "ANSWERED" for r in both["items"])
    assert get("number=999")["total"] == 0


@pytest.mark.parametrize(
    ("query", "loc"),
    [
        ("limit=1001", ["query", "limit"]),
        ("limit=-1", ["query", "limit"]),
        ("offset=-5", ["query", "offset"]),
        ("since=abc", ["query", "since"]),
        ("since=nan", ["query", "since"]),
        ("disposition=MAYBE", ["query", "disposition"]),
        ("since=200&until=100", ["query", "until"]),
    ],
)
def test_call_records_bad_queries(records: Box, query: str, loc: list[str]) -> None:
    r = records.lan.get(f"/call-records?{query}", headers=records.login("viewer"))
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == loc


def test_call_record_by_id(records: Box) -> None:
    h = records.login("viewer")
    assert records.lan.get("/call-records/call-007", headers=h).json()["caller_number"] == "101"
    assert records.lan.get("/call-records/nope", headers=h).status_code == 404


# ---------------------------------------------------------------------- audit


def test_audit_events_filters_and_verify(box: Box) -> None:
    h = box.login("admin")
    box.lan.post("/extensions", headers=h, json={"number": "101", "generate_password": False})
    box.lan.delete("/extensions/101", headers=h)
    page = box.lan.get("/audit/events?action=extension.", headers=h).json()
    assert [e["action"] for e in page["items"]] == ["extension.created", "extension.deleted"]
    assert page["next_after"] is None
    first = box.lan.get("/audit/events?limit=1", headers=h).json()
    assert first["next_after"] == first["items"][0]["seq"] == 1
    rest = box.lan.get(f"/audit/events?after={first['next_after']}", headers=h).json()
    assert rest["items"][0]["seq"] == 2
    assert box.lan.get("/audit/events?target=101", headers=h).json()["items"][0]["target"] == "101"
    assert box.lan.get("/audit/events?limit=0", headers=h).status_code == 422
    verify = box.lan.get("/audit/verify", headers=h).json()
    assert verify["ok"] is True and verify["events"] >= 3
    # Tampering with an event is found.
    box.store.metadata.execute("UPDATE audit_events SET actor = 'mallory' WHERE seq = 2")
    verify = box.lan.get("/audit/verify", headers=h).json()
    assert verify["ok"] is False and verify["bad_seq"] == 2


# ---------------------------------------------------------------------- sync and system


@dataclass
class Alarm:
    code: str
    severity: str

    def to_json(self) -> dict[str, object]:
        return {
            "code": self.code,
            "source": "sync",
            "severity": self.severity,
            "message": "the replica is behind",
            "since": 1.0,
        }


@dataclass
class SyncTwin:
    """The sync part's status as its SyncStatus.to_json() shapes it."""

    alarms: tuple[Alarm, ...] = ()

    def status(self) -> SyncTwin:
        return self

    def to_json(self) -> dict[str, Any]:
        return {
            "state": "behind" if self.alarms else "replicating",
            "target": "file:///var/replica",
            "last_sync_at": 10.0,
            "lag_seconds": 0.2,
            "local_txid": 7,
            "replicated_txid": 7,
            "restarts": 0,
            "last_error": None,
            "alarms": [a.to_json() for a in self.alarms],
            "updated_at": 11.0,
        }


def test_sync_status_and_alarms(tmp_path: Path) -> None:
    sync = SyncTwin()
    box = make_box(tmp_path, sync=sync)
    box.account("viewer", Role.VIEWER)
    h = box.login("viewer")
    r = box.lan.get("/sync/status", headers=h)
    assert r.status_code == 200 and r.json()["state"] == "replicating"
    assert box.lan.get("/system/alarms", headers=h).json() == []
    sync.alarms = (Alarm("sync.down", "critical"),)
    assert box.lan.get("/sync/status", headers=h).json()["alarms"][0]["code"] == "sync.down"
    assert [a["code"] for a in box.lan.get("/system/alarms", headers=h).json()] == ["sync.down"]
    assert box.lan.get("/system/health").json()["status"] == "degraded"
    # The cloud cabinet may read the sync status (metadata).
    box.account("admin", Role.ADMIN)
    ch = box.login("admin", box.cloud)
    assert box.cloud.get("/sync/status", headers=ch).status_code == 200
    box.store.close()


def test_parts_not_running_answer_503(box: Box) -> None:
    h = box.login("admin")
    assert box.lan.get("/sync/status", headers=h).status_code == 503
    assert box.lan.get("/calls", headers=h).status_code == 503
    assert box.lan.delete("/calls/x", headers=h).status_code == 503
    health = box.lan.get("/system/health").json()
    assert health["parts"] == {"store": True, "calls": False, "recordings": True, "sync": False}


def test_version(box: Box) -> None:
    r = box.lan.get("/system/version", headers=box.login("viewer"))
    assert r.json()["version"] == box.ctx.version
