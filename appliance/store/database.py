"""One SQLite database file: how every connection is opened, and versioned migrations.

Connection settings (the same on every connection, because Litestream replicates the file
while the box writes it):

* ``journal_mode=WAL``: Litestream reads the WAL; readers never block the writer.
* ``busy_timeout=5000``: Litestream takes locks briefly; with 0 a few % of writes fail with
  "database is locked", with 5 s they wait instead.
* ``synchronous=NORMAL``: in WAL mode a commit is durable once checkpointed and never corrupts;
  a power cut may lose the last transactions, which Litestream would not have shipped anyway.
* ``foreign_keys=ON``: off by default in SQLite, per connection.

No code here checkpoints: Litestream owns checkpointing, and an application
``wal_checkpoint(TRUNCATE)`` fails while it runs.

Connections are opened in autocommit mode (``isolation_level=None``): a single statement
commits by itself, and multi-statement writes say ``BEGIN IMMEDIATE`` explicitly, so the
write lock is taken up front (a deferred read that later writes cannot wait for the lock).

Migrations: a :class:`Schema` is an ordered tuple of SQL scripts; version N is the N-th
script. Opening applies the missing ones in one transaction, records each in
``schema_version`` and updates the one-row ``schema_info`` (the contract readers check).
A file from a newer version of the box is refused with :class:`SchemaTooNew`.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pbx.store import StoreError

__all__ = [
    "BUSY_TIMEOUT_MS",
    "Database",
    "Migration",
    "MigrationFailed",
    "Schema",
    "SchemaError",
    "SchemaTooNew",
    "StorageFailure",
    "WrongDatabase",
    "connect",
    "migrate",
    "open_database",
    "schema_version",
]

BUSY_TIMEOUT_MS = 5000

Params = Sequence[Any]


# ------------------------------------------------------------------------------ errors


class StorageFailure(StoreError):
    """SQLite failed (locked past the busy timeout, disk full, I/O error, corrupt file)."""


class SchemaError(StoreError):
    """The file's schema is not one this code can use."""


class SchemaTooNew(SchemaError):
    def __init__(self, path: Path, found: int, supported: int) -> None:
        super().__init__(
            f"{path} has schema version {found}, but this edgepbx knows versions up to "
            f"{supported}: it was written by a newer edgepbx. Upgrade edgepbx, or restore a "
            "backup made by this version."
        )
        self.path, self.found, self.supported = path, found, supported


class WrongDatabase(SchemaError):
    """The file is another schema's database (e.g. local.db opened as metadata.db)."""


class MigrationFailed(SchemaError):
    """A migration script failed; the file was left at its previous version."""


# ------------------------------------------------------------------------------ schemas


@dataclass(frozen=True, slots=True)
class Migration:
    description: str
    script: str


@dataclass(frozen=True, slots=True)
class Schema:
    """A database's name (``schema_info.name``), what it holds, and its migrations."""

    name: str
    description: str
    migrations: tuple[Migration, ...]

    @property
    def version(self) -> int:
        return len(self.migrations)


_BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS schema_version (
    version     INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at  REAL NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS schema_info (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    description TEXT NOT NULL,
    updated_at  REAL NOT NULL
) STRICT;
"""


# ------------------------------------------------------------------------------ connections


def connect(path: Path, *, check_same_thread: bool = True) -> sqlite3.Connection:
    """Open ``path`` with the box's settings (see the module docstring)."""
    conn = sqlite3.connect(
        path,
        isolation_level=None,
        check_same_thread=check_same_thread,
        timeout=BUSY_TIMEOUT_MS / 1000,
    )
    try:
        # busy_timeout first: switching to WAL needs a lock another process may hold.
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise StorageFailure(f"{path}: cannot use WAL (journal_mode is {mode})")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.Error as exc:
        conn.close()
        raise StorageFailure(f"{path}: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _statements(script: str) -> Iterator[str]:
    """Split a script into statements (semicolons inside strings or triggers stay put)."""
    buffer = ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \t\r\n;"):
                yield buffer
            buffer = ""
    if buffer.strip(" \t\r\n;"):
        raise MigrationFailed(f"incomplete SQL statement: {buffer.strip()[:80]!r}")


def schema_version(conn: sqlite3.Connection) -> int:
    """The highest applied migration; 0 for a new file."""
    row = conn.execute(
        "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if row is None:
        return 0
    version: int = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[
        0
    ]
    return version


def migrate(conn: sqlite3.Connection, schema: Schema, path: Path, now: float) -> int:
    """Bring the file to ``schema.version`` in one transaction; returns the version found."""
    conn.execute("BEGIN IMMEDIATE")  # re-read under the lock: another process may migrate
    try:
        for statement in _statements(_BOOTSTRAP):
            conn.execute(statement)
        info = conn.execute("SELECT name FROM schema_info WHERE id = 1").fetchone()
        if info is not None and info[0] != schema.name:
            raise WrongDatabase(f"{path} is the {info[0]!r} database, not {schema.name!r}")
        found = schema_version(conn)
        if found > schema.version:
            raise SchemaTooNew(path, found, schema.version)
        for version in range(found + 1, schema.version + 1):
            migration = schema.migrations[version - 1]
            try:
                for statement in _statements(migration.script):
                    conn.execute(statement)
            except sqlite3.Error as exc:
                raise MigrationFailed(
                    f"{path}: migration {version} ({migration.description}) failed: {exc}"
                ) from exc
            conn.execute(
                "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                (version, migration.description, now),
            )
        if found < schema.version or info is None:
            # A table rebuild inside a migration must not leave dangling references.
            if conn.execute("PRAGMA foreign_key_check").fetchone() is not None:
                raise MigrationFailed(f"{path}: foreign key violations after migrating")
            conn.execute(
                "INSERT INTO schema_info (id, name, version, description, updated_at)"
                " VALUES (1, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
                " name = excluded.name, version = excluded.version,"
                " description = excluded.description, updated_at = excluded.updated_at",
                (schema.name, schema.version, schema.description, now),
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # SQLite may have rolled back already (e.g. disk full)
            conn.execute("ROLLBACK")
        raise
    return found


# ------------------------------------------------------------------------------ Database


class Database:
    """One open, migrated database file: a connection, a lock, and small query helpers
    that turn SQLite failures into :class:`StorageFailure`.

    The lock makes a store usable from more than one thread (the core's loop and a
    write-behind thread); SQLite itself serializes writers across processes.
    ``IntegrityError`` passes through untouched: callers turn it into domain errors.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, schema: Schema) -> None:
        self.connection = conn
        self.path = path
        self.schema = schema
        self.lock = threading.RLock()

    def query(self, sql: str, params: Params = ()) -> list[Any]:
        with self.lock, self._errors():
            return self.connection.execute(sql, params).fetchall()

    def one(self, sql: str, params: Params = ()) -> Any:
        with self.lock, self._errors():
            return self.connection.execute(sql, params).fetchone()

    def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement (it commits by itself); returns the number of rows changed."""
        with self.lock, self._errors():
            return self.connection.execute(sql, params).rowcount

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; rolled back if the block raises."""
        with self.lock, self._errors():
            self.connection.execute("BEGIN IMMEDIATE")
            try:
                yield self.connection
            except BaseException:
                if self.connection.in_transaction:
                    self.connection.execute("ROLLBACK")
                raise
            self.connection.execute("COMMIT")

    def close(self) -> None:
        with self.lock:
            self.connection.close()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as exc:
            raise StorageFailure(f"{self.path}: {exc}") from exc


def open_database(
    path: Path, schema: Schema, *, private: bool = False, now: float | None = None
) -> Database:
    """Open (creating if needed) and migrate a database file.

    ``private``: the file is readable by its owner only (secrets live there), also when it
    was restored or copied with a wider mode; SQLite gives new -wal and -shm files the
    database file's mode.
    """
    if private:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            if name.exists():
                name.chmod(0o600)
    conn = connect(path, check_same_thread=False)
    try:
        migrate(conn, schema, path, time.time() if now is None else now)
    except sqlite3.Error as exc:
        conn.close()
        raise StorageFailure(f"{path}: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return Database(conn, path, schema)
