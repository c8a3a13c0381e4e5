"""The age v1 format, in memory: round trips, random access, and every way a file can be wrong."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.imports import loaded

from pbx.recording.age import (
    CHUNK_SIZE,
    ENC_CHUNK_SIZE,
    AgeError,
    AgeFormatError,
    AgeReader,
    AgeWriter,
    ChunkAuthError,
    ChunkOrderError,
    HeaderMacError,
    NoIdentityError,
    ScryptIdentity,
    ScryptRecipient,
    Stanza,
    TrailingDataError,
    TruncatedError,
    WorkFactorError,
    X25519Identity,
    X25519Recipient,
    decrypt_bytes,
    encrypt_bytes,
    file_sha256,
    read_header,
)

SIZES = [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE, 7 * CHUNK_SIZE + 123]


def encrypt(
    data: bytes, recipients: list[X25519Recipient], splits: list[int] | None = None
) -> bytes:
    sink = io.BytesIO()
    writer = AgeWriter(sink, recipients)
    position = 0
    for size in splits or []:
        writer.write(data[position : position + size])
        position += size
    writer.write(data[position:])
    result = writer.close()
    out = sink.getvalue()
    assert result.ciphertext_size == len(out)
    assert result.plaintext_size == len(data)
    return out


def payload_start(ciphertext: bytes) -> int:
    return len(read_header(io.BytesIO(ciphertext)).raw) + 16


def open_reader(ciphertext: bytes, identity: X25519Identity) -> AgeReader:
    return AgeReader(io.BytesIO(ciphertext), [identity])


@pytest.mark.parametrize("size", SIZES)
def test_round_trip_at_chunk_boundaries(size: int, identity: X25519Identity) -> None:
    data = os.urandom(size)
    ciphertext = encrypt(data, [identity.recipient()])
    chunks = max(1, -(-size // CHUNK_SIZE))
    assert len(ciphertext) == payload_start(ciphertext) + size + 16 * chunks
    with open_reader(ciphertext, identity) as reader:
        assert reader.size == size
        assert reader.chunk_count == chunks
        assert reader.read() == data
        assert reader.verify() == size


def test_many_chunks_written_in_frames(identity: X25519Identity) -> None:
    # 20 ms stereo frames (640 bytes), as the recorder writes them: 100 chunks and a bit.
    data = os.urandom(100 * CHUNK_SIZE + 320)
    sink = io.BytesIO()
    writer = AgeWriter(sink, [identity.recipient()])
    for start in range(0, len(data), 640):
        writer.write(data[start : start + 640])
    result = writer.close()
    assert result.chunks == 101
    assert decrypt_bytes(sink.getvalue(), [identity]) == data


def test_full_chunks_reach_the_sink_as_they_fill(identity: X25519Identity) -> None:
    sink = io.BytesIO()
    writer = AgeWriter(sink, [identity.recipient()])
    start = len(sink.getvalue())
    writer.write(bytes(CHUNK_SIZE))
    assert len(sink.getvalue()) == start  # might still be the last chunk
    writer.write(b"x")
    assert len(sink.getvalue()) == start + ENC_CHUNK_SIZE
    writer.write(bytes(3 * CHUNK_SIZE))
    assert len(sink.getvalue()) == start + 4 * ENC_CHUNK_SIZE
    writer.close()


def test_file_sha256(tmp_path: Path, identity: X25519Identity) -> None:
    with AgeWriter.create(tmp_path / "r.age", [identity.recipient()]) as writer:
        writer.write(os.urandom(3 * CHUNK_SIZE))
    assert (
        file_sha256(tmp_path / "r.age")
        == hashlib.sha256((tmp_path / "r.age").read_bytes()).hexdigest()
    )


def test_write_result_hash_matches_file(identity: X25519Identity) -> None:
    sink = io.BytesIO()
    writer = AgeWriter(sink, [identity.recipient()])
    writer.write(os.urandom(200_000))
    result = writer.close()
    assert result.sha256 == hashlib.sha256(sink.getvalue()).hexdigest()
    with pytest.raises(ValueError, match="closed"):
        writer.write(b"more")


def test_several_recipients_each_open_it(
    identity: X25519Identity, other_identity: X25519Identity
) -> None:
    third = X25519Identity.generate()
    data = os.urandom(70_000)
    recipients = [identity.recipient(), other_identity.recipient(), third.recipient()]
    ciphertext = encrypt(data, recipients)
    assert len(read_header(io.BytesIO(ciphertext)).stanzas) == 3
    for who in (identity, other_identity, third):
        assert decrypt_bytes(ciphertext, [who]) == data


def test_scrypt_round_trip_and_wrong_passphrase() -> None:
    ciphertext = encrypt_bytes(b"secret", [ScryptRecipient("hunter2", work_factor=10)])
    assert decrypt_bytes(ciphertext, [ScryptIdentity("hunter2")]) == b"secret"
    with pytest.raises(NoIdentityError):
        decrypt_bytes(ciphertext, [ScryptIdentity("hunter3")])
    with pytest.raises(WorkFactorError):
        decrypt_bytes(ciphertext, [ScryptIdentity("hunter2", max_work_factor=9)])


def test_scrypt_recipient_must_be_alone(identity: X25519Identity) -> None:
    with pytest.raises(ValueError, match="only one"):
        encrypt_bytes(b"x", [ScryptRecipient("pw", work_factor=10), identity.recipient()])


def test_identity_and_recipient_strings(identity: X25519Identity) -> None:
    assert str(identity.recipient()).startswith("age1")
    assert identity.secret_string().startswith("AGE-SECRET-KEY-1")
    assert X25519Identity.from_string(identity.secret_string()).recipient() == identity.recipient()
    assert X25519Recipient.from_string(str(identity.recipient())) == identity.recipient()
    assert identity.secret_string() not in repr(identity)
    assert identity.recipient().fingerprint.startswith("sha256:")
    with pytest.raises(ValueError, match="recipient"):
        X25519Recipient.from_string(identity.secret_string())
    with pytest.raises(ValueError, match="identity"):
        X25519Identity.from_string(str(identity.recipient()))


# -- random access ------------------------------------------------------------------------------


def test_seek_decrypts_only_the_chunks_needed(identity: X25519Identity) -> None:
    data = os.urandom(10 * CHUNK_SIZE + 5)
    ciphertext = bytearray(encrypt(data, [identity.recipient()]))
    start = payload_start(bytes(ciphertext))
    # Destroy chunks 0..7: a read in chunk 8 must not touch them.
    ciphertext[start : start + 8 * ENC_CHUNK_SIZE] = bytes(8 * ENC_CHUNK_SIZE)
    with open_reader(bytes(ciphertext), identity) as reader:
        reader.seek(8 * CHUNK_SIZE + 100)
        assert reader.read(CHUNK_SIZE) == data[8 * CHUNK_SIZE + 100 : 9 * CHUNK_SIZE + 100]
        assert reader.tell() == 9 * CHUNK_SIZE + 100
        assert b"".join(reader.iter_range(9 * CHUNK_SIZE, None)) == data[9 * CHUNK_SIZE :]
        with pytest.raises(ChunkAuthError):
            reader.seek(0)
            reader.read(1)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    size=st.integers(0, 5 * CHUNK_SIZE),
    ranges=st.lists(
        st.tuples(st.integers(0, 6 * CHUNK_SIZE), st.integers(0, 6 * CHUNK_SIZE)), max_size=5
    ),
)
def test_random_access_reads_equal_slices(
    size: int, ranges: list[tuple[int, int]], identity: X25519Identity
) -> None:
    data = os.urandom(size)
    with open_reader(encrypt(data, [identity.recipient()]), identity) as reader:
        for a, b in ranges:
            start, stop = min(a, b, size), min(max(a, b), size)
            assert b"".join(reader.iter_range(start, stop)) == data[start:stop]
            reader.seek(a)
            assert reader.read(b) == data[a : a + b]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    size=st.integers(0, 4 * CHUNK_SIZE + 10),
    splits=st.lists(st.integers(0, CHUNK_SIZE + 1000), max_size=12),
)
def test_round_trip_any_size_any_write_split(
    size: int, splits: list[int], identity: X25519Identity
) -> None:
    data = os.urandom(size)
    assert decrypt_bytes(encrypt(data, [identity.recipient()], splits), [identity]) == data


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    size=st.sampled_from([0, 1, 1000, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE + 7]),
    where=st.floats(0, 1, exclude_max=True),
    xor=st.integers(1, 255),
    header_bias=st.booleans(),
)
def test_any_single_byte_corruption_is_detected(
    size: int, where: float, xor: int, header_bias: bool, identity: X25519Identity
) -> None:
    data = os.urandom(size)
    ciphertext = bytearray(
        encrypt(data, [identity.recipient(), X25519Identity.generate().recipient()])
    )
    span = payload_start(bytes(ciphertext)) if header_bias else len(ciphertext)
    position = int(where * span)
    ciphertext[position] ^= xor
    with pytest.raises(AgeError), open_reader(bytes(ciphertext), identity) as reader:
        reader.verify()


# -- refusals with distinct errors ----------------------------------------------------------------


@pytest.fixture
def three_chunks(identity: X25519Identity) -> tuple[bytes, bytes, int]:
    data = os.urandom(3 * CHUNK_SIZE - 10)
    ciphertext = encrypt(data, [identity.recipient()])
    return data, ciphertext, payload_start(ciphertext)


def test_wrong_key_is_refused(three_chunks: tuple[bytes, bytes, int]) -> None:
    _, ciphertext, _ = three_chunks
    with pytest.raises(NoIdentityError, match="wrong key"):
        open_reader(ciphertext, X25519Identity.generate())


def test_tampered_chunk_is_refused(
    three_chunks: tuple[bytes, bytes, int], identity: X25519Identity
) -> None:
    data, ciphertext, start = three_chunks
    tampered = bytearray(ciphertext)
    tampered[start + ENC_CHUNK_SIZE + 500] ^= 1
    with open_reader(bytes(tampered), identity) as reader:
        assert reader.read(CHUNK_SIZE) == data[:CHUNK_SIZE]  # chunk 0 is fine
        with pytest.raises(ChunkAuthError) as caught:
            reader.read(1)
        assert caught.value.chunk == 1


def test_reordered_chunks_are_refused(
    three_chunks: tuple[bytes, bytes, int], identity: X25519Identity
) -> None:
    _, ciphertext, start = three_chunks
    c0 = ciphertext[start : start + ENC_CHUNK_SIZE]
    c1 = ciphertext[start + ENC_CHUNK_SIZE : start + 2 * ENC_CHUNK_SIZE]
    swapped = ciphertext[:start] + c1 + c0 + ciphertext[start + 2 * ENC_CHUNK_SIZE :]
    with open_reader(swapped, identity) as reader, pytest.raises(ChunkOrderError) as caught:
        reader.verify()
    assert (caught.value.chunk, caught.value.belongs_at) == (0, 1)


def test_truncated_at_a_chunk_boundary_is_refused(
    three_chunks: tuple[bytes, bytes, int], identity: X25519Identity
) -> None:
    _, ciphertext, start = three_chunks
    with pytest.raises(TruncatedError, match="not the final one"):
        open_reader(ciphertext[: start + 2 * ENC_CHUNK_SIZE], identity)


@pytest.mark.parametrize("cut", [1, 15, 17, 1000])
def test_truncated_inside_the_last_chunk_is_refused(
    cut: int, three_chunks: tuple[bytes, bytes, int], identity: X25519Identity
) -> None:
    _, ciphertext, start = three_chunks
    with pytest.raises((TruncatedError, ChunkAuthError)):
        open_reader(ciphertext[: start + 2 * ENC_CHUNK_SIZE + cut], identity)


def test_truncated_header_and_empty_payload(
    three_chunks: tuple[bytes, bytes, int], identity: X25519Identity
) -> None:
    _, ciphertext, start = three_chunks
    with pytest.raises(TruncatedError, match="header"):
        open_reader(ciphertext[:50], identity)
    with pytest.raises(TruncatedError, match="nonce"):
        open_reader(ciphertext[: start - 3], identity)
    with pytest.raises(TruncatedError, match="no payload"):
        open_reader(ciphertext[:start], identity)


def test_trailing_data_is_refused(
    three_chunks: tuple[bytes, bytes, int], identity: X25519Identity
) -> None:
    _, ciphertext, start = three_chunks
    # A complete one-chunk file followed by one more (copied) chunk.
    small = encrypt(os.urandom(100), [identity.recipient()])
    extended = small + ciphertext[start : start + ENC_CHUNK_SIZE]
    with pytest.raises(AgeError):
        open_reader(extended, identity).verify()
    full = encrypt(os.urandom(CHUNK_SIZE), [identity.recipient()])
    with pytest.raises(TrailingDataError):
        open_reader(full + full[-ENC_CHUNK_SIZE:], identity).verify()


def test_altered_header_fails_the_mac(
    identity: X25519Identity, other_identity: X25519Identity
) -> None:
    ciphertext = encrypt(b"hello", [identity.recipient(), other_identity.recipient()])
    header = read_header(io.BytesIO(ciphertext))
    # Swap the two stanzas: both still unwrap, only the MAC notices.
    lines = header.raw.split(b"\n")
    swapped = b"\n".join([lines[0], lines[3], lines[4], lines[1], lines[2], *lines[5:]])
    with pytest.raises(HeaderMacError):
        decrypt_bytes(swapped + ciphertext[len(header.raw) :], [identity])


@pytest.mark.parametrize(
    ("mutation", "message"),
    [
        (lambda h: b"age-encryption.org/v2" + h[21:], "unsupported age version"),
        (lambda h: b"GIF89a" + h[6:], "not an age file"),
        (lambda h: h.replace(b"-> X25519 ", b"-> X25519  ", 1), "stanza arguments"),
        (lambda h: h.replace(b"\n--- ", b"\n---", 1), "MAC"),
        (lambda h: h.replace(b"\n-> X25519", b"\n-> X25519\nAAAA", 1), "base64"),
    ],
)
def test_malformed_headers_are_refused(mutation, message: str, identity: X25519Identity) -> None:  # type: ignore[no-untyped-def]
    ciphertext = encrypt(b"hello", [identity.recipient()])
    raw = read_header(io.BytesIO(ciphertext)).raw
    with pytest.raises(AgeFormatError, match=message):
        decrypt_bytes(mutation(raw) + ciphertext[len(raw) :], [identity])


def test_non_canonical_base64_is_refused(identity: X25519Identity) -> None:
    ciphertext = encrypt(b"hello", [identity.recipient()])
    raw = read_header(io.BytesIO(ciphertext)).raw
    mac_line = raw.rsplit(b"\n", 2)[1]
    # The last of 43 characters carries 2 unused bits: setting one keeps the bytes, breaks canon.
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(mac_line[-1:])
    bad_line = mac_line[:-1] + alphabet[last ^ 1 : (last ^ 1) + 1]
    with pytest.raises(AgeFormatError, match="non-canonical"):
        decrypt_bytes(raw.replace(mac_line, bad_line) + ciphertext[len(raw) :], [identity])


def test_format_modules_load_no_asyncio_or_sockets() -> None:
    code = "import pbx.recording.age, pbx.recording.journal, pbx.recording.bech32"
    assert loaded(code, ("asyncio", "socket", "selectors")) == []


class _GreaseRecipient:
    """A recipient that adds a stanza of a type nobody knows (as age's grease does)."""

    def __init__(self, inner: X25519Recipient) -> None:
        self.inner = inner

    def wrap(self, file_key: bytes) -> list[Stanza]:
        grease = Stanza("edgepbx-grease", ("x", "y+/="), os.urandom(100))
        return [grease, *self.inner.wrap(file_key)]


def test_unknown_stanza_types_are_skipped(identity: X25519Identity) -> None:
    ciphertext = encrypt_bytes(b"audio", [_GreaseRecipient(identity.recipient())])
    assert [s.type for s in read_header(io.BytesIO(ciphertext)).stanzas] == [
        "edgepbx-grease",
        "X25519",
    ]
    assert decrypt_bytes(ciphertext, [identity]) == b"audio"


def test_low_order_share_is_refused(identity: X25519Identity) -> None:
    stanza = Stanza("X25519", ("A" * 43,), bytes(32))  # the all-zero point
    with pytest.raises(AgeFormatError, match="invalid share"):
        identity.unwrap([stanza])
