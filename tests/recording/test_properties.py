"""Property tests over the parser and recovery: garbage never escapes the error hierarchy,
recovery at any cut point keeps exactly the complete chunks, swapped chunks are named."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbx.recording.age import (
    CHUNK_SIZE,
    ENC_CHUNK_SIZE,
    AgeError,
    AgeReader,
    AgeWriter,
    ChunkOrderError,
    X25519Identity,
    encrypt_bytes,
    read_header,
    recover,
)
from pbx.recording.journal import KeyJournal

FIXTURES = [HealthCheck.function_scoped_fixture]


@settings(max_examples=300, deadline=None, suppress_health_check=FIXTURES)
@given(tail=st.binary(max_size=400))
def test_garbage_after_a_valid_prefix_raises_only_age_errors(
    tail: bytes, identity: X25519Identity
) -> None:
    ciphertext = encrypt_bytes(b"hello", [identity.recipient()])
    for prefix in (b"", b"age-encryption.org/v1\n", ciphertext[:60], ciphertext[:-20]):
        with pytest.raises(AgeError):
            AgeReader(io.BytesIO(prefix + tail), [identity]).verify()


@settings(max_examples=200, deadline=None, suppress_health_check=FIXTURES)
@given(
    lines=st.lists(
        st.one_of(
            st.sampled_from(
                [b"-> X25519", b"-> scrypt", b"--- ", b"-> ", b"", b"A" * 64, b"-> X25519 AAAA"]
            ),
            st.binary(max_size=70).filter(lambda b: b"\n" not in b),
        ),
        max_size=8,
    )
)
def test_structured_header_garbage_raises_only_age_errors(
    lines: list[bytes], identity: X25519Identity
) -> None:
    raw = b"\n".join([b"age-encryption.org/v1", *lines]) + b"\n--- AAAA\n" + bytes(40)
    with pytest.raises(AgeError):
        AgeReader(io.BytesIO(raw), [identity]).verify()


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURES)
@given(size=st.integers(0, 4 * CHUNK_SIZE + 100), cut=st.floats(0, 1))
def test_recovery_at_any_cut_keeps_exactly_the_complete_chunks(
    size: int, cut: float, tmp_path_factory: pytest.TempPathFactory, identity: X25519Identity
) -> None:
    folder = tmp_path_factory.mktemp("cut")
    journal = KeyJournal(folder / "keys", require_volatile=False)
    path = folder / "call.age"
    data = os.urandom(size)
    writer = AgeWriter.create(path, [identity.recipient()], journal=journal)
    writer.write(data)
    closed = cut > 0.9  # sometimes the writer finished before the "crash"
    if closed:
        writer.close()
    else:
        writer.abort()
    start = writer.payload_start
    full = path.stat().st_size
    point = start + int(cut * (full - start)) if not closed else full
    os.truncate(path, point)
    report = recover(path, journal=journal, identities=[identity])
    with AgeReader.open(path, [identity]) as reader:
        plain = reader.read()
    if closed:
        assert report.already_final
        assert plain == data
    else:
        complete = (point - start) // ENC_CHUNK_SIZE
        assert plain == data[: complete * CHUNK_SIZE]
        assert report.plaintext_size == len(plain)
    assert journal.pending() == []


@settings(max_examples=30, deadline=None, suppress_health_check=FIXTURES)
@given(chunks=st.integers(2, 6), pair=st.tuples(st.integers(0, 5), st.integers(0, 5)))
def test_swapped_chunks_are_named(
    chunks: int, pair: tuple[int, int], identity: X25519Identity
) -> None:
    a, b = sorted(x % chunks for x in pair)
    if a == b:
        return
    ciphertext = encrypt_bytes(os.urandom(chunks * CHUNK_SIZE - 1), [identity.recipient()])
    start = len(read_header(io.BytesIO(ciphertext)).raw) + 16
    parts = [
        ciphertext[start + i * ENC_CHUNK_SIZE : start + (i + 1) * ENC_CHUNK_SIZE]
        for i in range(chunks)
    ]
    parts[a], parts[b] = parts[b], parts[a]
    with pytest.raises(AgeError) as caught:
        AgeReader(io.BytesIO(ciphertext[:start] + b"".join(parts)), [identity]).verify()
    if b != chunks - 1:  # the last chunk is short: swapping it changes the file's geometry
        assert isinstance(caught.value, ChunkOrderError)
        assert (caught.value.chunk, caught.value.belongs_at) == (a, b)


def test_plaintext_never_reaches_the_disk(tmp_path: Path, identity: X25519Identity) -> None:
    marker = b"PLAINTEXT-AUDIO-MARKER-" * 64
    journal = KeyJournal(tmp_path / "keys", require_volatile=False)
    writer = AgeWriter.create(tmp_path / "call.age", [identity.recipient()], journal=journal)
    for _ in range(300):
        writer.write(marker)
        for item in tmp_path.rglob("*"):
            if item.is_file():
                assert b"MARKER" not in item.read_bytes()
    writer.close()
    for item in tmp_path.rglob("*"):
        if item.is_file():
            assert b"MARKER" not in item.read_bytes()


@pytest.mark.slow
def test_every_byte_position_and_header_value_is_protected(identity: X25519Identity) -> None:
    """Exhaustive: a bit flip at every position of a two-chunk file, and every value at every
    header position, is refused (about 30 s; `pytest -m slow`)."""
    ciphertext = encrypt_bytes(os.urandom(CHUNK_SIZE + 100), [identity.recipient()])
    header_end = len(read_header(io.BytesIO(ciphertext)).raw)
    trials = [(position, 1) for position in range(len(ciphertext))]
    trials += [(p, x) for p in range(header_end) for x in range(2, 256)]
    for position, xor in trials:
        damaged = bytearray(ciphertext)
        damaged[position] ^= xor
        try:
            AgeReader(io.BytesIO(bytes(damaged)), [identity]).verify()
        except AgeError:
            continue
        raise AssertionError(f"byte {position} ^ {xor:#x} went unnoticed")
