"""A :class:`~appliance.api.recordings.RecordingLibrary` over the box's encrypted recording
files: ``<folder>/**/<id>.wav.age`` (the recorder's layout), decrypted on the fly with
:class:`pbx.recording.age.AgeReader`, so a Range request decrypts only the 64 KiB chunks it
covers and plaintext never touches the disk.

Which recordings exist is what the folder holds; the call each belongs to comes from the call
records that name it (``call_records.recording_ref``). Sizes are read from the age header and
the file length, without the key. Serving audio needs the site identity: ``identities``
returns the unlocked identities, or nothing while the identity is locked (then 503).

Deleting destroys the file's key stanzas before unlinking (:func:`pbx.recording.age.shred`),
so blocks that linger on the disk cannot be decrypted, and marks the call record.

The recorder's own catalog (a ``recordings`` table) can replace the folder walk later: the
API sees only the protocol.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from appliance.api.recordings import (
    RecordingInfo,
    RecordingPage,
    RecordingQuery,
    RecordingUnavailable,
)
from appliance.store.database import Database
from pbx.recording.age import (
    ENC_CHUNK_SIZE,
    NONCE_SIZE,
    TAG_SIZE,
    AgeError,
    AgeReader,
    Identity,
    NoIdentityError,
    read_header,
    shred,
)
from pbx.store import NotFound, check_page

__all__ = ["AgeFolderLibrary"]

SUFFIX = ".wav.age"
_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
# The recorder writes stereo 16-bit PCM at 8 kHz after a 44-byte WAV header.
_WAV_HEADER, _BYTES_PER_SECOND = 44, 8000 * 2 * 2


def plaintext_size(path: Path) -> int:
    """The plaintext length of an age file, from its header and length (no key needed)."""
    with open(path, "rb") as f:
        header = read_header(f)
        payload = os.fstat(f.fileno()).st_size - len(header.raw) - NONCE_SIZE
    chunks = max(1, -(-payload // ENC_CHUNK_SIZE))
    return max(0, payload - chunks * TAG_SIZE)


class AgeFolderLibrary:
    def __init__(
        self,
        folder: Path,
        metadata: Database,
        identities: Callable[[], Sequence[Identity]],
    ) -> None:
        self.folder = folder
        self._metadata = metadata
        self._identities = identities

    # ------------------------------------------------------------------ reading

    def _files(self) -> dict[str, Path]:
        if not self.folder.is_dir():
            return {}
        found: dict[str, Path] = {}
        for path in self.folder.rglob(f"*{SUFFIX}"):
            rid = path.name.removesuffix(SUFFIX)
            if _ID.fullmatch(rid) and path.is_file():
                found[rid] = path
        return found

    def _path(self, recording_id: str) -> Path | None:
        if not _ID.fullmatch(recording_id):
            return None
        return self._files().get(recording_id)

    def _calls(self, ids: Sequence[str]) -> dict[str, tuple[str, float, float]]:
        """recording id -> (call id, start time, talk seconds) from the call records."""
        out: dict[str, tuple[str, float, float]] = {}
        for start in range(0, len(ids), 500):
            part = list(ids[start : start + 500])
            marks = ",".join("?" * len(part))
            rows = self._metadata.query(
                "SELECT recording_ref, call_id, start_time, billable FROM call_records"
                f" WHERE recording_ref IN ({marks})",
                part,
            )
            out.update({r[0]: (r[1], r[2], r[3]) for r in rows})
        return out

    def _info(self, rid: str, path: Path, call: tuple[str, float, float] | None) -> RecordingInfo:
        try:
            size = plaintext_size(path)
        except (AgeError, OSError):
            size = 0  # damaged: listed (so it can be deleted), not servable
        if call is None:
            started, call_id = path.stat().st_mtime, None
            duration = max(0, size - _WAV_HEADER) / _BYTES_PER_SECOND
        else:
            call_id, started, duration = call
        return RecordingInfo(rid, call_id, started, duration, size, "audio/wav")

    def list(self, query: RecordingQuery, limit: int, offset: int) -> RecordingPage:
        check_page(limit, offset)
        files = self._files()
        calls = self._calls(sorted(files))
        infos = [self._info(rid, path, calls.get(rid)) for rid, path in files.items()]
        found = [
            i
            for i in infos
            if (query.call_id is None or i.call_id == query.call_id)
            and (query.since is None or i.started_at >= query.since)
            and (query.until is None or i.started_at < query.until)
        ]
        found.sort(key=lambda i: (i.started_at, i.id), reverse=True)
        return RecordingPage(found[offset : offset + limit], len(found))

    def get(self, recording_id: str) -> RecordingInfo | None:
        path = self._path(recording_id)
        if path is None:
            return None
        return self._info(recording_id, path, self._calls([recording_id]).get(recording_id))

    def open_range(self, recording_id: str, start: int, end: int) -> Iterator[bytes]:
        path = self._path(recording_id)
        if path is None:
            raise NotFound(recording_id)
        identities = self._identities()
        if not identities:
            raise RecordingUnavailable(
                "recordings are locked: unlock the site identity on the box's console first"
            )
        try:
            reader = AgeReader.open(path, identities)
        except NoIdentityError:
            raise RecordingUnavailable(
                "this recording was encrypted to a key the box does not hold"
            ) from None
        except AgeError as exc:
            raise RecordingUnavailable(f"the recording file is damaged: {exc}", 500) from None
        return _pieces(reader, start, end)

    # ------------------------------------------------------------------ deleting

    def delete(self, recording_id: str) -> bool:
        path = self._path(recording_id)
        if path is None:
            return False
        gone = shred(path)
        self._metadata.execute(
            "UPDATE call_records SET recording_state = 'deleted' WHERE recording_ref = ?",
            (recording_id,),
        )
        return gone


def _pieces(reader: AgeReader, start: int, end: int) -> Iterator[bytes]:
    with reader:
        yield from reader.iter_range(start, end)
