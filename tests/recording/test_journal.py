"""The key journal: where in-progress file keys live, and start-up recovery from it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pbx.recording.age import (
    CHUNK_SIZE,
    AgeReader,
    AgeWriter,
    RecordingInProgressError,
    X25519Identity,
    recover,
    recover_pending,
)
from pbx.recording.journal import KeyJournal, KeyJournalError, filesystem_type


def test_journal_refuses_a_disk_folder(tmp_path: Path) -> None:
    if filesystem_type(tmp_path) in ("tmpfs", "ramfs"):
        pytest.skip("the temporary folder is itself on tmpfs here")
    with pytest.raises(KeyJournalError, match="RAM-backed"):
        KeyJournal(tmp_path / "keys")


def test_entries_live_while_the_file_is_open(volatile_dir: Path, identity: X25519Identity) -> None:
    journal = KeyJournal(volatile_dir / "keys")
    assert stat.S_IMODE((volatile_dir / "keys").stat().st_mode) == 0o700
    recording = volatile_dir / "call.age"
    writer = AgeWriter.create(recording, [identity.recipient()], journal=journal)
    (entry,) = journal.pending()
    assert entry.path == str(recording.resolve())
    (item,) = (volatile_dir / "keys").iterdir()
    assert stat.S_IMODE(item.stat().st_mode) == 0o600
    assert journal.get(entry.header_id) is not None
    assert "file_key" not in repr(entry)
    writer.write(b"x" * 100)
    writer.close()
    assert journal.pending() == []
    journal.remove(entry.header_id)  # removing what is gone is fine


def test_recover_pending_at_start_up(volatile_dir: Path, identity: X25519Identity) -> None:
    journal = KeyJournal(volatile_dir / "keys")
    calls = [volatile_dir / f"call{n}.age" for n in range(3)]
    for n, path in enumerate(calls):
        writer = AgeWriter.create(path, [identity.recipient()], journal=journal)
        writer.write(os.urandom((n + 1) * CHUNK_SIZE + 1))
        writer.abort()  # the process died
    calls[2].unlink()  # one file was deleted meanwhile
    outcomes = {o.path: o for o in recover_pending(journal)}
    assert journal.pending() == []
    for n, path in enumerate(calls[:2]):
        report = outcomes[str(path.resolve())].report
        assert report is not None
        assert report.plaintext_size == (n + 1) * CHUNK_SIZE
        with AgeReader.open(path, [identity]) as reader:
            assert reader.size == (n + 1) * CHUNK_SIZE
    gone = outcomes[str(calls[2].resolve())]
    assert gone.report is None
    assert "gone" in gone.error


def test_a_live_recording_is_never_recovered(volatile_dir: Path, identity: X25519Identity) -> None:
    journal = KeyJournal(volatile_dir / "keys")
    live = AgeWriter.create(volatile_dir / "live.age", [identity.recipient()], journal=journal)
    live.write(os.urandom(2 * CHUNK_SIZE + 1))
    with pytest.raises(RecordingInProgressError):
        recover(volatile_dir / "live.age", journal=journal)
    (outcome,) = recover_pending(journal)
    assert outcome.report is None and "live writer" in outcome.error
    assert len(journal.pending()) == 1
    live.write(b"more")
    live.close()
    assert journal.pending() == []


def test_writer_died_before_the_header(volatile_dir: Path) -> None:
    journal = KeyJournal(volatile_dir / "keys")
    empty = volatile_dir / "empty.age"
    empty.touch()
    journal.put("0" * 32, os.urandom(16), str(empty))
    (outcome,) = recover_pending(journal)
    assert "empty" in outcome.error
    assert journal.pending() == []
