"""The box's SQLite storage: ``metadata.db`` (replicated) and ``local.db`` (secrets, never
replicated). :func:`open_store` is the entry point; the tables are documented in SCHEMA.md."""

from appliance.store.database import (
    MigrationFailed,
    SchemaError,
    SchemaTooNew,
    StorageFailure,
    WrongDatabase,
)
from appliance.store.store import LOCAL_DB, METADATA_DB, SqliteStore, open_store
from appliance.store.writer import WriteBehindCdr

__all__ = [
    "LOCAL_DB",
    "METADATA_DB",
    "MigrationFailed",
    "SchemaError",
    "SchemaTooNew",
    "SqliteStore",
    "StorageFailure",
    "WriteBehindCdr",
    "WrongDatabase",
    "open_store",
]
