"""Recordings and alarms in ``metadata.db`` (migration 3): :mod:`pbx.recording.catalog` over
SQLite. Metadata only: the audio and the keys never enter this file."""

from __future__ import annotations

import builtins
import json
import sqlite3
from typing import Any

from appliance.store.database import Database
from pbx.recording.catalog import Alarm, RecordingInfo, RecordingState
from pbx.store import InvalidValue

__all__ = ["SqliteAlarmLog", "SqliteRecordingCatalog"]

_COLUMNS = (
    "id, call_id, path, started_at, state, caller_number, callee_number, ended_at, duration, "
    "size, sha256, recipients, codec_note, deleted_at"
)

# An upsert on the id, not INSERT OR REPLACE: a clash on the unique path must fail, not
# silently delete the other recording's row.
_UPSERT = (
    f"INSERT INTO recordings ({_COLUMNS}) VALUES ({', '.join('?' * 14)}) ON CONFLICT (id) DO "
    "UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS.replace(" ", "").split(",")[1:])
)


def _row(info: RecordingInfo) -> tuple[object, ...]:
    return (
        info.id,
        info.call_id,
        info.path,
        info.started_at,
        info.state.value,
        info.caller_number,
        info.callee_number,
        info.ended_at,
        info.duration,
        info.size,
        info.sha256,
        json.dumps(list(info.recipients)),
        info.codec_note,
        info.deleted_at,
    )


def _info(row: Any) -> RecordingInfo:
    values = list(row)
    values[4] = RecordingState(values[4])
    values[11] = tuple(json.loads(values[11]))
    return RecordingInfo(*values)


class SqliteRecordingCatalog:
    """:class:`pbx.recording.catalog.RecordingCatalog` over the ``recordings`` table."""

    def __init__(self, metadata: Database) -> None:
        self._db = metadata

    def put(self, info: RecordingInfo) -> None:
        try:
            self._db.execute(_UPSERT, _row(info))
        except sqlite3.IntegrityError as exc:
            raise InvalidValue(f"recording {info.id}: {exc}") from exc

    def get(self, recording_id: str) -> RecordingInfo | None:
        row = self._db.one(f"SELECT {_COLUMNS} FROM recordings WHERE id = ?", (recording_id,))
        return None if row is None else _info(row)

    def by_path(self, path: str) -> RecordingInfo | None:
        row = self._db.one(f"SELECT {_COLUMNS} FROM recordings WHERE path = ?", (path,))
        return None if row is None else _info(row)

    def list(
        self,
        *,
        state: RecordingState | None = None,
        call_id: str | None = None,
        limit: int = 1000,
    ) -> builtins.list[RecordingInfo]:
        where, params = [], []
        if state is not None:
            where.append("state = ?")
            params.append(state.value)
        if call_id is not None:
            where.append("call_id = ?")
            params.append(call_id)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        sql = f"SELECT {_COLUMNS} FROM recordings{clause} ORDER BY started_at, id LIMIT ?"
        return [_info(r) for r in self._db.query(sql, [*params, limit])]


class SqliteAlarmLog:
    """:class:`pbx.recording.catalog.AlarmLog` over the ``alarms`` table."""

    def __init__(self, metadata: Database) -> None:
        self._db = metadata

    def raise_alarm(self, source: str, code: str, message: str, now: float) -> Alarm:
        if not source or not code:
            raise InvalidValue("alarm source and code must not be empty")
        with self._db.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO alarms (raised_at, source, code, message) VALUES (?, ?, ?, ?)",
                (now, source, code, message),
            )
            alarm_id = cursor.lastrowid
        assert alarm_id is not None
        return Alarm(alarm_id, now, source, code, message)

    def active(self) -> builtins.list[Alarm]:
        rows = self._db.query(
            "SELECT id, raised_at, source, code, message, cleared_at FROM alarms"
            " WHERE cleared_at IS NULL ORDER BY id"
        )
        return [Alarm(*row) for row in rows]

    def clear(self, alarm_id: int, now: float) -> bool:
        changed = self._db.execute(
            "UPDATE alarms SET cleared_at = ? WHERE id = ? AND cleared_at IS NULL", (now, alarm_id)
        )
        return changed > 0
