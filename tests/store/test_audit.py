"""The audit chain: the in-memory twin and the SQLite log run the same scenarios; tampering
with the SQLite files (as someone with disk access would) is detected."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.store import open_store
from appliance.store.store import SqliteStore
from pbx.audit import GENESIS, AuditLog, MemoryAuditLog
from pbx.store import InvalidValue


def ticking() -> Iterator[float]:
    return (1_700_000_000.0 + i / 8 for i in itertools.count())


@pytest.fixture(params=["memory", "sqlite"])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AuditLog]:
    clock = ticking()
    if request.param == "memory":
        yield MemoryAuditLog(lambda: next(clock))
        return
    store = open_store(tmp_path, clock=lambda: next(clock))
    yield store.audit
    store.close()


def fill(log: AuditLog, n: int) -> None:
    for i in range(n):
        log.append(
            "recording.started" if i % 2 else "extension.updated",
            actor="admin" if i % 3 else "recorder",
            origin="lan",
            target=f"t{i % 4}",
            detail={"i": i, "name": "Алиса", "sizes": [1, 2.5]},
        )


def test_a_chain_verifies_and_links_each_event_to_the_one_before(log: AuditLog) -> None:
    assert log.verify().ok and log.verify().events == 0
    fill(log, 7)
    events = log.events()
    assert [e.seq for e in events] == list(range(1, 8))
    assert events[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))
    report = log.verify()
    assert report.ok and report.events == 7 and report.head == events[-1].hash
    assert events[3].detail == {"i": 3, "name": "Алиса", "sizes": [1, 2.5]}


def test_filters_page_and_match_action_prefixes(log: AuditLog) -> None:
    fill(log, 10)
    assert [e.seq for e in log.events(action="recording.")] == [2, 4, 6, 8, 10]
    assert [e.seq for e in log.events(target="t1")] == [2, 6, 10]
    assert [e.seq for e in log.events(after=3, limit=2)] == [4, 5]
    assert log.events(action="recording%") == []  # no LIKE wildcards
    with pytest.raises(InvalidValue):
        log.events(limit=100_000)


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"detail": {"password": "x"}}, "secret"),
        ({"detail": {"api_token": "x"}}, "secret"),
        ({"detail": {"ha1": "x"}}, "secret"),
        ({"detail": {"x": object()}}, "JSON"),
        ({"detail": {"x": float("nan")}}, "JSON"),
        ({"origin": "internet"}, "origin"),
        ({"actor": ""}, "actor"),
    ],
)
def test_bad_events_are_refused_and_leave_the_chain_as_it_was(
    log: AuditLog, kwargs: dict[str, object], word: str
) -> None:
    fill(log, 2)
    args: dict[str, object] = {"actor": "admin", "origin": "lan", **kwargs}
    with pytest.raises(InvalidValue, match=word):
        log.append("extension.updated", **args)  # type: ignore[arg-type]
    assert len(log.events()) == 2 and log.verify().ok


# ------------------------------------------------------------------------------ tampering


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    clock = ticking()
    store = open_store(tmp_path, clock=lambda: next(clock))
    fill(store.audit, 6)
    yield store
    store.close()


def test_an_edited_event_is_found(store: SqliteStore) -> None:
    store.metadata.execute("UPDATE audit_events SET target = 'other' WHERE seq = 4")
    report = store.audit.verify()
    assert not report.ok and report.bad_seq == 4 and "content" in report.problem


def test_an_edited_and_rehashed_event_breaks_the_next_link(store: SqliteStore) -> None:
    store.metadata.execute("UPDATE audit_events SET hash = ? WHERE seq = 3", ("f" * 64,))
    report = store.audit.verify()
    assert not report.ok and report.bad_seq == 3


def test_a_deleted_event_is_found(store: SqliteStore) -> None:
    store.metadata.execute("DELETE FROM audit_events WHERE seq = 2")
    report = store.audit.verify()
    assert not report.ok and report.bad_seq == 2 and "missing" in report.problem


def test_deleting_the_newest_events_is_found_by_the_anchor(store: SqliteStore) -> None:
    store.metadata.execute("DELETE FROM audit_events WHERE seq >= 5")
    report = store.audit.verify()
    assert not report.ok and report.bad_seq == 5 and "anchor" in report.problem


def test_an_anchor_one_behind_after_a_crash_is_accepted(store: SqliteStore) -> None:
    head = store.audit.events()[-2]
    store.local.execute("UPDATE audit_anchor SET seq = ?, hash = ?", (head.seq, head.hash))
    assert store.audit.verify().ok


def test_the_chain_survives_reopening_and_the_anchor_stays_local(tmp_path: Path) -> None:
    clock = ticking()
    with_store = open_store(tmp_path, clock=lambda: next(clock))
    fill(with_store.audit, 3)
    with_store.close()
    again = open_store(tmp_path, clock=lambda: next(clock))
    again.audit.append("system.started", actor="system", origin="box")
    assert again.audit.verify().ok and again.audit.verify().events == 4
    assert again.metadata.query("SELECT name FROM sqlite_master WHERE name = 'audit_anchor'") == []
    again.close()


def test_appenders_in_several_threads_extend_one_chain(tmp_path: Path) -> None:
    stores = [open_store(tmp_path) for _ in range(3)]  # three connections, like processes

    def work(store: SqliteStore, who: int) -> None:
        for i in range(40):
            store.audit.append("cdr.read", actor=f"worker{who}", origin="lan", detail={"i": i})

    threads = [threading.Thread(target=work, args=(s, n)) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = stores[0].audit.verify()
    assert report.ok and report.events == 120
    for s in stores:
        s.close()


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(2, 12),
    victim=st.integers(0, 11),
    field=st.sampled_from(["time", "actor", "action", "target", "detail", "prev_hash", "seq"]),
)
def test_any_change_to_any_event_is_detected(n: int, victim: int, field: str) -> None:
    log = MemoryAuditLog(lambda: 5.0)
    fill(log, n)
    index = victim % n
    event = log.chain[index]
    changed = {
        "time": event.time + 1,
        "actor": event.actor + "x",
        "action": event.action + "x",
        "target": event.target + "x",
        "detail": {**event.detail, "extra": 1},
        "prev_hash": "e" * 64,
        "seq": event.seq + 100,
    }[field]
    log.chain[index] = replace(event, **{field: changed})
    report = log.verify()
    assert not report.ok and report.bad_seq is not None and report.bad_seq <= event.seq + 1
