"""What only the write-behind bindings have (the contract tests run them as the "queued"
kind): reads that never wait for the disk, a queue that reaches SQLite on close, coalesced
batches, the directory check of ``put``, and what a crash costs."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from appliance.store import METADATA_DB, SqliteStore, StorageFailure, open_store
from appliance.store.database import Database, connect, open_database
from appliance.store.schema import METADATA
from appliance.store.sqlite import SqliteBindingStore
from appliance.store.writer import WriteBehindBindings
from pbx.store import Binding, Extension, NotFound

NOW = 1_700_000_000.0


def binding(aor: str = "101", contact: str = "sip:101@192.0.2.10", **kw: object) -> Binding:
    fields: dict[str, object] = {
        "aor": aor,
        "contact": contact,
        "expires_at": NOW + 3600,
        "call_id": "reg-1@192.0.2.10",
        "cseq": 1,
        "source_transport": "UDP",
        "source_host": "198.51.100.7",
        "source_port": 40312,
        "updated_at": NOW,
        **kw,
    }
    return Binding(**fields)  # type: ignore[arg-type]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def store(data: Path) -> Iterator[SqliteStore]:
    s = open_store(data, write_behind=True)
    for number in ("101", "102", "103"):
        s.directory.create(Extension(number))
    yield s
    s.close()


def queued(store: SqliteStore) -> WriteBehindBindings:
    assert isinstance(store.bindings, WriteBehindBindings)
    return store.bindings


def on_disk(data: Path) -> list[Binding]:
    """What metadata.db holds, read on a connection of its own (no migration: no lock)."""
    path = data / METADATA_DB
    db = Database(connect(path), path, METADATA)
    try:
        return SqliteBindingStore(db).all_active(float("-inf"))
    finally:
        db.close()


class WriteLock:
    """Another connection holding metadata.db's write lock until released."""

    def __init__(self, path: Path) -> None:
        self.conn = connect(path, check_same_thread=False)
        self.conn.execute("BEGIN IMMEDIATE")
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.conn.execute("COMMIT")
            self.conn.close()


@pytest.fixture
def lock(data: Path) -> Iterator[Callable[[], WriteLock]]:
    """Takes the write lock; released at the end even if the test fails (close() would
    otherwise wait for the lock forever)."""
    taken: list[WriteLock] = []

    def take() -> WriteLock:
        taken.append(WriteLock(data / METADATA_DB))
        return taken[-1]

    yield take
    for held in taken:
        held.release()


def test_open_store_writes_bindings_behind(data: Path) -> None:
    with_queue = open_store(data, write_behind=True)
    inline = open_store(data / "inline")
    assert isinstance(with_queue.bindings, WriteBehindBindings)
    assert isinstance(inline.bindings, SqliteBindingStore)
    # Both threads commit on one connection that is not the loop's.
    assert with_queue.writer is not None
    assert with_queue.bindings.database is with_queue.writer
    assert with_queue.cdr.database is with_queue.writer  # type: ignore[union-attr]
    assert with_queue.writer is not with_queue.metadata
    with_queue.close()
    inline.close()


def test_reads_see_writes_at_once_while_the_disk_is_locked(
    data: Path, store: SqliteStore, lock: Callable[[], WriteLock]
) -> None:
    held = lock()
    started = time.monotonic()
    for i in range(100):
        store.bindings.put(binding(contact=f"sip:101@192.0.2.{i}", expires_at=NOW + i + 1))
    store.bindings.put(binding(aor="102"))
    assert time.monotonic() - started < 0.1  # no put waited for the lock
    assert len(store.bindings.list("101")) == 100
    assert store.bindings.list("102") == [binding(aor="102")]
    assert store.bindings.remove("101", "sip:101@192.0.2.0") is True
    assert len(store.bindings.expire(NOW + 10)) == 9  # expires_at 2..10
    assert len(store.bindings.all_active(NOW)) == 91
    assert store.bindings.remove_all("101") == 90
    assert store.bindings.all_active(NOW) == [binding(aor="102")]
    assert on_disk(data) == []  # nothing committed yet: the thread waits for the lock
    threading.Timer(0.2, held.release).start()
    queued(store).flush()
    assert on_disk(data) == [binding(aor="102")]


def test_close_commits_the_queue_and_reopen_loads_it(data: Path, store: SqliteStore) -> None:
    kept = [binding(contact=f"sip:101@192.0.2.{i:02}", cseq=i) for i in range(50)]
    for b in kept:
        store.bindings.put(dataclasses.replace(b, cseq=0))
        store.bindings.put(b)  # the refresh wins
    store.bindings.put(binding(aor="102"))
    store.bindings.remove("102", binding(aor="102").contact)
    store.bindings.put(binding(aor="103", expires_at=NOW))
    store.bindings.expire(NOW)
    store.close()
    assert on_disk(data) == kept  # plain SQLite, no write-behind
    reopened = open_store(data, write_behind=True)
    assert reopened.bindings.list("101") == kept  # loaded into memory at open
    assert reopened.bindings.all_active(NOW) == kept
    reopened.close()


def test_a_batch_is_one_transaction_with_the_last_write_winning(
    data: Path, store: SqliteStore
) -> None:
    writer = queued(store)
    statements: list[str] = []
    assert store.writer is not None
    store.writer.connection.set_trace_callback(statements.append)
    # Hold the writer's connection: the thread takes at most one batch before it blocks.
    with writer.database.lock:
        for cseq in range(100):  # 201 queued items: within one batch (max_batch 256)
            store.bindings.put(binding(cseq=cseq))
            store.bindings.put(binding(aor="102", cseq=cseq))
        store.bindings.remove("102", binding(aor="102").contact)
    writer.flush()
    store.writer.connection.set_trace_callback(None)
    assert on_disk(data) == [binding(cseq=99)]
    begins = [s for s in statements if s.startswith("BEGIN")]
    upserts = [s for s in statements if s.startswith("INSERT INTO bindings")]
    assert 1 <= len(begins) <= 2  # the items taken before the rest was queued, then the rest
    assert len(upserts) <= 3  # 200 puts: one per (aor, contact) and batch


def test_put_checks_the_directory_only_for_an_aor_without_bindings(
    data: Path, store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []
    original = store.directory.get

    def get(number: str) -> Extension | None:
        asked.append(number)
        return original(number)

    monkeypatch.setattr(store.directory, "get", get)
    store.bindings.put(binding())
    for cseq in range(2, 10):
        store.bindings.put(binding(cseq=cseq))  # refreshes: the AoR is known
    assert asked == ["101"]
    with pytest.raises(NotFound):
        store.bindings.put(binding(aor="999"))
    assert store.bindings.list("999") == []
    # Deleting the extension forgets its bindings, so the next put asks again.
    store.directory.delete("101")
    assert store.bindings.list("101") == []
    with pytest.raises(NotFound):
        store.bindings.put(binding())
    assert asked == ["101", "999", "101"]


def test_an_extension_deleted_and_recreated_behind_the_queue(
    data: Path, store: SqliteStore
) -> None:
    """The queued put of a deleted extension must not come back for its new namesake."""
    writer = queued(store)
    with writer.database.lock:
        store.bindings.put(binding())
        store.directory.delete("101")  # the loop's connection: not held up by the writer
        store.directory.create(Extension("101"))
        store.bindings.put(binding(aor="102"))
        assert store.bindings.list("101") == []
    writer.flush()
    assert on_disk(data) == [binding(aor="102")]


def test_a_row_whose_extension_vanished_does_not_sink_the_batch(
    data: Path, store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    """Another process deletes an extension while its binding is queued: that row is skipped,
    the rest of the batch is stored."""
    caplog.set_level("INFO", logger="appliance.store.writer")
    writer = queued(store)
    with writer.database.lock:
        store.bindings.put(binding())
        store.bindings.put(binding(aor="102"))
        other = connect(data / METADATA_DB)
        other.execute("DELETE FROM extensions WHERE number = '101'")
        other.close()
    writer.flush()
    assert on_disk(data) == [binding(aor="102")]
    assert "binding of deleted extension 101 not stored" in caplog.text


def standalone(data: Path, **kw: object) -> tuple[SqliteStore, WriteBehindBindings]:
    """An inline store for the directory, and write-behind bindings that give up on the
    lock after 20 ms (so storage failures happen quickly)."""
    store = open_store(data)
    store.directory.create(Extension("101"))
    db: Database = open_database(data / METADATA_DB, METADATA)
    db.connection.execute("PRAGMA busy_timeout = 20")
    return store, WriteBehindBindings(db, store.directory, **kw)  # type: ignore[arg-type]


def test_storage_failures_are_retried(data: Path, lock: Callable[[], WriteLock]) -> None:
    store, writer = standalone(data, retry_delay=0.02)
    held = lock()
    writer.put(binding())
    time.sleep(0.2)  # several failed attempts
    held.release()
    writer.flush()
    assert on_disk(data) == [binding()]
    writer.close()
    with pytest.raises(StorageFailure, match="closed"):
        writer.put(binding(cseq=2))
    assert writer.list("101") == [binding()]  # a refused put changes nothing
    store.close()


def test_a_full_queue_refuses_and_changes_nothing(
    data: Path, lock: Callable[[], WriteLock]
) -> None:
    store, writer = standalone(data, max_queue=3, retry_delay=0.02)
    held = lock()
    accepted = 0
    with pytest.raises(StorageFailure, match="queue full"):
        for i in range(10):
            writer.put(binding(contact=f"sip:101@192.0.2.{i}"))
            accepted += 1
    assert 3 <= accepted <= 4  # the thread may hold one item in its batch
    assert len(writer.list("101")) == accepted
    with pytest.raises(StorageFailure, match="queue full"):
        writer.expire(NOW + 7200)  # all or nothing: one queue item per call
    assert len(writer.list("101")) == accepted
    held.release()
    writer.flush()
    assert on_disk(data) == writer.list("101")
    writer.close()
    store.close()


def test_expire_after_a_refresh_moved_the_expiry(store: SqliteStore) -> None:
    store.bindings.put(binding(expires_at=NOW + 10))
    store.bindings.put(binding(aor="102", expires_at=NOW + 40))
    store.bindings.put(binding(expires_at=NOW + 30, cseq=2))  # the refresh
    assert store.bindings.expire(NOW + 20) == []
    assert store.bindings.expire(NOW + 30) == [binding(expires_at=NOW + 30, cseq=2)]
    assert store.bindings.expire(NOW + 35) == []
    assert store.bindings.expire(NOW + 40) == [binding(aor="102", expires_at=NOW + 40)]
    assert store.bindings.all_active(0) == []


# ------------------------------------------------------------------------------ a crash

CRASH = """
import os, sys
from pathlib import Path
from appliance.store import open_store
from pbx.store import Binding, Extension

store = open_store(Path(sys.argv[1]), write_behind=True)
for n in range(1000, 1100):
    store.directory.create(Extension(str(n)))

def put(i):
    store.bindings.put(Binding(
        aor=str(1000 + i % 100), contact=f"sip:{i}@192.0.2.1", expires_at=1e10, call_id="c",
        cseq=i, source_transport="UDP", source_host="192.0.2.1", source_port=5060,
        updated_at=0.0,
    ))

for i in range(500):
    put(i)
store.bindings.flush()
if sys.argv[2] == "stuck":
    store.writer.lock.acquire()  # the thread cannot commit any more
for i in range(500, 3000):
    put(i)
os._exit(0)  # no close(): the queue dies with the process
"""


@pytest.mark.parametrize("disk", ["stuck", "free"])
def test_a_crash_loses_at_most_what_was_queued(data: Path, disk: str) -> None:
    subprocess.run([sys.executable, "-c", CRASH, str(data), disk], check=True, timeout=60)
    stored = {int(b.contact[4:].split("@")[0]) for b in on_disk(data)}
    assert set(range(500)) <= stored  # everything flushed survived
    later = sorted(stored - set(range(500)))
    # Batches commit in queue order and whole: what survived of the rest is a prefix.
    assert later == list(range(500, 500 + len(later)))
    if disk == "stuck":
        assert later == []
    conn = connect(data / METADATA_DB)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


def test_flush_and_close_do_not_wait_out_the_linger(data: Path) -> None:
    store, writer = standalone(data, linger=30.0)
    started = time.monotonic()
    writer.put(binding())
    writer.flush()
    assert on_disk(data) == [binding()]
    writer.put(binding(cseq=2))
    writer.close()
    assert on_disk(data) == [binding(cseq=2)]
    assert time.monotonic() - started < 5
    store.close()
