"""What the API needs from the recordings store, and HTTP Range parsing.

:class:`RecordingLibrary` is the seam to the recorder's code (``pbx/recording``): it lists
recordings (metadata only), serves byte ranges of a recording's playable audio, and deletes.
Whether the bytes come from decrypting an age file on the fly is the library's business; the
API never sees keys. :class:`MemoryRecordingLibrary` is the in-memory twin for tests.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from pbx.store import NotFound, check_page

__all__ = [
    "MemoryRecordingLibrary",
    "RangeError",
    "RecordingInfo",
    "RecordingLibrary",
    "RecordingPage",
    "RecordingQuery",
    "RecordingUnavailable",
    "parse_range",
]


@dataclass(frozen=True, slots=True)
class RecordingInfo:
    """A recording's metadata. ``size`` is the length of the playable audio served by
    :meth:`RecordingLibrary.open_range` (in ``content_type``), not of the encrypted file."""

    id: str
    call_id: str | None
    started_at: float
    duration: float
    size: int
    content_type: str = "audio/wav"
    sha256: str | None = None  # of the encrypted file, as the metadata DB keeps it


@dataclass(frozen=True, slots=True)
class RecordingQuery:
    call_id: str | None = None
    since: float | None = None  # started_at >= since
    until: float | None = None  # started_at < until


@dataclass(frozen=True, slots=True)
class RecordingPage:
    items: list[RecordingInfo]
    total: int


class RecordingLibrary(Protocol):
    def list(self, query: RecordingQuery, limit: int, offset: int) -> RecordingPage:
        """Matching recordings, newest first, and how many match in all."""
        ...

    def get(self, recording_id: str) -> RecordingInfo | None: ...

    def open_range(self, recording_id: str, start: int, end: int) -> Iterator[bytes]:
        """The playable bytes ``[start, end)`` in chunks. Raises :class:`NotFound`."""
        ...

    def delete(self, recording_id: str) -> bool:
        """Remove the recording (file and metadata); False when already gone."""
        ...


@dataclass
class MemoryRecordingLibrary:
    """In-memory :class:`RecordingLibrary`: ``add`` stores audio bytes with their metadata."""

    chunk: int = 65536
    _items: dict[str, tuple[RecordingInfo, bytes]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(
        self, recording_id: str, audio: bytes, *, call_id: str | None = None, started_at: float = 0
    ) -> RecordingInfo:
        info = RecordingInfo(recording_id, call_id, started_at, len(audio) / 16000, len(audio))
        with self._lock:
            self._items[recording_id] = (info, audio)
        return info

    def list(self, query: RecordingQuery, limit: int, offset: int) -> RecordingPage:
        check_page(limit, offset)
        with self._lock:
            found = [
                info
                for info, _ in self._items.values()
                if (query.call_id is None or info.call_id == query.call_id)
                and (query.since is None or info.started_at >= query.since)
                and (query.until is None or info.started_at < query.until)
            ]
        found.sort(key=lambda i: (i.started_at, i.id), reverse=True)
        return RecordingPage(found[offset : offset + limit], len(found))

    def get(self, recording_id: str) -> RecordingInfo | None:
        with self._lock:
            item = self._items.get(recording_id)
        return None if item is None else item[0]

    def open_range(self, recording_id: str, start: int, end: int) -> Iterator[bytes]:
        with self._lock:
            item = self._items.get(recording_id)
        if item is None:
            raise NotFound(recording_id)
        audio = item[1]
        return (audio[i : min(i + self.chunk, end)] for i in range(start, end, self.chunk))

    def delete(self, recording_id: str) -> bool:
        with self._lock:
            return self._items.pop(recording_id, None) is not None


class RecordingUnavailable(Exception):
    """The recording exists but cannot be served now (e.g. the site identity is locked, or
    the file fails authentication). ``status`` is the HTTP answer."""

    def __init__(self, detail: str, status: int = 503) -> None:
        super().__init__(detail)
        self.detail, self.status = detail, status


class RangeError(ValueError):
    """A Range header that cannot be satisfied (HTTP 416)."""


_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``[start, end)`` of a single-range ``Range`` header (RFC 9110 §14.1.2), or None to
    send the whole representation. Several ranges are answered with the whole body (allowed:
    a server may ignore Range); unparsable headers too (§14.2). Raises :class:`RangeError`
    when the range lies outside the content."""
    if header is None:
        return None
    m = _RANGE.fullmatch(header.strip())
    if m is None or (not m.group(1) and not m.group(2)):
        return None
    first, last = m.group(1), m.group(2)
    if not first:  # suffix range: the last N bytes
        n = int(last)
        if n == 0:
            raise RangeError("empty suffix range")
        return max(0, size - n), size
    start = int(first)
    if start >= size:
        raise RangeError(f"range starts at {start}, the content has {size} bytes")
    end = size if not last else min(int(last) + 1, size)
    if end <= start:
        return None  # last < first: invalid, so ignored (§14.1.1)
    return start, end
