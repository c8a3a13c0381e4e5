"""Site keys: protected identity, unlock, rotation, escrow, backup and restore."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest
from support.agetool import age_with_passphrase, needs_age

from pbx.recording.age import AgeReader, AgeWriter, X25519Identity, decrypt_bytes
from pbx.recording.keys import (
    Keyring,
    KeyringError,
    WrongPassphraseError,
    parse_identity_file,
    parse_recipients_file,
)

FAST = 10  # scrypt work factor for tests; the box uses 18 like `age -p`


def record(keyring: Keyring, data: bytes) -> tuple[bytes, list[str]]:
    sink = io.BytesIO()
    writer = AgeWriter(sink, keyring.recording_recipients())
    writer.write(data)
    writer.close()
    return sink.getvalue(), keyring.recording_fingerprints()


def test_setup_unlock_and_play(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path / "keys", work_factor=FAST)
    with pytest.raises(KeyringError, match="no site key"):
        keyring.recording_recipients()
    site = keyring.initialize("correct horse", now=1000.0)
    assert keyring.current == site
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    for item in (tmp_path / "keys").iterdir():
        assert stat.S_IMODE(item.stat().st_mode) == 0o600
        assert b"AGE-SECRET-KEY" not in item.read_bytes()  # the secret is never stored in clear
    data = os.urandom(5000)
    ciphertext, fingerprints = record(keyring, data)
    assert fingerprints == [site.fingerprint]
    # A fresh process: reload the keyring from disk, unlock, play.
    reloaded = Keyring(tmp_path / "keys", work_factor=FAST)
    identities = reloaded.unlock("correct horse")
    assert decrypt_bytes(ciphertext, identities) == data
    with pytest.raises(WrongPassphraseError):
        reloaded.unlock("wrong")
    with pytest.raises(KeyringError, match="already"):
        reloaded.initialize("again")


def test_rotation_keeps_old_recordings_readable(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path, work_factor=FAST)
    old = keyring.initialize("pw1", now=1.0)
    old_file, old_fps = record(keyring, b"before rotation")
    new = keyring.rotate("pw2", now=2.0)
    new_file, new_fps = record(keyring, b"after rotation")
    assert (old_fps, new_fps) == ([old.fingerprint], [new.fingerprint])
    assert keyring.get(old.fingerprint).retired_at == 2.0
    assert keyring.current == new
    # Each file opens with its own identity only.
    old_identity = keyring.unlock("pw1", [old.fingerprint])
    new_identity = keyring.unlock("pw2", [new.fingerprint])
    assert decrypt_bytes(old_file, old_identity) == b"before rotation"
    assert decrypt_bytes(new_file, new_identity) == b"after rotation"
    with pytest.raises(Exception, match="wrong key"):
        decrypt_bytes(old_file, new_identity)
    # Unlocking everything with one passphrase skips identities it does not open.
    assert [i.recipient().fingerprint for i in keyring.unlock("pw1")] == [old.fingerprint]


def test_escrow_recipient_on_every_new_recording(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path, work_factor=FAST)
    site = keyring.initialize("pw")
    escrow = X25519Identity.generate()
    info = keyring.add_escrow(str(escrow.recipient()), label="company escrow")
    ciphertext, fingerprints = record(keyring, b"call audio")
    assert fingerprints == [site.fingerprint, info.fingerprint]
    assert decrypt_bytes(ciphertext, [escrow]) == b"call audio"
    with pytest.raises(KeyringError, match="already"):
        keyring.add_escrow(str(escrow.recipient()))
    with pytest.raises(ValueError, match="recipient"):
        keyring.add_escrow("age1notakey")
    keyring.remove_escrow(info.fingerprint)
    assert keyring.recording_fingerprints() == [site.fingerprint]


def test_backup_export_and_restore_on_a_new_box(tmp_path: Path) -> None:
    box = Keyring(tmp_path / "box", work_factor=FAST)
    site = box.initialize("pw", now=10.0)
    assert box.backup_status() == [site]
    ciphertext, _ = record(box, b"to keep")
    backup = box.export_identity(site.fingerprint, now=11.0)
    assert box.backup_status() == []
    assert box.get(site.fingerprint).exported_at == 11.0

    replacement = Keyring(tmp_path / "replacement", work_factor=FAST)
    with pytest.raises(WrongPassphraseError):
        replacement.import_identity(backup, "not it")
    restored = replacement.import_identity(backup, "pw", make_current=True, now=20.0)
    assert restored.fingerprint == site.fingerprint
    assert replacement.current is not None
    assert decrypt_bytes(ciphertext, replacement.unlock("pw")) == b"to keep"


def test_change_passphrase(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path, work_factor=FAST)
    site = keyring.initialize("old")
    keyring.export_identity(site.fingerprint)
    with pytest.raises(WrongPassphraseError):
        keyring.change_passphrase("not old", "new")
    keyring.change_passphrase("old", "new")
    with pytest.raises(WrongPassphraseError):
        keyring.unlock("old")
    assert keyring.unlock("new")[0].recipient().fingerprint == site.fingerprint
    assert keyring.backup_status() == [keyring.get(site.fingerprint)]  # export again


def test_text_formats() -> None:
    identity = X25519Identity.generate()
    text = f"# created: 2026-01-01T00:00:00Z\n\n{identity.secret_string()}\n"
    assert parse_identity_file(text)[0].recipient() == identity.recipient()
    with pytest.raises(KeyringError, match="line 1"):
        parse_identity_file("AGE-SECRET-KEY-1XYZ\n")
    recipients = parse_recipients_file(f"# escrow\n{identity.recipient()}\n")
    assert recipients == [identity.recipient()]
    with pytest.raises(KeyringError, match="line 2"):
        parse_recipients_file(f"{identity.recipient()}\nage1bad\n")


@needs_age
@pytest.mark.interop
def test_stock_age_plays_a_recording_with_the_exported_identity(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path / "keys", work_factor=FAST)
    site = keyring.initialize("correct horse battery")
    recording = tmp_path / "call.age"
    data = os.urandom(200_000)
    with AgeWriter.create(recording, keyring.recording_recipients()) as writer:
        writer.write(data)
    backup = tmp_path / "site-backup.age"
    backup.write_bytes(keyring.export_identity(site.fingerprint))
    code, transcript = age_with_passphrase(
        "-d",
        "-i",
        backup,
        "-o",
        tmp_path / "call.raw",
        recording,
        passphrase="correct horse battery",
    )
    assert code == 0, transcript
    assert (tmp_path / "call.raw").read_bytes() == data
    with AgeReader.open(recording, keyring.unlock("correct horse battery")) as reader:
        assert reader.read() == data


def test_a_running_recorder_sees_a_rotation_made_elsewhere(tmp_path: Path) -> None:
    recorder = Keyring(tmp_path, work_factor=FAST)
    first = recorder.initialize("pw")
    assert recorder.recording_fingerprints() == [first.fingerprint]
    second = Keyring(tmp_path, work_factor=FAST).rotate("pw2")  # another process
    assert recorder.recording_fingerprints() == [second.fingerprint]
