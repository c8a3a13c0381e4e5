"""``edgepbx keys``: setup, status, backup export, restore, rotation, escrow, passphrase change."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.agetool import age_with_passphrase, needs_age

from appliance.cli import main
from pbx.recording.age import AgeWriter, X25519Identity
from pbx.recording.keys import Keyring

PASS = "correct horse battery"


def keys(tmp_path: Path, *args: str, passphrases: tuple[str, ...] = ()) -> int:
    secret = tmp_path / "passphrases"
    secret.write_text("".join(p + "\n" for p in passphrases))
    base = ["keys", "--data", str(tmp_path / "data"), "--work-factor", "10"]
    return main([*base, "--passphrase-file", str(secret), *args])


def test_setup_backup_rotate_and_escrow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert keys(tmp_path, "status") == 0
    assert "no keys yet" in capsys.readouterr().out
    assert keys(tmp_path, "init", passphrases=("short",)) == 1
    assert "12 characters" in capsys.readouterr().err
    assert keys(tmp_path, "init", passphrases=(PASS,)) == 0
    out = capsys.readouterr().out
    assert "recordings are gone" in out
    assert PASS not in out
    assert keys(tmp_path, "status") == 0
    assert "NOT BACKED UP" in capsys.readouterr().out

    assert keys(tmp_path, "export", "-o", str(tmp_path / "backup.age")) == 0
    assert "age -d -i" in capsys.readouterr().out
    assert oct((tmp_path / "backup.age").stat().st_mode & 0o777) == "0o600"
    assert keys(tmp_path, "status") == 0
    assert "NOT BACKED UP" not in capsys.readouterr().out
    assert keys(tmp_path, "export", "-o", str(tmp_path / "backup.age")) == 1  # never overwrites

    assert keys(tmp_path, "rotate", passphrases=("another long passphrase",)) == 0
    escrow = X25519Identity.generate().recipient()
    assert keys(tmp_path, "escrow", "add", str(escrow), "--label", "company") == 0
    assert keys(tmp_path, "escrow", "add", "age1wrong") == 1
    capsys.readouterr()
    assert keys(tmp_path, "status") == 0
    status = capsys.readouterr().out
    assert "retired, exported" in status and "current, NOT BACKED UP" in status
    assert "escrow company" in status
    keyring = Keyring(tmp_path / "data" / "keys")
    assert len(keyring.recording_recipients()) == 2

    # A replacement box restores the old identity from the backup.
    other = tmp_path / "other"
    other.mkdir()
    (other / "backup.age").write_bytes((tmp_path / "backup.age").read_bytes())
    assert keys(other, "import", str(other / "backup.age"), passphrases=("wrong",)) == 1
    assert "passphrase" in capsys.readouterr().err
    assert keys(other, "import", str(other / "backup.age"), "--current", passphrases=(PASS,)) == 0
    restored = Keyring(other / "data" / "keys")
    assert restored.current is not None
    assert restored.current.fingerprint == keyring.keys()[0].fingerprint

    assert keys(tmp_path, "passwd", passphrases=(PASS, "a brand new passphrase")) == 0
    assert Keyring(tmp_path / "data" / "keys").unlock("a brand new passphrase")


@needs_age
@pytest.mark.interop
def test_exported_backup_opens_recordings_with_stock_age(tmp_path: Path) -> None:
    assert keys(tmp_path, "init", passphrases=(PASS,)) == 0
    assert keys(tmp_path, "export", "-o", str(tmp_path / "backup.age")) == 0
    recipients = Keyring(tmp_path / "data" / "keys").recording_recipients()
    data = os.urandom(100_000)
    with AgeWriter.create(tmp_path / "call.wav.age", recipients) as writer:
        writer.write(data)
    code, transcript = age_with_passphrase(
        "-d",
        "-i",
        tmp_path / "backup.age",
        "-o",
        tmp_path / "call.wav",
        tmp_path / "call.wav.age",
        passphrase=PASS,
    )
    assert code == 0, transcript
    assert (tmp_path / "call.wav").read_bytes() == data
