"""What the metadata database knows about recordings, and the box's alarms.

A recording's row holds its id, call, file path (relative to the recordings folder), times,
duration, ciphertext size and SHA-256, the fingerprints of the recipients it was encrypted to,
its state and a note on codecs. Never audio, never keys: the row is replicated to the cloud.

This module holds the values, the interfaces and the in-memory twins; the SQLite versions are
:mod:`appliance.store.recordings`. ``tests/recording/test_recorder_catalog.py`` runs one
contract test against both.
"""

from __future__ import annotations

import builtins
import enum
import re
from dataclasses import dataclass, replace
from typing import Protocol

from pbx.store import InvalidValue

__all__ = [
    "Alarm",
    "AlarmLog",
    "MemoryAlarmLog",
    "MemoryRecordingCatalog",
    "RecordingCatalog",
    "RecordingInfo",
    "RecordingState",
]


class RecordingState(enum.Enum):
    RECORDING = "recording"  # being written (or the box stopped before it was finalized)
    COMPLETE = "complete"  # finalized at the end of the call
    INCOMPLETE = "incomplete"  # finalized after a crash or a full disk: holds what was saved
    FAILED = "failed"  # no usable file (no key, could not create it)
    DELETED = "deleted"  # removed by retention: key stanzas shredded, file unlinked


_PATH = re.compile(r"[0-9]{4}/[0-9]{2}/[0-9a-f]{32}\.wav\.age")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class RecordingInfo:
    id: str
    call_id: str
    path: str  # relative to the recordings folder: yyyy/mm/<id>.wav.age
    started_at: float
    state: RecordingState = RecordingState.RECORDING
    caller_number: str = ""
    callee_number: str = ""
    ended_at: float | None = None
    duration: float = 0.0  # seconds of audio in the file
    size: int = 0  # ciphertext bytes
    sha256: str | None = None  # of the ciphertext, once finalized
    recipients: tuple[str, ...] = ()  # fingerprints of the recipients (sha256:...)
    codec_note: str = ""
    deleted_at: float | None = None

    def __post_init__(self) -> None:
        if not self.id or not self.call_id:
            raise InvalidValue("recording id and call_id must not be empty")
        if not _PATH.fullmatch(self.path) or ".." in self.path:
            raise InvalidValue(f"recording path must look like yyyy/mm/<id>.wav.age: {self.path!r}")
        if self.sha256 is not None and not _SHA256.fullmatch(self.sha256):
            raise InvalidValue("sha256 must be 64 lower-case hex digits")
        if self.duration < 0 or self.size < 0:
            raise InvalidValue("duration and size must not be negative")
        if self.ended_at is not None and self.ended_at < self.started_at:
            raise InvalidValue("ended_at before started_at")


class RecordingCatalog(Protocol):
    def put(self, info: RecordingInfo) -> None:
        """Insert or replace the row with ``info.id``."""
        ...

    def get(self, recording_id: str) -> RecordingInfo | None: ...

    def by_path(self, path: str) -> RecordingInfo | None: ...

    def list(
        self,
        *,
        state: RecordingState | None = None,
        call_id: str | None = None,
        limit: int = 1000,
    ) -> builtins.list[RecordingInfo]:
        """Rows, oldest first (started_at, then id)."""
        ...


class MemoryRecordingCatalog:
    def __init__(self) -> None:
        self._rows: dict[str, RecordingInfo] = {}

    def put(self, info: RecordingInfo) -> None:
        clash = self.by_path(info.path)
        if clash is not None and clash.id != info.id:
            raise InvalidValue(f"path {info.path} belongs to recording {clash.id}")
        self._rows[info.id] = info

    def get(self, recording_id: str) -> RecordingInfo | None:
        return self._rows.get(recording_id)

    def by_path(self, path: str) -> RecordingInfo | None:
        return next((r for r in self._rows.values() if r.path == path), None)

    def list(
        self,
        *,
        state: RecordingState | None = None,
        call_id: str | None = None,
        limit: int = 1000,
    ) -> builtins.list[RecordingInfo]:
        rows = [
            r
            for r in self._rows.values()
            if (state is None or r.state is state) and (call_id is None or r.call_id == call_id)
        ]
        rows.sort(key=lambda r: (r.started_at, r.id))
        return rows[:limit]


# ------------------------------------------------------------------------------ alarms


@dataclass(frozen=True, slots=True)
class Alarm:
    """Something an admin must act on (e.g. ``recording.disk-full``); ``cleared_at`` is set
    once it is dealt with."""

    id: int
    raised_at: float
    source: str  # the part of the box: "recorder"
    code: str  # dotted, stable, e.g. "recording.disk-full"
    message: str = ""
    cleared_at: float | None = None


class AlarmLog(Protocol):
    def raise_alarm(self, source: str, code: str, message: str, now: float) -> Alarm: ...

    def active(self) -> builtins.list[Alarm]:
        """Alarms not cleared, oldest first."""
        ...

    def clear(self, alarm_id: int, now: float) -> bool: ...


class MemoryAlarmLog:
    def __init__(self) -> None:
        self._alarms: list[Alarm] = []

    def raise_alarm(self, source: str, code: str, message: str, now: float) -> Alarm:
        if not source or not code:
            raise InvalidValue("alarm source and code must not be empty")
        alarm = Alarm(len(self._alarms) + 1, now, source, code, message)
        self._alarms.append(alarm)
        return alarm

    def active(self) -> builtins.list[Alarm]:
        return [a for a in self._alarms if a.cleared_at is None]

    def clear(self, alarm_id: int, now: float) -> bool:
        for n, alarm in enumerate(self._alarms):
            if alarm.id == alarm_id and alarm.cleared_at is None:
                self._alarms[n] = replace(alarm, cleared_at=now)
                return True
        return False
