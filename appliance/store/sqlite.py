"""The SQLite implementation of :mod:`pbx.store`: two files, one boundary.

* ``metadata.db`` (replicated by Litestream): extensions without secrets, bindings, call
  records, and the tables later parts of the box add.
* ``local.db`` (never leaves the box, mode 0600): extension HA1 digests; later admin
  credentials and keys.

The directory spans both files. SQLite cannot commit two WAL files atomically, so every
directory write holds the metadata write lock while it touches local.db, and the writes are
ordered so that a crash in between fails safe: at worst an extension is left without a
password (it cannot register until one is set again), or a secret is left without an
extension (never used: :meth:`SqliteDirectory.ha1` asks for the extension first, creating an
extension clears any leftover secret, and :func:`~appliance.store.store.open_store` removes
them).
"""

from __future__ import annotations

import builtins
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from appliance.store.database import Database
from pbx.store import (
    AlreadyExists,
    Binding,
    CallRecord,
    CdrQuery,
    Clock,
    Direction,
    Disposition,
    Extension,
    ExtensionSecret,
    HangupSide,
    InvalidValue,
    MediaStats,
    NotFound,
    RecordPolicy,
    check_page,
    make_secret,
)

__all__ = [
    "SqliteBindingStore",
    "SqliteCdr",
    "SqliteDirectory",
]


def _integrity(exc: sqlite3.IntegrityError, what: str) -> Exception:
    if "FOREIGN KEY" in str(exc):
        return NotFound(what)
    return InvalidValue(f"{what}: {exc}")


# ------------------------------------------------------------------------------ directory

_EXTENSION = (
    "number, display_name, enabled, call_limit, ring_timeout, record_calls, created_at, updated_at"
)
_SECRET = "number, realm, ha1_md5, ha1_sha256"


def _extension(row: Any) -> Extension:
    return Extension(
        number=row[0],
        display_name=row[1],
        enabled=bool(row[2]),
        call_limit=row[3],
        ring_timeout=row[4],
        record_calls=RecordPolicy(row[5]),
        created_at=row[6],
        updated_at=row[7],
    )


class SqliteDirectory:
    """:class:`pbx.store.Directory` over metadata.db (extensions) and local.db (secrets).

    Reads come from an in-memory copy of both tables (an office has hundreds of extensions,
    and every REGISTER and INVITE asks for an HA1: reading it from SQLite cost about 30 µs a
    request). The copy is loaded on the first read and kept up to date by every write made
    through this object (patched inside the write's transaction, dropped if the write
    fails), so the management API must write through the same store object as the SIP core
    (it does: one process owns the store); a write by another process is seen only after
    :meth:`invalidate`. A lookup of an unknown number adds nothing to the copy.
    """

    def __init__(self, metadata: Database, local: Database, clock: Clock = time.time) -> None:
        self._metadata = metadata
        self._local = local
        self._clock = clock
        # number -> (extension, its secret); None until loaded or after a write.
        self._cache: dict[str, tuple[Extension, ExtensionSecret | None]] | None = None

    def invalidate(self) -> None:
        """Forget the in-memory copy; the next read loads both tables again."""
        self._cache = None

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """A metadata transaction; if it fails (rolled back, or the commit failed), the copy
        is dropped, since the block may have patched it already."""
        try:
            with self._metadata.transaction() as conn:
                yield conn
        except BaseException:
            self._cache = None
            raise

    def _patch(
        self, number: str, extension: Extension | None, secret: ExtensionSecret | None
    ) -> None:
        """Change the copy (if loaded) the way the write in progress changes the tables;
        called inside the write's transaction, whose lock the loader takes too."""
        cache = self._cache
        if cache is None:
            return
        if extension is None:
            cache.pop(number, None)
        else:
            cache[number] = (extension, secret)

    def _cached_secret(self, number: str) -> ExtensionSecret | None:
        entry = None if self._cache is None else self._cache.get(number)
        return None if entry is None else entry[1]

    def _entries(self) -> dict[str, tuple[Extension, ExtensionSecret | None]]:
        entries = self._cache
        if entries is None:
            # Loaded and stored under the metadata lock, which every write holds until its
            # commit: a write patches either this copy or the tables before it is read.
            with self._metadata.lock:
                rows = self._metadata.query(f"SELECT {_EXTENSION} FROM extensions")
                secrets = {
                    row[0]: ExtensionSecret(*row)
                    for row in self._local.query(f"SELECT {_SECRET} FROM extension_secrets")
                }
                entries = {row[0]: (_extension(row), secrets.get(row[0])) for row in rows}
                self._cache = entries
        return entries

    def get(self, number: str) -> Extension | None:
        entry = self._entries().get(number)
        return None if entry is None else entry[0]

    def list(self) -> builtins.list[Extension]:
        # Numbers are digits only: shorter first, then text order, is numeric order.
        rows = self._metadata.query(
            f"SELECT {_EXTENSION} FROM extensions ORDER BY length(number), number"
        )
        return [_extension(row) for row in rows]

    def create(self, extension: Extension) -> Extension:
        now = self._clock()
        e = replace(extension, created_at=now, updated_at=now)
        with self._writing() as conn:
            try:
                conn.execute(
                    f"INSERT INTO extensions ({_EXTENSION}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        e.number,
                        e.display_name,
                        int(e.enabled),
                        e.call_limit,
                        e.ring_timeout,
                        e.record_calls.value,
                        e.created_at,
                        e.updated_at,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise AlreadyExists(e.number) from exc
            # A secret left by a crash during an earlier delete must not become this one's.
            self._local.execute("DELETE FROM extension_secrets WHERE number = ?", (e.number,))
            self._patch(e.number, e, None)
        return e

    def update(self, extension: Extension) -> Extension:
        e = replace(extension, updated_at=self._clock())
        with self._writing() as conn:
            rows = conn.execute(
                "UPDATE extensions SET display_name = ?, enabled = ?, call_limit = ?,"
                " ring_timeout = ?, record_calls = ?, updated_at = ? WHERE number = ?"
                " RETURNING created_at",
                (
                    e.display_name,
                    int(e.enabled),
                    e.call_limit,
                    e.ring_timeout,
                    e.record_calls.value,
                    e.updated_at,
                    e.number,
                ),
            ).fetchall()
            if not rows:
                raise NotFound(e.number)
            e = replace(e, created_at=rows[0][0])
            self._patch(e.number, e, self._cached_secret(e.number))
        return e

    def delete(self, number: str) -> bool:
        # The secret goes first, inside the metadata transaction: if the metadata commit
        # then fails, the extension stays without a password, which fails safe.
        with self._writing() as conn:
            self._local.execute("DELETE FROM extension_secrets WHERE number = ?", (number,))
            gone: int = conn.execute("DELETE FROM extensions WHERE number = ?", (number,)).rowcount
            self._patch(number, None, None)
        return gone > 0

    def set_password(self, number: str, password: str, realm: str) -> None:
        s = make_secret(number, password, realm)
        # The metadata write lock holds off a concurrent delete of this extension.
        with self._writing() as conn:
            if (
                conn.execute("SELECT 1 FROM extensions WHERE number = ?", (number,)).fetchone()
                is None
            ):
                raise NotFound(number)
            self._local.execute(
                f"INSERT INTO extension_secrets ({_SECRET}, updated_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (number) DO UPDATE SET realm = excluded.realm,"
                " ha1_md5 = excluded.ha1_md5, ha1_sha256 = excluded.ha1_sha256,"
                " updated_at = excluded.updated_at",
                (s.number, s.realm, s.ha1_md5, s.ha1_sha256, self._clock()),
            )
            entry = None if self._cache is None else self._cache.get(number)
            if entry is not None:
                self._patch(number, entry[0], s)
            else:
                self._cache = None  # the copy lacks an extension the table has

    def secret(self, number: str) -> ExtensionSecret | None:
        entry = self._entries().get(number)
        return None if entry is None else entry[1]

    def ha1(self, number: str, algorithm: str) -> str | None:
        entry = self._entries().get(number)
        if entry is None or not entry[0].enabled or entry[1] is None:
            return None
        return entry[1].ha1(algorithm)

    def remove_orphan_secrets(self) -> int:
        """Delete secrets whose extension is gone (left by a crash); returns how many."""
        with self._writing() as conn:
            numbers = {row[0] for row in conn.execute("SELECT number FROM extensions")}
            orphans = [
                n
                for (n,) in self._local.query("SELECT number FROM extension_secrets")
                if n not in numbers
            ]
            for number in orphans:
                self._local.execute("DELETE FROM extension_secrets WHERE number = ?", (number,))
            self._cache = None  # rare (after a crash): load again
        return len(orphans)


# ------------------------------------------------------------------------------ bindings

_BINDING = (
    "aor, contact, expires_at, call_id, cseq, source_transport, source_host, source_port, "
    "updated_at, q, user_agent, instance_id, reg_id, path"
)
_PUT_BINDING = (
    f"INSERT INTO bindings ({_BINDING}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (aor, contact) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _BINDING.replace(" ", "").split(",")[2:])
)


def _binding(row: Any) -> Binding:
    return Binding(
        aor=row[0],
        contact=row[1],
        expires_at=row[2],
        call_id=row[3],
        cseq=row[4],
        source_transport=row[5],
        source_host=row[6],
        source_port=row[7],
        updated_at=row[8],
        q=row[9],
        user_agent=row[10],
        instance_id=row[11],
        reg_id=row[12],
        path=tuple(json.loads(row[13])),
    )


def _by_key(bindings: list[Binding]) -> list[Binding]:
    bindings.sort(key=lambda b: (b.aor, b.contact))
    return bindings


class SqliteBindingStore:
    """:class:`pbx.store.BindingStore` over metadata.db; an AOR must be an extension."""

    def __init__(self, metadata: Database) -> None:
        self._metadata = metadata

    def put(self, b: Binding) -> None:
        path = json.dumps(list(b.path)) if b.path else "[]"
        try:
            self._metadata.execute(
                _PUT_BINDING,
                (
                    b.aor,
                    b.contact,
                    b.expires_at,
                    b.call_id,
                    b.cseq,
                    b.source_transport,
                    b.source_host,
                    b.source_port,
                    b.updated_at,
                    b.q,
                    b.user_agent,
                    b.instance_id,
                    b.reg_id,
                    path,
                ),
            )
        except sqlite3.IntegrityError as exc:
            raise _integrity(exc, b.aor) from exc

    def remove(self, aor: str, contact: str) -> bool:
        sql = "DELETE FROM bindings WHERE aor = ? AND contact = ?"
        return self._metadata.execute(sql, (aor, contact)) > 0

    def remove_all(self, aor: str) -> int:
        return self._metadata.execute("DELETE FROM bindings WHERE aor = ?", (aor,))

    def list(self, aor: str, now: float | None = None) -> builtins.list[Binding]:
        sql = f"SELECT {_BINDING} FROM bindings WHERE aor = ? AND expires_at > ? ORDER BY contact"
        rows = self._metadata.query(sql, (aor, float("-inf") if now is None else now))
        return [_binding(row) for row in rows]

    def all_active(self, now: float) -> builtins.list[Binding]:
        sql = f"SELECT {_BINDING} FROM bindings WHERE expires_at > ? ORDER BY aor, contact"
        return [_binding(row) for row in self._metadata.query(sql, (now,))]

    def expire(self, now: float) -> builtins.list[Binding]:
        sql = f"DELETE FROM bindings WHERE expires_at <= ? RETURNING {_BINDING}"
        return _by_key([_binding(row) for row in self._metadata.query(sql, (now,))])


# ------------------------------------------------------------------------------ call records

_CDR_COLUMNS = (
    "call_id, sip_call_id, caller_number, dialed, direction, start_time, end_time, "
    "disposition, hangup_side, caller_name, callee_number, answer_time, hangup_cause, "
    "sip_code, codec, caller_packets, caller_bytes, caller_lost, caller_jitter_ms, "
    "callee_packets, callee_bytes, callee_lost, callee_jitter_ms, recording_ref, "
    "recording_state"
)
_CDR_NAMES = _CDR_COLUMNS.replace(" ", "").split(",")
_WRITE_CDR = (
    f"INSERT INTO call_records ({_CDR_COLUMNS}) VALUES ({', '.join('?' * len(_CDR_NAMES))})"
    " ON CONFLICT (call_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _CDR_NAMES[1:])
)


def _cdr_row(r: CallRecord) -> tuple[Any, ...]:
    a, b = r.media_from_caller, r.media_from_callee
    return (
        *(r.call_id, r.sip_call_id, r.caller_number, r.dialed, r.direction.value),
        *(r.start_time, r.end_time, r.disposition.value, r.hangup_side.value, r.caller_name),
        *(r.callee_number, r.answer_time, r.hangup_cause, r.sip_code, r.codec),
        *(a.packets, a.bytes, a.lost, a.jitter_ms, b.packets, b.bytes, b.lost, b.jitter_ms),
        *(r.recording_ref, r.recording_state),
    )


def _call_record(row: Any) -> CallRecord:
    return CallRecord(
        call_id=row[0],
        sip_call_id=row[1],
        caller_number=row[2],
        dialed=row[3],
        direction=Direction(row[4]),
        start_time=row[5],
        end_time=row[6],
        disposition=Disposition(row[7]),
        hangup_side=HangupSide(row[8]),
        caller_name=row[9],
        callee_number=row[10],
        answer_time=row[11],
        hangup_cause=row[12],
        sip_code=row[13],
        codec=row[14],
        media_from_caller=MediaStats(*row[15:19]),
        media_from_callee=MediaStats(*row[19:23]),
        recording_ref=row[23],
        recording_state=row[24],
    )


class SqliteCdr:
    """:class:`pbx.store.CdrSink` over metadata.db."""

    def __init__(self, metadata: Database) -> None:
        self._metadata = metadata

    def write(self, record: CallRecord) -> None:
        try:
            self._metadata.execute(_WRITE_CDR, _cdr_row(record))
        except sqlite3.IntegrityError as exc:
            raise _integrity(exc, record.call_id) from exc

    def write_many(self, records: Iterable[CallRecord]) -> None:
        """Write several records in one transaction (one commit, shared WAL pages)."""
        try:
            with self._metadata.transaction() as conn:
                conn.executemany(_WRITE_CDR, [_cdr_row(r) for r in records])
        except sqlite3.IntegrityError as exc:
            raise InvalidValue(str(exc)) from exc

    def get(self, call_id: str) -> CallRecord | None:
        sql = f"SELECT {_CDR_COLUMNS} FROM call_records WHERE call_id = ?"
        row = self._metadata.one(sql, (call_id,))
        return None if row is None else _call_record(row)

    def search(
        self, query: CdrQuery | None = None, limit: int = 100, offset: int = 0
    ) -> list[CallRecord]:
        check_page(limit, offset)
        where, params = _where(query or CdrQuery())
        sql = (
            f"SELECT {_CDR_COLUMNS} FROM call_records{where}"
            " ORDER BY start_time DESC, call_id DESC LIMIT ? OFFSET ?"
        )
        rows = self._metadata.query(sql, [*params, limit, offset])
        return [_call_record(row) for row in rows]


def _where(q: CdrQuery) -> tuple[str, list[Any]]:
    terms: list[str] = []
    params: list[Any] = []
    if q.since is not None:
        terms.append("start_time >= ?")
        params.append(q.since)
    if q.until is not None:
        terms.append("start_time < ?")
        params.append(q.until)
    if q.number is not None:
        # Three ORed equalities (not IN (...)) so SQLite can use one index per column.
        terms.append("(caller_number = ? OR dialed = ? OR callee_number = ?)")
        params += [q.number] * 3
    if q.disposition is not None:
        terms.append("disposition = ?")
        params.append(q.disposition.value)
    return (" WHERE " + " AND ".join(terms) if terms else ""), params
