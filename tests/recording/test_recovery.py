"""Crash safety: kill -9 of a writer mid-stream, recovery from the key journal or the identity,
torn tails, disk full, and refusing damage that is not a crash."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.agetool import age, needs_age

from pbx.recording.age import (
    CHUNK_SIZE,
    ENC_CHUNK_SIZE,
    AgeReader,
    AgeWriter,
    RecoveryError,
    X25519Identity,
    read_header,
    recover,
)
from pbx.recording.journal import KeyJournal

CHILD = Path(__file__).with_name("writer_child.py")


def stream(size: int) -> bytes:
    return hashlib.shake_256(b"edgepbx recording test stream").digest(size)


def start_writer(path: Path, recipient: str, journal: Path | str, limit: int | None = None):  # type: ignore[no-untyped-def]
    args = [sys.executable, str(CHILD), str(path), recipient, str(journal)]
    if limit is not None:
        args.append(str(limit))
    child = subprocess.Popen(args, stdout=subprocess.PIPE)
    assert child.stdout is not None
    assert child.stdout.readline() == b"started\n"
    return child


def payload_start(path: Path) -> int:
    with open(path, "rb") as f:
        return len(read_header(f).raw) + 16


def wait_for_size(path: Path, size: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while path.stat().st_size < size:
        assert time.monotonic() < deadline, "writer did not make progress"
        time.sleep(0.01)


def kill9(child: subprocess.Popen[bytes]) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.stdout is not None
    child.stdout.close()


@needs_age
@pytest.mark.interop
def test_kill_9_mid_stream_then_recover_from_journal(tmp_path: Path, volatile_dir: Path) -> None:
    key = tmp_path / "identity.txt"
    identity = X25519Identity.generate()
    key.write_text(identity.secret_string() + "\n")
    recording = tmp_path / "call.age"
    journal_dir = volatile_dir / "recording-keys"
    child = start_writer(recording, str(identity.recipient()), journal_dir)
    wait_for_size(recording, payload_start(recording) + 6 * ENC_CHUNK_SIZE)
    kill9(child)  # mid-stream: the writer is still writing

    journal = KeyJournal(journal_dir)
    assert [e.path for e in journal.pending()] == [str(recording.resolve())]
    assert oct(journal_dir.stat().st_mode & 0o777) == "0o700"
    before = recording.stat().st_size
    complete = (before - payload_start(recording)) // ENC_CHUNK_SIZE
    # The stock tool refuses the partial file...
    with pytest.raises(AssertionError, match="failed"):
        age("-d", "-i", key, recording)

    report = recover(recording, journal=journal)

    assert not report.already_final
    assert report.chunks == complete >= 6
    assert report.plaintext_size == complete * CHUNK_SIZE
    assert report.ciphertext_size == recording.stat().st_size
    assert report.discarded_bytes == before - report.ciphertext_size
    assert report.sha256 == hashlib.sha256(recording.read_bytes()).hexdigest()
    assert journal.pending() == []
    # ...and decrypts the recovered one: exactly the complete chunks of the stream.
    assert age("-d", "-i", key, recording) == stream(report.plaintext_size)
    # Recovering again is a no-op.
    again = recover(recording, identities=[identity])
    assert again.already_final
    assert again.sha256 == report.sha256


def test_power_loss_recover_with_identity_and_torn_chunk(
    tmp_path: Path, identity: X25519Identity
) -> None:
    recording = tmp_path / "call.age"
    child = start_writer(recording, str(identity.recipient()), "-", limit=5 * CHUNK_SIZE + 1000)
    start = payload_start(recording)
    wait_for_size(recording, start + 5 * ENC_CHUNK_SIZE)
    kill9(child)
    assert recording.stat().st_size == start + 5 * ENC_CHUNK_SIZE
    # A power loss can tear the last chunk: half of a sixth chunk, and zeroed blocks.
    with open(recording, "ab") as f:
        f.write(bytes(ENC_CHUNK_SIZE // 2))

    with pytest.raises(RecoveryError, match="journal"):
        recover(recording, journal=KeyJournal(tmp_path / "journal", require_volatile=False))
    report = recover(recording, identities=[identity])

    assert (report.chunks, report.plaintext_size) == (5, 5 * CHUNK_SIZE)
    assert report.discarded_bytes == ENC_CHUNK_SIZE // 2
    with AgeReader.open(recording, [identity]) as reader:
        assert reader.read() == stream(5 * CHUNK_SIZE)


def test_crash_before_the_first_chunk_gives_an_empty_valid_file(
    tmp_path: Path, identity: X25519Identity
) -> None:
    journal = KeyJournal(tmp_path / "journal", require_volatile=False)
    recording = tmp_path / "call.age"
    writer = AgeWriter.create(recording, [identity.recipient()], journal=journal)
    writer.write(b"x" * 1000)  # still in memory
    writer.abort()  # the process dies: nothing but the header on disk
    report = recover(recording, journal=journal)
    assert (report.chunks, report.plaintext_size) == (1, 0)
    with AgeReader.open(recording, [identity]) as reader:
        assert reader.read() == b""


def test_crash_during_recovery_is_recoverable(tmp_path: Path, identity: X25519Identity) -> None:
    recording = tmp_path / "call.age"
    writer = AgeWriter.create(recording, [identity.recipient()])
    writer.write(stream(3 * CHUNK_SIZE + 10))
    writer.abort()
    start = payload_start(recording)
    # Recovery truncates first; a crash right after leaves a file ending in a non-final chunk.
    os.truncate(recording, start + 2 * ENC_CHUNK_SIZE)
    report = recover(recording, identities=[identity])
    assert report.plaintext_size == 2 * CHUNK_SIZE
    with AgeReader.open(recording, [identity]) as reader:
        assert reader.read() == stream(2 * CHUNK_SIZE)


def test_damage_before_the_tail_is_refused(tmp_path: Path, identity: X25519Identity) -> None:
    recording = tmp_path / "call.age"
    writer = AgeWriter.create(recording, [identity.recipient()])
    writer.write(stream(4 * CHUNK_SIZE + 10))
    writer.abort()
    start = payload_start(recording)
    with open(recording, "r+b") as f:
        f.seek(start + ENC_CHUNK_SIZE + 7)
        f.write(b"\xff")
    size = recording.stat().st_size
    with pytest.raises(RecoveryError, match="not a crash"):
        recover(recording, identities=[identity])
    assert recording.stat().st_size == size  # nothing cut


def test_complete_file_is_left_alone(tmp_path: Path, identity: X25519Identity) -> None:
    recording = tmp_path / "call.age"
    with AgeWriter.create(recording, [identity.recipient()]) as writer:
        writer.write(stream(CHUNK_SIZE))
    before = recording.read_bytes()
    report = recover(recording, identities=[identity])
    assert report.already_final
    assert (report.chunks, report.plaintext_size) == (1, CHUNK_SIZE)
    assert recording.read_bytes() == before


def test_wrong_identity_cannot_recover(tmp_path: Path, identity: X25519Identity) -> None:
    recording = tmp_path / "call.age"
    writer = AgeWriter.create(recording, [identity.recipient()])
    writer.write(stream(2 * CHUNK_SIZE + 1))
    writer.abort()
    with pytest.raises(Exception, match="wrong key"):
        recover(recording, identities=[X25519Identity.generate()])


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0, reason="needs root")
def test_disk_full_stops_cleanly_and_salvages(tmp_path: Path, identity: X25519Identity) -> None:
    """A real full disk: a 512 KiB tmpfs in a private mount namespace."""
    mount = tmp_path / "small"
    mount.mkdir()
    recording = mount / "call.age"
    script = (
        f"mount -t tmpfs -o size=512k tmpfs {mount} && "
        f"{sys.executable} {CHILD} --fill {recording} {identity.recipient()} && "
        f"cp {recording} {tmp_path / 'salvaged.age'}"
    )
    result = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script], capture_output=True, timeout=120, check=False
    )
    if result.returncode != 0 and b"mount" in result.stderr:
        pytest.skip(f"cannot mount tmpfs here: {result.stderr.decode()}")
    assert result.returncode == 0, result.stderr.decode()
    report = json.loads(result.stdout)
    assert "disk full" in report["error"]
    assert report["chunks"] >= 5
    with AgeReader.open(tmp_path / "salvaged.age", [identity]) as reader:
        assert reader.read() == stream(report["plaintext_size"])
    assert report["plaintext_size"] == report["chunks"] * CHUNK_SIZE


def test_junk_after_a_final_chunk_is_cut(tmp_path: Path, identity: X25519Identity) -> None:
    recording = tmp_path / "call.age"
    with AgeWriter.create(recording, [identity.recipient()]) as writer:
        writer.write(stream(2 * CHUNK_SIZE))
    good = recording.read_bytes()
    with open(recording, "ab") as f:
        f.write(os.urandom(1000))
    report = recover(recording, identities=[identity])
    assert not report.already_final
    assert (report.chunks, report.discarded_bytes) == (2, 1000)
    assert recording.read_bytes() == good


def test_sync_every_chunk(tmp_path: Path, identity: X25519Identity) -> None:
    recording = tmp_path / "call.age"
    with AgeWriter.create(recording, [identity.recipient()], sync_every=1) as writer:
        writer.write(stream(3 * CHUNK_SIZE + 1))
    with AgeReader.open(recording, [identity]) as reader:
        assert reader.read() == stream(3 * CHUNK_SIZE + 1)
