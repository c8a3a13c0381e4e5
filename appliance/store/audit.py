"""The audit log in ``metadata.db`` (replicated: the cabinet shows it), anchored in
``local.db`` (never replicated): see :mod:`pbx.audit` for the chain.

Appending reads the head and inserts the next event in one ``BEGIN IMMEDIATE`` transaction,
so appenders in several threads or processes (the SIP core, the API) extend one chain. The
anchor is written after the commit, only forwards; a crash between the two leaves the anchor
one event behind, which :func:`pbx.audit.check_chain` accepts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

from appliance.store.database import Database
from pbx.audit import AuditEvent, ChainReport, Origin, check_chain, new_event
from pbx.store import Clock, check_page

__all__ = ["SqliteAuditLog"]

_COLUMNS = "seq, time, actor, origin, action, target, detail, prev_hash, hash"


def _event(row: Any) -> AuditEvent:
    seq, when, actor, origin, action, target, detail, prev_hash, digest = row
    detail = json.loads(detail)
    return AuditEvent(seq, when, actor, origin, action, target, detail, prev_hash, digest)


class SqliteAuditLog:
    """:class:`pbx.audit.AuditLog` over the box's two databases."""

    def __init__(self, metadata: Database, local: Database, clock: Clock = time.time) -> None:
        self._metadata = metadata
        self._local = local
        self._clock = clock

    def append(
        self,
        action: str,
        *,
        actor: str,
        origin: Origin,
        target: str = "",
        detail: Mapping[str, object] | None = None,
    ) -> AuditEvent:
        with self._metadata.transaction() as conn:
            row = conn.execute("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
            head = row.fetchone()
            head = None if head is None else (head[0], head[1])
            e = new_event(head, self._clock(), action, actor, origin, target, detail)
            conn.execute(
                f"INSERT INTO audit_events ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (e.seq, e.time, e.actor, e.origin, e.action, e.target,
                 json.dumps(e.detail, sort_keys=True), e.prev_hash, e.hash),
            )  # fmt: skip
        self._local.execute(
            "INSERT INTO audit_anchor (id, seq, hash) VALUES (1, ?, ?) ON CONFLICT (id) DO "
            "UPDATE SET seq = excluded.seq, hash = excluded.hash WHERE excluded.seq > seq",
            (e.seq, e.hash),
        )
        return e

    def events(
        self,
        *,
        after: int = 0,
        limit: int = 100,
        action: str | None = None,
        target: str | None = None,
    ) -> list[AuditEvent]:
        check_page(limit, 0)
        where: list[str] = ["seq > ?"]
        params: list[object] = [after]
        if action is not None:
            # A prefix match that LIKE's wildcards in the prefix cannot widen.
            where.append("substr(action, 1, ?) = ?")
            params += [len(action), action]
        if target is not None:
            where.append("target = ?")
            params.append(target)
        where_sql = " AND ".join(where)
        sql = f"SELECT {_COLUMNS} FROM audit_events WHERE {where_sql} ORDER BY seq LIMIT ?"
        return [_event(r) for r in self._metadata.query(sql, [*params, limit])]

    def anchor(self) -> tuple[int, str] | None:
        row = self._local.one("SELECT seq, hash FROM audit_anchor WHERE id = 1")
        return None if row is None else (row[0], row[1])

    def verify(self) -> ChainReport:
        return check_chain(self._all(), self.anchor())

    def _all(self) -> Iterator[AuditEvent]:
        after = 0
        while page := self.events(after=after, limit=1000):
            yield from page
            after = page[-1].seq
