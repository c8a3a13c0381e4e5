"""Opening the box's store: both files, the three stores, and the choice of inline or
write-behind bindings and call records."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from appliance.store.audit import SqliteAuditLog
from appliance.store.database import Database, open_database
from appliance.store.schema import LOCAL, METADATA
from appliance.store.sqlite import SqliteBindingStore, SqliteCdr, SqliteDirectory
from appliance.store.writer import WriteBehindBindings, WriteBehindCdr
from pbx.store import Clock

__all__ = ["LOCAL_DB", "METADATA_DB", "SqliteStore", "open_store"]

METADATA_DB = "metadata.db"
LOCAL_DB = "local.db"


class _Directory(SqliteDirectory):
    """:class:`SqliteDirectory` that calls ``on_delete`` with a deleted extension's number:
    SQLite's foreign key cascade removes the binding rows, and this hook removes the
    write-behind bindings' in-memory copies (the twin of MemoryDirectory.on_delete)."""

    on_delete: Callable[[str], object] | None = None

    def delete(self, number: str) -> bool:
        gone = super().delete(number)
        if self.on_delete is not None:
            self.on_delete(number)  # also when already gone: clears what memory kept of it
        return gone


@dataclass(eq=False)
class SqliteStore:
    """:class:`pbx.store.Store` over the two files. ``metadata``/``local`` are the open
    databases, for the parts of the box that add their own tables; ``writer`` is the
    write-behind threads' connection to metadata.db, if any."""

    metadata: Database
    local: Database
    directory: SqliteDirectory
    bindings: SqliteBindingStore | WriteBehindBindings
    cdr: SqliteCdr | WriteBehindCdr
    audit: SqliteAuditLog
    writer: Database | None = None

    def close(self) -> None:
        # The writers first: each commits what is still queued on the shared connection.
        if isinstance(self.bindings, WriteBehindBindings):
            self.bindings.close()
        if isinstance(self.cdr, WriteBehindCdr):
            self.cdr.close()
        if self.writer is not None:
            self.writer.close()
        self.metadata.close()
        self.local.close()


def open_store(
    data_dir: Path, *, clock: Clock = time.time, write_behind: bool = False
) -> SqliteStore:
    """Open (creating and migrating as needed) ``metadata.db`` and ``local.db`` in
    ``data_dir``. Raises :class:`~appliance.store.database.SchemaTooNew` for files written
    by a newer edgepbx.

    ``write_behind``: what the SIP core's loop should use (see :mod:`appliance.store.writer`
    for the measurements). Call records are queued and bindings are read from memory and
    written behind, each by a thread committing batches; ``close()`` commits what is queued.

    Both threads share one connection of their own. SQLite admits one writer per file at a
    time, so a second connection would buy no parallelism: the threads would meet at the
    file lock, where the loser sleeps in SQLite's busy handler (steps of 1-100 ms); on one
    connection they meet at its Python lock, handed over the moment a commit ends.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    opened: list[Database] = []
    writers: list[WriteBehindCdr | WriteBehindBindings] = []
    try:
        metadata = open_database(data_dir / METADATA_DB, METADATA)
        opened.append(metadata)
        local = open_database(data_dir / LOCAL_DB, LOCAL, private=True)
        opened.append(local)
        directory = _Directory(metadata, local, clock)
        directory.remove_orphan_secrets()
        if not write_behind:
            bindings: SqliteBindingStore | WriteBehindBindings = SqliteBindingStore(metadata)
            audit = SqliteAuditLog(metadata, local, clock)
            return SqliteStore(metadata, local, directory, bindings, SqliteCdr(metadata), audit)
        writer = open_database(data_dir / METADATA_DB, METADATA)
        opened.append(writer)
        cdr = WriteBehindCdr(writer, close_database=False)
        writers.append(cdr)
        bindings = WriteBehindBindings(writer, directory, close_database=False)
        writers.append(bindings)
        directory.on_delete = bindings.remove_all
    except BaseException:
        for w in writers:
            w.close()
        for db in opened:
            db.close()
        raise
    audit = SqliteAuditLog(metadata, local, clock)
    return SqliteStore(metadata, local, directory, bindings, cdr, audit, writer)
