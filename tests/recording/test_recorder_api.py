"""The management API serves the recorder's real recordings (through the API's age folder
library): listed, played with HTTP Range across a chunk boundary, downloaded, deleted
(shredded, and the recorder's catalog row and call record marked), each audited once; the
recorder's alarms show on the system page."""

from __future__ import annotations

import time
from pathlib import Path

from support.api import make_box
from support.recording_box import finished_recording

from appliance.api.accounts import Role
from appliance.api.age_library import AgeFolderLibrary
from appliance.recordings import open_recordings
from appliance.recordings_api import CatalogedLibrary, RecordingAlarms
from appliance.store import open_store
from pbx.recording.age import AgeReader, X25519Identity
from pbx.recording.catalog import RecordingState


def test_the_api_plays_ranges_downloads_and_deletes_real_recordings(tmp_path: Path) -> None:
    site = X25519Identity.generate()
    data = tmp_path / "data"
    setup = open_store(data)
    recordings = open_recordings(setup, data, journal_dir=None)
    old = finished_recording(recordings, site.recipient(), started_at=time.time() - 60)
    rec = finished_recording(recordings, site.recipient(), started_at=time.time(), seconds=3.0)
    setup.close()

    box = make_box(tmp_path, recordings=None)
    recordings = open_recordings(box.store, data, journal_dir=None)
    library = AgeFolderLibrary(recordings.folder, box.store.metadata, lambda: [site])
    box.ctx.recordings = CatalogedLibrary(library, recordings)
    box.ctx.alarm_sources = [RecordingAlarms(recordings.alarms)]
    box.account("super", Role.SUPERVISOR)
    box.account("admin", Role.ADMIN)
    h = box.login("super")
    with AgeReader.open(recordings.path(rec), [site]) as reader:
        wav = reader.read()
    assert len(wav) == 44 + 3 * 8000 * 4

    page = box.lan.get("/recordings", headers=h).json()
    assert [r["id"] for r in page["items"]] == [rec.id, old.id] and page["total"] == 2
    meta = box.lan.get(f"/recordings/{rec.id}", headers=h).json()
    assert meta["size"] == len(wav) and meta["call_id"] == rec.call_id
    whole = box.lan.get(f"/recordings/{rec.id}/audio", headers=h)
    assert whole.status_code == 200 and whole.content == wav
    # A range across the first chunk boundary (64 KiB of plaintext).
    r = box.lan.get(f"/recordings/{rec.id}/audio", headers={**h, "Range": "bytes=65500-65600"})
    assert r.status_code == 206 and r.content == wav[65500:65601]
    down = box.lan.get(f"/recordings/{rec.id}/download", headers=h)
    assert down.content == wav and "attachment" in down.headers["Content-Disposition"]
    assert len(box.audit("recording.played")) == 2 and len(box.audit("recording.exported")) == 1

    admin = box.login("admin")
    assert box.lan.delete(f"/recordings/{old.id}", headers=admin).status_code == 204
    assert not recordings.path(old).exists()
    row = recordings.catalog.get(old.id)
    assert row is not None and row.state is RecordingState.DELETED
    record = box.store.cdr.get(old.call_id)
    assert record is not None and record.recording_state == "deleted"
    assert recordings.verify().ok
    assert len(box.audit("recording.deleted")) == 1  # the API's event, not a second one
    assert box.lan.get(f"/recordings/{old.id}", headers=h).status_code == 404

    recordings.alarms.raise_alarm("recorder", "recording.disk-full", "the disk is full", 5.0)
    alarms = box.lan.get("/system/alarms", headers=h).json()
    assert [(a["code"], a["severity"]) for a in alarms] == [("recording.disk-full", "critical")]
