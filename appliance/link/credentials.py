"""Where the box keeps its link credential: ``local.db`` (never replicated), one row per
cabinet URL (table ``link_credentials``, see appliance/store/SCHEMA.md), with an in-memory
twin for tests. The credential never appears in a repr, a log line or an API answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from appliance.store.database import Database

__all__ = ["CredentialStore", "LinkCredential", "MemoryCredentials", "SqliteCredentials"]


@dataclass(frozen=True, slots=True)
class LinkCredential:
    cabinet_url: str
    box_id: str
    credential: str = field(repr=False)
    paired_at: float


class CredentialStore(Protocol):
    def load(self, cabinet_url: str) -> LinkCredential | None: ...

    def save(self, credential: LinkCredential) -> None: ...

    def forget(self, cabinet_url: str) -> bool: ...


class MemoryCredentials:
    def __init__(self) -> None:
        self._rows: dict[str, LinkCredential] = {}

    def load(self, cabinet_url: str) -> LinkCredential | None:
        return self._rows.get(cabinet_url)

    def save(self, credential: LinkCredential) -> None:
        self._rows[credential.cabinet_url] = credential

    def forget(self, cabinet_url: str) -> bool:
        return self._rows.pop(cabinet_url, None) is not None


class SqliteCredentials:
    """Over the box's ``local.db`` (``SqliteStore.local``)."""

    def __init__(self, local: Database) -> None:
        self._db = local

    def load(self, cabinet_url: str) -> LinkCredential | None:
        row = self._db.one(
            "SELECT cabinet_url, box_id, credential, paired_at FROM link_credentials"
            " WHERE cabinet_url = ?",
            (cabinet_url,),
        )
        return None if row is None else LinkCredential(*row)

    def save(self, credential: LinkCredential) -> None:
        self._db.execute(
            "INSERT INTO link_credentials (cabinet_url, box_id, credential, paired_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (cabinet_url) DO UPDATE SET"
            " box_id = excluded.box_id, credential = excluded.credential,"
            " paired_at = excluded.paired_at",
            (
                credential.cabinet_url,
                credential.box_id,
                credential.credential,
                credential.paired_at,
            ),
        )

    def forget(self, cabinet_url: str) -> bool:
        return (
            self._db.execute("DELETE FROM link_credentials WHERE cabinet_url = ?", (cabinet_url,))
            > 0
        )
