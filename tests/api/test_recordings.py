"""Recordings over the LAN: list, metadata, play with HTTP Range, download, delete; Range
parsing as a property."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from support.api import Box

from appliance.api.recordings import RangeError, parse_range

AUDIO = bytes(i % 251 for i in range(10_000))


def _add(box: Box) -> None:
    box.recordings.add("rec-a", AUDIO, call_id="call-1", started_at=100.0)
    box.recordings.add("rec-b", AUDIO[:500], call_id="call-2", started_at=200.0)


def test_list_and_metadata(box: Box) -> None:
    _add(box)
    h = box.login("super")
    page = box.lan.get("/recordings", headers=h).json()
    assert [r["id"] for r in page["items"]] == ["rec-b", "rec-a"] and page["total"] == 2
    assert box.lan.get("/recordings?call_id=call-1", headers=h).json()["total"] == 1
    assert box.lan.get("/recordings?since=150", headers=h).json()["items"][0]["id"] == "rec-b"
    assert (
        box.lan.get("/recordings?limit=1&offset=1", headers=h).json()["items"][0]["id"] == "rec-a"
    )
    meta = box.lan.get("/recordings/rec-a", headers=h).json()
    assert meta["size"] == len(AUDIO) and meta["call_id"] == "call-1"
    assert box.lan.get("/recordings/nope", headers=h).status_code == 404
    r = box.lan.get("/recordings/bad%20id", headers=h)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["path", "recording_id"]
    r = box.lan.get("/recordings?since=10&until=5", headers=h)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "until"]


def test_stream_whole_and_ranges(box: Box) -> None:
    _add(box)
    h = box.login("super")
    r = box.lan.get("/recordings/rec-a/audio", headers=h)
    assert r.status_code == 200 and r.content == AUDIO
    assert r.headers["Accept-Ranges"] == "bytes" and r.headers["Content-Type"] == "audio/wav"
    assert r.headers["Content-Length"] == str(len(AUDIO))
    cases = {
        "bytes=0-99": (0, 100),
        "bytes=1500-2600": (1500, 2601),  # across the 1000-byte chunks
        "bytes=9990-": (9990, 10000),
        "bytes=-10": (9990, 10000),
        "bytes=9000-20000": (9000, 10000),
    }
    for header, (start, end) in cases.items():
        r = box.lan.get("/recordings/rec-a/audio", headers={**h, "Range": header})
        assert r.status_code == 206, header
        assert r.content == AUDIO[start:end], header
        assert r.headers["Content-Range"] == f"bytes {start}-{end - 1}/{len(AUDIO)}"
    r = box.lan.get("/recordings/rec-a/audio", headers={**h, "Range": "bytes=10000-"})
    assert r.status_code == 416 and r.headers["Content-Range"] == f"bytes */{len(AUDIO)}"
    # Unparsable or multiple ranges: the whole recording.
    r = box.lan.get("/recordings/rec-a/audio", headers={**h, "Range": "bytes=0-1,5-6"})
    assert r.status_code == 200 and r.content == AUDIO
    played = box.audit("recording.played")
    assert len(played) == 1 + len(cases) + 1
    assert played[1].detail == {"call_id": "call-1", "bytes": "0-99"}


def test_download_is_an_attachment_and_audited(box: Box) -> None:
    _add(box)
    r = box.lan.get("/recordings/rec-b/download", headers=box.login("admin"))
    assert r.status_code == 200 and r.content == AUDIO[:500]
    assert r.headers["Content-Disposition"] == 'attachment; filename="rec-b.wav"'
    [event] = box.audit("recording.exported")
    assert (event.actor, event.origin, event.target) == ("admin", "lan", "rec-b")


def test_delete(box: Box) -> None:
    _add(box)
    h = box.login("admin")
    assert box.lan.delete("/recordings/rec-a", headers=h).status_code == 204
    assert box.recordings.get("rec-a") is None
    assert box.lan.get("/recordings/rec-a/audio", headers=h).status_code == 404
    assert box.lan.delete("/recordings/rec-a", headers=h).status_code == 204
    assert [e.detail["existed"] for e in box.audit("recording.deleted")] == [True, False]


@given(size=st.integers(1, 10**6), a=st.integers(0, 2 * 10**6), b=st.integers(0, 2 * 10**6))
def test_parse_range_property(size: int, a: int, b: int) -> None:
    for header in (f"bytes={a}-{b}", f"bytes={a}-", f"bytes=-{b}"):
        try:
            span = parse_range(header, size)
        except RangeError:
            assert (header.startswith(f"bytes={a}-") and a >= size) or header == "bytes=-0"
            continue
        if span is not None:
            start, end = span
            assert 0 <= start < end <= size


def test_parse_range_ignores_junk() -> None:
    for header in (None, "", "items=0-1", "bytes=", "bytes=-", "bytes=a-b", "bytes=5-2"):
        assert parse_range(header, 100) is None
