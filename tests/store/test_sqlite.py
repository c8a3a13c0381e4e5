"""What only the SQLite store has: the boundary between the two files, connection settings,
migrations, and behaviour next to other connections (Litestream, a second process)."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.store import (
    LOCAL_DB,
    METADATA_DB,
    MigrationFailed,
    SchemaTooNew,
    SqliteStore,
    StorageFailure,
    WriteBehindCdr,
    WrongDatabase,
    open_store,
)
from appliance.store.database import (
    Migration,
    Schema,
    _statements,
    connect,
    open_database,
    schema_version,
)
from appliance.store.schema import LOCAL, METADATA
from pbx.sip.auth import ha1
from pbx.store import AlreadyExists, CallRecord, Direction, Disposition, Extension, HangupSide

NOW = 1_700_000_000.0
PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def store(data: Path) -> Iterator[SqliteStore]:
    s = open_store(data)
    yield s
    s.close()


def record(call_id: str, start: float = NOW) -> CallRecord:
    return CallRecord(
        call_id=call_id,
        sip_call_id=f"{call_id}@192.0.2.10",
        caller_number="101",
        dialed="102",
        callee_number="102",
        direction=Direction.INTERNAL,
        start_time=start,
        answer_time=start + 2,
        end_time=start + 62,
        disposition=Disposition.ANSWERED,
        hangup_side=HangupSide.CALLEE,
    )


def file_bytes(path: Path) -> bytes:
    """The database file and its WAL and shared-memory files: everything on disk."""
    return b"".join(
        p.read_bytes() for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()
    )


# ------------------------------------------------------------------------------ the boundary


def test_secrets_never_reach_metadata_db(data: Path, store: SqliteStore) -> None:
    store.directory.create(Extension("101", "Alice"))
    store.directory.set_password("101", PASSWORD, "pbx.example")
    store.directory.set_password("101", PASSWORD + "2", "pbx.example")  # and an old one
    secrets = [
        ha1("101", "pbx.example", p, a)
        for p in (PASSWORD, PASSWORD + "2")
        for a in ("MD5", "SHA-256")
    ]
    needles = [s.encode() for s in secrets] + [PASSWORD.encode()]
    store.close()
    metadata = file_bytes(data / METADATA_DB)
    local = file_bytes(data / LOCAL_DB)
    assert b"Alice" in metadata  # the search does find what is there
    assert secrets[2].encode() in local  # the current HA1 lives in local.db
    for needle in needles:
        assert needle not in metadata
    assert PASSWORD.encode() not in local
    # The same after SQLite has moved the WAL into the main files.
    for name in (METADATA_DB, LOCAL_DB):
        conn = sqlite3.connect(data / name)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
    for needle in needles:
        assert needle not in file_bytes(data / METADATA_DB)


def test_local_db_is_private(data: Path, store: SqliteStore) -> None:
    store.directory.create(Extension("101"))
    store.directory.set_password("101", PASSWORD, "pbx.example")
    assert stat.S_IMODE((data / LOCAL_DB).stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(f"{data / LOCAL_DB}-wal").stat().st_mode) == 0o600


def test_local_db_mode_is_restored_on_open(data: Path, store: SqliteStore) -> None:
    store.close()
    (data / LOCAL_DB).chmod(0o644)
    open_store(data).close()
    assert stat.S_IMODE((data / LOCAL_DB).stat().st_mode) == 0o600


def test_orphan_secrets_are_removed_on_open(data: Path, store: SqliteStore) -> None:
    # As if the box crashed between the two files: a secret whose extension is gone.
    store.directory.create(Extension("101"))
    store.directory.set_password("101", PASSWORD, "pbx.example")
    store.metadata.execute("DELETE FROM extensions WHERE number = '101'")
    store.close()
    reopened = open_store(data)
    assert reopened.directory.secret("101") is None
    reopened.close()


def test_directory_reads_from_memory_and_sees_its_own_writes(store: SqliteStore) -> None:
    d = store.directory
    d.create(Extension("101"))
    d.set_password("101", PASSWORD, "pbx.example")
    md5 = ha1("101", "pbx.example", PASSWORD, "MD5")
    assert d.ha1("101", "MD5") == md5  # loads the copy
    # A change behind the store's back is not seen until invalidate(): reads are from memory.
    sql = "UPDATE extension_secrets SET ha1_md5 = ? WHERE number = '101'"
    store.local.execute(sql, ("0" * 32,))
    assert d.ha1("101", "MD5") == md5
    d.invalidate()
    assert d.ha1("101", "MD5") == "0" * 32
    # Every write through the directory drops the copy.
    d.set_password("101", "another password", "pbx.example")
    assert d.ha1("101", "MD5") == ha1("101", "pbx.example", "another password", "MD5")
    d.update(Extension("101", enabled=False))
    assert d.ha1("101", "MD5") is None
    d.update(Extension("101", display_name="Reception"))
    assert d.get("101") is not None and d.get("101").display_name == "Reception"  # type: ignore[union-attr]
    d.create(Extension("102"))
    assert d.get("102") is not None and d.secret("102") is None
    assert d.delete("101") and d.get("101") is None and d.ha1("101", "MD5") is None
    assert d.get("999") is None


def test_failed_directory_write_leaves_no_stale_copy(store: SqliteStore) -> None:
    d = store.directory
    d.create(Extension("101"))
    assert d.get("101") is not None
    with pytest.raises(AlreadyExists):
        d.create(Extension("101"))  # AlreadyExists, rolled back
    assert d.get("101") is not None and d.secret("101") is None


def test_call_record_columns_for_the_cloud(store: SqliteStore) -> None:
    r = record("c1")
    store.cdr.write(r)
    row = store.metadata.one(
        "SELECT duration, billable, disposition, direction FROM call_records WHERE call_id = 'c1'"
    )
    assert tuple(row) == (r.duration, r.billable, "ANSWERED", "internal")


# ------------------------------------------------------------------------------ connections


def pragmas(conn: sqlite3.Connection) -> tuple[str, int, int, int]:
    return (
        conn.execute("PRAGMA journal_mode").fetchone()[0],
        conn.execute("PRAGMA busy_timeout").fetchone()[0],
        conn.execute("PRAGMA synchronous").fetchone()[0],
        conn.execute("PRAGMA foreign_keys").fetchone()[0],
    )


EXPECTED = ("wal", 5000, 1, 1)  # synchronous 1 is NORMAL


def test_every_connection_has_the_settings(data: Path, store: SqliteStore) -> None:
    assert pragmas(store.metadata.connection) == EXPECTED
    assert pragmas(store.local.connection) == EXPECTED
    second = open_store(data)
    assert pragmas(second.metadata.connection) == EXPECTED
    assert pragmas(second.local.connection) == EXPECTED
    second.close()
    raw = connect(data / METADATA_DB)
    assert pragmas(raw) == EXPECTED
    raw.close()


def test_a_second_writer_waits_instead_of_failing(data: Path, store: SqliteStore) -> None:
    """Another connection (Litestream, the API process) holds the write lock for a while:
    the store's write waits for it (busy_timeout) and succeeds."""
    holding = threading.Event()

    def hold_write_lock() -> None:
        other = connect(data / METADATA_DB)
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO extensions VALUES ('999', '', 1, 2, 30, 'none', 0, 0)")
        holding.set()
        time.sleep(0.3)
        other.execute("COMMIT")
        other.close()

    thread = threading.Thread(target=hold_write_lock)
    thread.start()
    assert holding.wait(5)
    started = time.monotonic()
    store.cdr.write(record("c1"))
    store.directory.create(Extension("101"))
    waited = time.monotonic() - started
    thread.join()
    assert waited >= 0.2
    assert store.cdr.get("c1") is not None
    assert [e.number for e in store.directory.list()] == ["101", "999"]


SECOND_PROCESS = """
import sys
from pathlib import Path
from appliance.store import open_store
from pbx.store import AlreadyExists, CallRecord, Direction, Disposition, Extension, HangupSide

store = open_store(Path(sys.argv[1]))
print("ready", flush=True)
for i in range(300):
    store.cdr.write(CallRecord(
        call_id=f"p{i}", sip_call_id="x", caller_number="101", dialed="102",
        direction=Direction.INTERNAL, start_time=i, end_time=i, disposition=Disposition.BUSY,
        hangup_side=HangupSide.CALLEE,
    ))
    if i % 50 == 0:
        store.directory.create(Extension(f"9{i}"))
store.close()
"""


def test_two_processes_writing_at_once(data: Path, store: SqliteStore) -> None:
    """Another process (the API, later) writes the same files while this one does:
    nobody sees "database is locked"."""
    other = subprocess.Popen(
        [sys.executable, "-c", SECOND_PROCESS, str(data)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert other.stdout is not None
    assert other.stdout.readline() == "ready\n"
    for i in range(300):
        store.cdr.write(record(f"a{i}", NOW + i))
        if i % 50 == 0:
            store.directory.create(Extension(f"8{i}"))
    assert other.wait(60) == 0
    assert store.metadata.one("SELECT count(*) FROM call_records")[0] == 600
    assert len(store.directory.list()) == 12


def test_one_store_from_two_threads(store: SqliteStore) -> None:
    errors: list[BaseException] = []

    def write(prefix: str) -> None:
        try:
            for i in range(200):
                store.cdr.write(record(f"{prefix}{i}"))
                store.directory.create(Extension(f"{len(prefix)}{i}"))
                store.directory.set_password(f"{len(prefix)}{i}", "pw", "pbx.example")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(p,)) for p in ("a", "bb")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.directory.list()) == 400


# ------------------------------------------------------------------------------ migrations

V1 = Migration("notes", "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL) STRICT;")
V2 = Migration(
    "notes.author; a trigger",
    """
    ALTER TABLE notes ADD COLUMN author TEXT NOT NULL DEFAULT 'unknown';
    CREATE TABLE note_log (text TEXT) STRICT;
    -- a semicolon in a comment; and in a string, and inside a trigger body:
    CREATE TRIGGER notes_log AFTER INSERT ON notes BEGIN
        INSERT INTO note_log VALUES ('a;b');
    END;
    """,
)


def schema(*migrations: Migration) -> Schema:
    return Schema("test", "a test database", migrations)


def test_new_file_gets_every_migration(data: Path, store: SqliteStore) -> None:
    for db, expected in ((store.metadata, METADATA), (store.local, LOCAL)):
        assert schema_version(db.connection) == expected.version
        assert db.query("SELECT name, version, description FROM schema_info") == [
            (expected.name, expected.version, expected.description)
        ]
        versions = db.query("SELECT version, description FROM schema_version ORDER BY version")
        assert versions == [(i + 1, m.description) for i, m in enumerate(expected.migrations)]


@pytest.mark.parametrize("applied", range(METADATA.version + 1))
def test_open_store_upgrades_an_old_metadata_db(data: Path, applied: int) -> None:
    """A metadata.db left at any earlier version (0 = an empty file) is brought up to date."""
    data.mkdir()
    old = open_database(
        data / METADATA_DB, Schema("metadata", "old", METADATA.migrations[:applied])
    )
    old.close()
    store = open_store(data)
    assert schema_version(store.metadata.connection) == METADATA.version
    store.directory.create(Extension("101"))
    store.close()


def test_upgrade_keeps_data_and_records_history(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    db = open_database(path, schema(V1), now=1.0)
    db.execute("INSERT INTO notes (text) VALUES ('kept')")
    db.close()
    db = open_database(path, schema(V1, V2), now=2.0)
    db.execute("INSERT INTO notes (text, author) VALUES ('new', 'me')")
    assert db.query("SELECT text, author FROM notes ORDER BY id") == [
        ("kept", "unknown"),
        ("new", "me"),
    ]
    assert db.query("SELECT text FROM note_log") == [("a;b",)]
    assert db.query("SELECT * FROM schema_version") == [(1, "notes", 1.0), (2, V2.description, 2.0)]
    assert db.query("SELECT version, updated_at FROM schema_info") == [(2, 2.0)]
    db.close()


def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    open_database(path, schema(V1, V2)).close()
    with pytest.raises(SchemaTooNew) as caught:
        open_database(path, schema(V1))
    assert (caught.value.found, caught.value.supported) == (2, 1)
    assert "newer edgepbx" in str(caught.value)
    assert str(path) in str(caught.value)
    # Refusing did not touch it.
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT max(version) FROM schema_version").fetchone() == (2,)
    raw.close()


def test_open_store_refuses_a_newer_metadata_db(data: Path) -> None:
    data.mkdir()
    newer = Schema("metadata", "from the future", (*METADATA.migrations, V1))
    open_database(data / METADATA_DB, newer).close()
    with pytest.raises(SchemaTooNew, match="newer edgepbx"):
        open_store(data)


def test_the_wrong_file_is_refused(data: Path, store: SqliteStore) -> None:
    store.close()
    (data / "swap").mkdir()
    (data / LOCAL_DB).rename(data / "swap" / METADATA_DB)
    (data / METADATA_DB).rename(data / "swap" / LOCAL_DB)
    with pytest.raises(WrongDatabase, match="'local' database, not 'metadata'"):
        open_store(data / "swap")


def test_a_failing_migration_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    open_database(path, schema(V1)).close()
    broken = Migration("broken", "CREATE TABLE good (x INTEGER); INSERT INTO missing VALUES (1);")
    with pytest.raises(MigrationFailed, match="migration 2 \\(broken\\)"):
        open_database(path, schema(V1, broken))
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT max(version) FROM schema_version").fetchone() == (1,)
    assert raw.execute("SELECT name FROM sqlite_schema WHERE name = 'good'").fetchone() is None
    raw.close()


def test_statement_splitter() -> None:
    script = "CREATE TABLE a (x TEXT DEFAULT ';'); -- c;\nCREATE TABLE b (y);\n\n"
    assert [s.strip() for s in _statements(script)] == [
        "CREATE TABLE a (x TEXT DEFAULT ';');",
        "-- c;\nCREATE TABLE b (y);",
    ]
    with pytest.raises(MigrationFailed, match="incomplete"):
        list(_statements("INSERT INTO a VALUES ('unterminated"))


# ------------------------------------------------------------------------------ write-behind


class WriteLock:
    """Another connection holding metadata.db's write lock until released."""

    def __init__(self, path: Path) -> None:
        self.conn = connect(path, check_same_thread=False)
        self.conn.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.conn.execute("COMMIT")
        self.conn.close()


def test_queued_writes_do_not_wait_for_the_lock(data: Path) -> None:
    store = open_store(data, write_behind=True)
    lock = WriteLock(data / METADATA_DB)
    started = time.monotonic()
    for i in range(100):
        store.cdr.write(record(f"c{i}", NOW + i))
    assert time.monotonic() - started < 0.1  # no commit waited for the lock
    assert store.cdr.get("c42") == record("c42", NOW + 42)  # read from the queue
    threading.Timer(0.2, lock.release).start()
    assert len(store.cdr.search(limit=1000)) == 100  # search waits for the queue
    store.close()


def test_close_commits_the_queue(data: Path) -> None:
    store = open_store(data, write_behind=True)
    records = [record(f"c{i}", NOW + i) for i in range(1000)]
    for r in records:
        store.cdr.write(r)
    store.close()
    reopened = open_store(data)
    assert reopened.cdr.search(limit=1000) == records[::-1]
    reopened.close()


def test_queued_writer_retries_after_storage_failures(data: Path) -> None:
    open_store(data).close()
    db = open_database(data / METADATA_DB, METADATA)
    db.connection.execute("PRAGMA busy_timeout = 20")  # give up on the lock quickly
    writer = WriteBehindCdr(db, retry_delay=0.02)
    lock = WriteLock(data / METADATA_DB)
    writer.write(record("c1"))
    time.sleep(0.2)  # several failed attempts
    lock.release()
    writer.flush()
    assert writer.get("c1") == record("c1")
    writer.close()
    with pytest.raises(StorageFailure, match="closed"):
        writer.write(record("c2"))


def test_a_full_queue_refuses_instead_of_blocking(data: Path) -> None:
    open_store(data).close()
    writer = WriteBehindCdr(open_database(data / METADATA_DB, METADATA), max_queue=3)
    lock = WriteLock(data / METADATA_DB)
    accepted = 0
    with pytest.raises(StorageFailure, match="queue full"):
        for i in range(10):
            writer.write(record(f"c{i}"))
            accepted += 1
    assert 3 <= accepted <= 4  # the thread may hold one record in its batch
    lock.release()
    writer.flush()
    assert len(writer.search()) == accepted
    writer.close()
