"""Rewriting the first plaintext bytes at close or recovery (a WAV header's lengths)."""

from __future__ import annotations

import hashlib
import io
import os
import struct
from pathlib import Path

import pytest
from support.agetool import age, needs_age

from pbx.recording.age import (
    CHUNK_SIZE,
    AgeReader,
    AgeWriter,
    X25519Identity,
    decrypt_bytes,
    recover,
)

PLACEHOLDER = b"HEAD" + bytes(40)


def wav_like_head(size: int) -> bytes:
    return b"HEAD" + struct.pack("<I", size) + bytes(36)


@pytest.mark.parametrize("keep_head", [True, False])
@pytest.mark.parametrize("audio", [0, 100, CHUNK_SIZE - 44, CHUNK_SIZE, 5 * CHUNK_SIZE + 3])
def test_close_rewrites_the_head(
    audio: int, keep_head: bool, tmp_path: Path, identity: X25519Identity
) -> None:
    path = tmp_path / "call.age"
    data = os.urandom(audio)
    writer = AgeWriter.create(path, [identity.recipient()], keep_head=keep_head)
    writer.write(PLACEHOLDER)
    for start in range(0, audio, 640):
        writer.write(data[start : start + 640])
    result = writer.close(head=wav_like_head(44 + audio))
    assert result.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    with AgeReader.open(path, [identity]) as reader:
        assert reader.read() == wav_like_head(44 + audio) + data


def test_head_in_memory_needs_no_keep_head(identity: X25519Identity) -> None:
    sink = io.BytesIO()
    writer = AgeWriter(sink, [identity.recipient()])
    writer.write(PLACEHOLDER + b"audio")
    writer.close(head=b"HEAD!")
    assert decrypt_bytes(sink.getvalue(), [identity]) == b"HEAD!" + PLACEHOLDER[5:] + b"audio"


def test_head_needs_a_readable_sink(tmp_path: Path, identity: X25519Identity) -> None:
    with open(tmp_path / "w.age", "wb") as sink:
        writer = AgeWriter(sink, [identity.recipient()])
        writer.write(bytes(CHUNK_SIZE + 1))
        with pytest.raises(ValueError, match="readable"):
            writer.close(head=b"HEAD")
    sink = io.BytesIO()
    writer = AgeWriter(sink, [identity.recipient()])
    writer.write(bytes(2 * CHUNK_SIZE + 1))
    result = writer.close(head=b"HEAD")
    assert decrypt_bytes(sink.getvalue(), [identity])[:5] == b"HEAD\0"
    assert result.sha256 == hashlib.sha256(sink.getvalue()).hexdigest()
    with pytest.raises(ValueError, match="longer"):
        AgeWriter(io.BytesIO(), [identity.recipient()]).close(head=b"x")


@needs_age
@pytest.mark.interop
@pytest.mark.parametrize("chunks", [0, 1, 4])
def test_recovery_rewrites_the_head(chunks: int, tmp_path: Path, identity: X25519Identity) -> None:
    key = tmp_path / "identity.txt"
    key.write_text(identity.secret_string() + "\n")
    path = tmp_path / "call.age"
    data = os.urandom(chunks * CHUNK_SIZE + 500)
    writer = AgeWriter.create(path, [identity.recipient()], keep_head=True)
    writer.write(PLACEHOLDER)
    writer.write(data)
    writer.abort()  # kill -9: the last 544 bytes never reached the file
    report = recover(path, identities=[identity], head=wav_like_head)
    recovered = age("-d", "-i", key, path)
    size = chunks * CHUNK_SIZE
    assert report.plaintext_size == len(recovered) == size
    if size:
        assert recovered == wav_like_head(size) + data[: size - 44]
