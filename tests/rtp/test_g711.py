"""G.711 against the ITU-T G.191 reference algorithm (transcribed below from its loop form,
independent of the module's formulation): all 256 codes, every 16-bit sample."""

from __future__ import annotations

import struct

import pytest

from pbx.rtp.g711 import (
    ALAW_TO_LINEAR,
    ULAW_TO_LINEAR,
    alaw_decode,
    alaw_encode,
    linear_to_alaw,
    linear_to_ulaw,
    ulaw_decode,
    ulaw_encode,
)

ALL_SAMPLES = range(-32768, 32768)
ALL_PCM = struct.pack(f"<{len(ALL_SAMPLES)}h", *ALL_SAMPLES)


# --------------------------------------------------- G.191 reference (g711.c), one sample each


def ref_alaw_compress(x: int) -> int:
    ix = (~x if x < 0 else x) >> 4  # 1's complement for negatives; 0 <= ix < 2048
    if ix > 15:
        iexp = 1
        while ix > 16 + 15:
            ix >>= 1
            iexp += 1
        ix -= 16
        ix += iexp << 4
    if x >= 0:
        ix |= 0x80
    return ix ^ 0x55


def ref_alaw_expand(code: int) -> int:
    ix = (code ^ 0x55) & 0x7F
    iexp = ix >> 4
    mant = ix & 0x0F
    if iexp > 0:
        mant += 16
    mant = (mant << 4) + 0x08
    if iexp > 1:
        mant <<= iexp - 1
    return mant if code > 127 else -mant


def ref_ulaw_compress(x: int) -> int:
    absno = ((~x if x < 0 else x) >> 2) + 33
    absno = min(absno, 0x1FFF)
    i = absno >> 6
    segno = 1
    while i:
        segno += 1
        i >>= 1
    high = 8 - segno
    low = 0x0F - ((absno >> segno) & 0x0F)
    code = (high << 4) | low
    return code | 0x80 if x >= 0 else code


def ref_ulaw_expand(code: int) -> int:
    sign = -1 if code < 0x80 else 1
    mantissa = ~code
    exponent = (mantissa >> 4) & 0x07
    segment = exponent + 1
    mantissa &= 0x0F
    step = 4 << segment
    return sign * ((0x80 << exponent) + step * mantissa + step // 2 - 4 * 33)


# ----------------------------------------------------------------------------------- tests


def test_decode_tables_match_the_reference_for_all_256_codes() -> None:
    assert [ref_ulaw_expand(c) for c in range(256)] == list(ULAW_TO_LINEAR)
    assert [ref_alaw_expand(c) for c in range(256)] == list(ALAW_TO_LINEAR)


def test_decode_bytes_for_all_256_codes() -> None:
    codes = bytes(range(256))
    assert ulaw_decode(codes) == struct.pack("<256h", *map(ref_ulaw_expand, codes))
    assert alaw_decode(codes) == struct.pack("<256h", *map(ref_alaw_expand, codes))


def test_encode_matches_the_reference_for_every_16_bit_sample() -> None:
    assert ulaw_encode(ALL_PCM) == bytes(map(ref_ulaw_compress, ALL_SAMPLES))
    assert alaw_encode(ALL_PCM) == bytes(map(ref_alaw_compress, ALL_SAMPLES))
    assert bytes(map(linear_to_ulaw, ALL_SAMPLES)) == bytes(map(ref_ulaw_compress, ALL_SAMPLES))
    assert bytes(map(linear_to_alaw, ALL_SAMPLES)) == bytes(map(ref_alaw_compress, ALL_SAMPLES))


def test_known_values() -> None:
    assert ulaw_encode(b"\x00\x00") == b"\xff"  # silence
    assert alaw_encode(b"\x00\x00") == b"\xd5"
    assert ULAW_TO_LINEAR[0x00] == -32124 and ULAW_TO_LINEAR[0x80] == 32124
    assert ULAW_TO_LINEAR[0xFF] == ULAW_TO_LINEAR[0x7F] == 0
    assert ALAW_TO_LINEAR[0xD5] == 8 and ALAW_TO_LINEAR[0x55] == -8
    assert ALAW_TO_LINEAR[0xAA] == 32256 and ALAW_TO_LINEAR[0x2A] == -32256


def test_encoding_a_decoded_value_gives_the_code_back() -> None:
    # Decoding lands in the middle of each interval, so re-encoding is exact (except μ-law's
    # negative zero, 0x7F, which decodes to 0 and re-encodes as positive zero 0xFF).
    codes = bytes(range(256))
    assert alaw_encode(alaw_decode(codes)) == codes
    assert ulaw_encode(ulaw_decode(codes)) == codes.replace(b"\x7f", b"\xff")


def test_accepts_bytearray_and_rejects_odd_lengths() -> None:
    assert ulaw_encode(bytearray(b"\x00\x00\x10\x00")) == ulaw_encode(b"\x00\x00\x10\x00")
    assert ulaw_decode(b"") == b"" and ulaw_encode(b"") == b""
    with pytest.raises(ValueError, match="even"):
        alaw_encode(b"\x00\x00\x00")


def test_a_20ms_frame() -> None:
    pcm = struct.pack("<160h", *(int(8000 * ((i % 40) - 20) / 20) for i in range(160)))
    frame = ulaw_encode(pcm)
    assert len(frame) == 160
    assert len(ulaw_decode(frame)) == 320
