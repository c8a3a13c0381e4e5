"""The recorder's side of the management API: :class:`CatalogedLibrary` keeps the recorder's
catalog (the ``recordings`` table) in step when the API deletes a recording, and
:class:`RecordingAlarms` shows the recorder's alarms (disk full, no key, ...) on the
system page. Serving audio is :class:`appliance.api.age_library.AgeFolderLibrary`'s."""

from __future__ import annotations

from collections.abc import Iterator

from appliance.alarms import Alarm, Severity
from appliance.api.recordings import (
    RecordingInfo,
    RecordingLibrary,
    RecordingPage,
    RecordingQuery,
)
from pbx.recording.catalog import AlarmLog, RecordingState
from pbx.recording.service import Recordings

__all__ = ["CatalogedLibrary", "RecordingAlarms"]


class CatalogedLibrary:
    """A :class:`RecordingLibrary` that also marks the recorder's catalog row (and the call
    record) deleted when the API deletes a recording. The API audits the deletion itself."""

    def __init__(self, library: RecordingLibrary, recordings: Recordings) -> None:
        self.library = library
        self.recordings = recordings

    def list(self, query: RecordingQuery, limit: int, offset: int) -> RecordingPage:
        return self.library.list(query, limit, offset)

    def get(self, recording_id: str) -> RecordingInfo | None:
        return self.library.get(recording_id)

    def open_range(self, recording_id: str, start: int, end: int) -> Iterator[bytes]:
        return self.library.open_range(recording_id, start, end)

    def delete(self, recording_id: str) -> bool:
        row = self.recordings.catalog.get(recording_id)
        if row is not None and row.state is not RecordingState.DELETED:
            # Shreds the key stanzas, unlinks, marks the row and the call record.
            self.recordings.delete(row, reason="admin", actor="api", origin="lan", audit=False)
            return True
        return self.library.delete(recording_id)


class RecordingAlarms:
    """The recorder's active alarms for the API's system page."""

    def __init__(self, log: AlarmLog) -> None:
        self.log = log

    def alarms(self) -> list[Alarm]:
        return [
            Alarm(
                code=a.code,
                source=a.source,
                severity=Severity.WARNING
                if a.code == "recording.recovery-failed"
                else Severity.CRITICAL,
                message=a.message,
                since=a.raised_at,
            )
            for a in self.log.active()
        ]
