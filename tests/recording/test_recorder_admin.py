"""The recordings' metadata and the admin's operations: the catalog and alarm contract (SQLite
and the in-memory twin), retention with shredding, verification with tampering, and the
``edgepbx recordings`` commands (list, export with the stock age identity, verify, prune)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.agetool import age, keygen, needs_age
from support.recording_box import finished_recording, read_wav

from appliance.cli import main
from appliance.recordings import open_recordings, site_recipients, start_box_recording
from appliance.store import SqliteStore, open_store
from appliance.store.recordings import SqliteAlarmLog, SqliteRecordingCatalog
from pbx.recording.age import X25519Identity, X25519Recipient
from pbx.recording.catalog import (
    AlarmLog,
    MemoryAlarmLog,
    MemoryRecordingCatalog,
    RecordingCatalog,
    RecordingInfo,
    RecordingState,
)
from pbx.recording.keys import Keyring
from pbx.recording.service import Recordings, RecordingSettings
from pbx.store import InvalidValue

DAY = 86400.0


# ------------------------------------------------------------------ catalog contract


@pytest.fixture(params=["memory", "sqlite"])
def catalogs(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[RecordingCatalog, AlarmLog]]:
    if request.param == "memory":
        yield MemoryRecordingCatalog(), MemoryAlarmLog()
        return
    store = open_store(tmp_path)
    yield SqliteRecordingCatalog(store.metadata), SqliteAlarmLog(store.metadata)
    store.close()


def info(n: int, **changes: object) -> RecordingInfo:
    rid = f"{n:032x}"
    values: dict[str, object] = {
        "id": rid,
        "call_id": f"call-{n}",
        "path": f"2026/11/{rid}.wav.age",
        "started_at": 1000.0 + n,
    }
    values.update(changes)
    return RecordingInfo(**values)  # type: ignore[arg-type]


def test_catalog_contract(catalogs: tuple[RecordingCatalog, AlarmLog]) -> None:
    catalog, alarms = catalogs
    first = info(2, recipients=("sha256:" + "a" * 32,), codec_note="PCMU")
    catalog.put(first)
    catalog.put(info(1))
    assert catalog.get(first.id) == first and catalog.get("nope") is None
    assert catalog.by_path(first.path) == first
    finished = info(2, state=RecordingState.COMPLETE, size=10, sha256="b" * 64, ended_at=1010.0,
                    duration=3.5, recipients=first.recipients)  # fmt: skip
    catalog.put(finished)  # replaces
    assert catalog.get(first.id) == finished
    assert [r.id for r in catalog.list()] == [info(1).id, first.id]
    assert catalog.list(state=RecordingState.COMPLETE) == [finished]
    assert catalog.list(call_id="call-1") == [info(1)]
    with pytest.raises(InvalidValue):
        catalog.put(info(3, path=first.path))  # a path belongs to one recording
    with pytest.raises(InvalidValue, match="path"):
        info(4, path="../../etc/passwd")
    with pytest.raises(InvalidValue, match="sha256"):
        info(4, sha256="XYZ")
    a = alarms.raise_alarm("recorder", "recording.disk-full", "full", 5.0)
    b = alarms.raise_alarm("recorder", "recording.no-key", "no key", 6.0)
    assert [x.code for x in alarms.active()] == ["recording.disk-full", "recording.no-key"]
    assert alarms.clear(a.id, 7.0) and not alarms.clear(a.id, 8.0)
    assert alarms.active() == [b]


# ------------------------------------------------------------------ a box with recordings


@pytest.fixture
def site(tmp_path: Path) -> tuple[Path, X25519Recipient]:
    identity = tmp_path / "site.txt"
    return identity, X25519Recipient.from_string(keygen(identity))


@pytest.fixture
def box(tmp_path: Path) -> Iterator[tuple[SqliteStore, Recordings]]:
    data = tmp_path / "data"
    store = open_store(data)
    yield store, open_recordings(store, data, journal_dir=None)
    store.close()


@needs_age
def test_retention_shreds_the_key_stanzas_then_deletes(
    box: tuple[SqliteStore, Recordings], site: tuple[Path, X25519Recipient], tmp_path: Path
) -> None:
    store, recordings = box
    identity, recipient = site
    now = time.time()
    old = finished_recording(recordings, recipient, started_at=now - 40 * DAY)
    old_kept = finished_recording(recordings, recipient, started_at=now - 40 * DAY, caller="103")
    young = finished_recording(recordings, recipient, started_at=now - 5 * DAY)
    # A second name for the old file's inode: what "still on the disk" looks like after unlink.
    ghost = tmp_path / "ghost.age"
    os.link(recordings.path(old), ghost)
    assert age("-d", "-i", identity, ghost)[:4] == b"RIFF"

    recordings.settings = RecordingSettings(retention_days=30, retention_by_extension={"103": 90})
    deleted = recordings.prune(now)
    assert [d.id for d in deleted] == [old.id]
    assert not recordings.path(old).exists()
    assert recordings.path(old_kept).exists() and recordings.path(young).exists()
    # The bytes left behind cannot be decrypted with the identity: the stanzas are noise.
    with pytest.raises(AssertionError, match="age"):
        age("-d", "-i", identity, ghost)
    row = recordings.catalog.get(old.id)
    assert row is not None and row.state is RecordingState.DELETED and row.deleted_at
    record = store.cdr.get(old.call_id)
    assert record is not None and record.recording_state == "deleted"
    (event,) = store.audit.events(action="recording.deleted")
    assert event.target == old.id and event.detail["reason"] == "retention"
    assert recordings.prune(now) == []  # idempotent
    assert recordings.verify().ok


def test_verify_finds_altered_truncated_missing_files_and_a_broken_chain(
    box: tuple[SqliteStore, Recordings], site: tuple[Path, X25519Recipient]
) -> None:
    store, recordings = box
    _, recipient = site
    now = time.time()
    altered, cut, missing, fine = (
        finished_recording(recordings, recipient, started_at=now - n) for n in range(4)
    )
    store.audit.append("recording.started", actor="recorder", origin="box", target=fine.id)
    assert recordings.verify().ok
    data = bytearray(recordings.path(altered).read_bytes())
    data[-100] ^= 1
    recordings.path(altered).write_bytes(bytes(data))
    with open(recordings.path(cut), "r+b") as f:
        f.truncate(100)
    recordings.path(missing).unlink()
    report = recordings.verify()
    assert report.checked == 4 and report.audit_ok and not report.ok
    assert sorted(report.problems) == sorted(
        [
            f"{altered.id}: SHA-256 does not match: the file was altered",
            f"{cut.id}: size 100, the catalog says {cut.size}",
            f"{missing.id}: file {missing.path} is missing",
        ]
    )
    # Someone edits the audit event in the database: the chain breaks.
    raw = sqlite3.connect(store.metadata.path)
    raw.execute("UPDATE audit_events SET target = 'other' WHERE seq = 1")
    raw.commit()
    raw.close()
    report = recordings.verify()
    assert not report.audit_ok and "audit event 1" in report.audit_problem


@needs_age
def test_cli_list_export_verify_prune(
    tmp_path: Path,
    box: tuple[SqliteStore, Recordings],
    site: tuple[Path, X25519Recipient],
    capsys: pytest.CaptureFixture[str],
) -> None:
    store, recordings = box
    identity, recipient = site
    data = tmp_path / "data"
    now = time.time()
    rec = finished_recording(recordings, recipient, started_at=now - 3 * DAY, seconds=1.0)
    old = finished_recording(recordings, recipient, started_at=now - 100 * DAY)
    base = ["recordings", "--data", str(data), "--actor", "admin"]

    assert main([*base, "list"]) == 0
    listing = capsys.readouterr().out
    assert rec.id in listing and "complete" in listing and "101 -> 102" in listing

    out = tmp_path / "call.wav"
    assert main([*base, "export", rec.id, str(out), "--identity", str(identity)]) == 0
    wav = read_wav(out.read_bytes())
    assert (wav.channels, wav.rate, wav.frames) == (2, 8000, 8000)
    assert oct(out.stat().st_mode)[-3:] == "600"
    (event,) = store.audit.events(action="recording.exported")
    assert (event.actor, event.origin, event.target) == ("admin", "console", rec.id)
    # A wrong identity is refused with a clear error, and nothing is written.
    other = tmp_path / "other.txt"
    other.write_text(X25519Identity.generate().secret_string() + "\n")
    assert main([*base, "export", rec.id, str(tmp_path / "x.wav"), "--identity", str(other)]) == 1
    assert "wrong key" in capsys.readouterr().err
    assert not (tmp_path / "x.wav").exists()

    # Playback (what the management API will serve): random access, audited with its origin.
    reader = recordings.open(rec.id, [X25519Identity.from_string(
        identity.read_text().split()[-1])], actor="admin", origin="lan")  # fmt: skip
    with reader:
        reader.seek(44 + 4 * 4000)
        assert reader.read(8) == out.read_bytes()[44 + 16000 : 44 + 16008]
    played = store.audit.events(action="recording.played")
    assert [(e.actor, e.origin, e.target) for e in played] == [("admin", "lan", rec.id)]

    assert main([*base, "prune", "--days", "30"]) == 0
    assert f"deleted {old.id}" in capsys.readouterr().out
    assert (
        main([*base, "export", old.id, str(tmp_path / "y.wav"), "--identity", str(identity)]) == 1
    )
    assert "deleted" in capsys.readouterr().err

    assert main([*base, "verify"]) == 0
    assert "1 recordings checked; audit chain ok" in capsys.readouterr().out
    path = recordings.path(rec)
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    assert main([*base, "verify"]) == 1
    assert f"PROBLEM {rec.id}: SHA-256 does not match" in capsys.readouterr().out
    assert hashlib.sha256(path.read_bytes()).hexdigest() != rec.sha256


def test_site_recipients_come_from_the_keyring_or_the_setup_console(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    assert site_recipients(data) == []
    escrow = X25519Identity.generate().recipient()
    console = X25519Identity.generate()
    (data / "site-identity.txt").write_text(
        f"# recipient: {console.recipient()}\n{console.secret_string()}\n"
    )
    assert site_recipients(data, [str(escrow)]) == [console.recipient(), escrow]
    keyring = Keyring(data / "keys", work_factor=10)
    site = keyring.initialize("correct horse battery staple")
    keyring.add_escrow(str(escrow))
    got = site_recipients(data, [str(escrow)])  # the keyring wins; no duplicate escrow
    assert [r.fingerprint for r in got] == [site.fingerprint, escrow.fingerprint]


async def test_the_box_applies_retention_by_itself(
    tmp_path: Path, site: tuple[Path, X25519Recipient]
) -> None:
    _, recipient = site
    data = tmp_path / "data"
    store = open_store(data)
    try:
        settings = RecordingSettings(retention_days=30)
        box = start_box_recording(store, data, settings, journal_dir=tmp_path / "no-journal")
        old = finished_recording(box.recordings, recipient, started_at=time.time() - 31 * DAY)
        young = finished_recording(box.recordings, recipient, started_at=time.time() - DAY)
        task = asyncio.ensure_future(box.run_retention(interval=0.05))
        for _ in range(100):
            row = box.recordings.catalog.get(old.id)
            if row is not None and row.state is RecordingState.DELETED:
                break
            await asyncio.sleep(0.05)
        task.cancel()
        box.close()
        assert not box.recordings.path(old).exists() and box.recordings.path(young).exists()
        assert [e.target for e in store.audit.events(action="recording.deleted")] == [old.id]
    finally:
        store.close()
    with pytest.raises(SystemExit, match="retention-extension"):  # refused before starting
        main(["run", "--retention-extension", "101=x"])
