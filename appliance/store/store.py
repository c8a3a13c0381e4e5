"""Opening the box's store: both files, the three stores, and the choice of inline or
write-behind call records."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from appliance.store.database import Database, open_database
from appliance.store.schema import LOCAL, METADATA
from appliance.store.sqlite import SqliteBindingStore, SqliteCdr, SqliteDirectory
from appliance.store.writer import WriteBehindCdr
from pbx.store import Clock

__all__ = ["LOCAL_DB", "METADATA_DB", "SqliteStore", "open_store"]

METADATA_DB = "metadata.db"
LOCAL_DB = "local.db"


@dataclass(eq=False)
class SqliteStore:
    """:class:`pbx.store.Store` over the two files. ``metadata``/``local`` are the open
    databases, for the parts of the box that add their own tables."""

    metadata: Database
    local: Database
    directory: SqliteDirectory
    bindings: SqliteBindingStore
    cdr: SqliteCdr | WriteBehindCdr

    def close(self) -> None:
        if isinstance(self.cdr, WriteBehindCdr):
            self.cdr.close()  # commits what is still queued
        self.metadata.close()
        self.local.close()


def open_store(
    data_dir: Path, *, clock: Clock = time.time, write_behind: bool = False
) -> SqliteStore:
    """Open (creating and migrating as needed) ``metadata.db`` and ``local.db`` in
    ``data_dir``. Raises :class:`~appliance.store.database.SchemaTooNew` for files written
    by a newer edgepbx.

    ``write_behind``: call records are queued and committed in batches by a thread on its
    own connection (see :mod:`appliance.store.writer` for the measurements); what the SIP
    core's loop should use. ``close()`` then commits what is queued.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    opened: list[Database] = []
    try:
        metadata = open_database(data_dir / METADATA_DB, METADATA)
        opened.append(metadata)
        local = open_database(data_dir / LOCAL_DB, LOCAL, private=True)
        opened.append(local)
        directory = SqliteDirectory(metadata, local, clock)
        directory.remove_orphan_secrets()
        cdr: SqliteCdr | WriteBehindCdr = SqliteCdr(metadata)
        if write_behind:
            writer = open_database(data_dir / METADATA_DB, METADATA)
            opened.append(writer)
            cdr = WriteBehindCdr(writer)
    except BaseException:
        for db in opened:
            db.close()
        raise
    return SqliteStore(metadata, local, directory, SqliteBindingStore(metadata), cdr)
