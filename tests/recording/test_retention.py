"""Retention: destroying the key stanzas before unlinking, so the data cannot come back."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.agetool import age, needs_age

from pbx.recording.age import (
    AgeError,
    AgeReader,
    AgeWriter,
    X25519Identity,
    destroy_key_stanzas,
    read_header,
    shred,
)


def make_recording(path: Path, *identities: X25519Identity) -> bytes:
    with AgeWriter.create(path, [i.recipient() for i in identities]) as writer:
        writer.write(os.urandom(150_000))
    return path.read_bytes()


def test_destroyed_stanzas_leave_no_way_in(
    tmp_path: Path, identity: X25519Identity, other_identity: X25519Identity
) -> None:
    recording = tmp_path / "old.age"
    before = make_recording(recording, identity, other_identity)
    with open(recording, "rb") as f:
        header = read_header(f)
    overwritten = destroy_key_stanzas(recording)
    after = recording.read_bytes()
    assert overwritten == header.stanzas_end - header.stanzas_start
    assert len(after) == len(before)
    start, end = header.stanzas_start, header.stanzas_end
    assert after[start:end] != before[start:end]
    assert after[:start] == before[:start] and after[end:] == before[end:]  # only the keys went
    for who in (identity, other_identity):
        with pytest.raises(AgeError):
            AgeReader.open(recording, [who])


@needs_age
@pytest.mark.interop
def test_age_cannot_open_a_destroyed_file(tmp_path: Path, identity: X25519Identity) -> None:
    key = tmp_path / "identity.txt"
    key.write_text(identity.secret_string() + "\n")
    recording = tmp_path / "old.age"
    make_recording(recording, identity)
    age("-d", "-i", key, recording)
    destroy_key_stanzas(recording)
    with pytest.raises(AssertionError, match="failed"):
        age("-d", "-i", key, recording)


def test_shred_unlinks_and_is_idempotent(tmp_path: Path, identity: X25519Identity) -> None:
    recording = tmp_path / "old.age"
    make_recording(recording, identity)
    assert shred(recording) is True
    assert not recording.exists()
    assert shred(recording) is False  # deleting what is already gone is success
    junk = tmp_path / "junk.age"
    junk.write_bytes(b"not an age file")
    assert shred(junk) is True
    assert not junk.exists()
