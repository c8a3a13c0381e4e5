"""G.711 μ-law and A-law (ITU-T G.711), between 16-bit signed little-endian linear PCM and
8-bit codes. Table-driven: decoding is two ``bytes.translate`` calls, encoding one lookup per
sample in a 64 KiB table indexed by the raw 16-bit sample; no ``audioop``.

The values are those of the ITU-T G.191 reference software (``ulaw_compress``/``ulaw_expand``,
``alaw_compress``/``alaw_expand``): a negative sample is encoded by the magnitude of its one's
complement, and decoding returns the middle of the quantisation interval. Silence is 0xFF
(μ-law) and 0xD5 (A-law).
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_left
from collections.abc import Callable

__all__ = [
    "ALAW_TO_LINEAR",
    "ULAW_TO_LINEAR",
    "alaw_decode",
    "alaw_encode",
    "alaw_to_linear",
    "linear_to_alaw",
    "linear_to_ulaw",
    "ulaw_decode",
    "ulaw_encode",
    "ulaw_to_linear",
]

_ULAW_BIAS = 0x84  # 132: puts the segment boundaries on powers of two
_ULAW_CLIP = 32635  # largest magnitude that stays in range after the bias


def linear_to_ulaw(sample: int) -> int:
    """One 16-bit sample to a μ-law code (the reference computation behind the table)."""
    if sample >= 0:
        magnitude, sign = sample, 0x80
    else:
        magnitude, sign = ~sample, 0x00
    biased = min(magnitude, _ULAW_CLIP) + _ULAW_BIAS
    exponent = biased.bit_length() - 8  # segment 0..7: 132..255, 256..511, ...
    mantissa = (biased >> (exponent + 3)) & 0x0F
    return sign | (0x7F ^ ((exponent << 4) | mantissa))


def ulaw_to_linear(code: int) -> int:
    """One μ-law code to a 16-bit sample."""
    inverted = ~code & 0xFF
    exponent = (inverted >> 4) & 0x07
    magnitude = ((((inverted & 0x0F) << 3) + _ULAW_BIAS) << exponent) - _ULAW_BIAS
    return -magnitude if inverted & 0x80 else magnitude


def linear_to_alaw(sample: int) -> int:
    """One 16-bit sample to an A-law code (13-bit magnitude, even bits inverted)."""
    if sample >= 0:
        magnitude, toggle = sample >> 3, 0xD5
    else:
        magnitude, toggle = ~sample >> 3, 0x55
    segment = max(magnitude.bit_length() - 5, 0)  # segments 0 and 1 share the finest step
    mantissa = (magnitude >> (segment if segment > 1 else 1)) & 0x0F
    return ((segment << 4) | mantissa) ^ toggle


def alaw_to_linear(code: int) -> int:
    """One A-law code to a 16-bit sample."""
    value = code ^ 0x55
    segment = (value >> 4) & 0x07
    magnitude = ((value & 0x0F) << 4) + 8  # middle of the interval
    if segment:
        magnitude = (magnitude + 0x100) << (segment - 1)
    return magnitude if value & 0x80 else -magnitude


#: Decoded value of every code, indexable by the code.
ULAW_TO_LINEAR: tuple[int, ...] = tuple(ulaw_to_linear(c) for c in range(256))
ALAW_TO_LINEAR: tuple[int, ...] = tuple(alaw_to_linear(c) for c in range(256))


def _translations(decoded: tuple[int, ...]) -> tuple[bytes, bytes]:
    raw = [v & 0xFFFF for v in decoded]
    return bytes(v & 0xFF for v in raw), bytes(v >> 8 for v in raw)


_ULAW_LOW, _ULAW_HIGH = _translations(ULAW_TO_LINEAR)
_ALAW_LOW, _ALAW_HIGH = _translations(ALAW_TO_LINEAR)


def _encode_table(encode: Callable[[int], int], decoded: tuple[int, ...]) -> bytes:
    """The encoder as a table indexed by the sample's raw 16 bits.

    The quantiser is monotone: walking the samples upwards, (decoded value, sign bit) of the
    code never decreases, so every code owns one run of samples. Binary searches find where
    each run starts, instead of encoding all 65536 samples at import (a 50 ms stall).
    """

    def rank(code: int) -> tuple[int, int]:
        return decoded[code], code & 0x80

    samples = range(-(1 << 15), 1 << 15)
    codes = sorted(range(256), key=rank)
    starts = [bisect_left(samples, rank(c), key=lambda s: rank(encode(s))) for c in codes]
    table = bytearray(1 << 16)
    for code, start, stop in zip(codes, starts, [*starts[1:], len(samples)], strict=True):
        first = samples[start] & 0xFFFF  # runs never straddle -1/0: the sign bit differs
        table[first : first + stop - start] = bytes((code,)) * (stop - start)
    return bytes(table)


_ULAW_ENCODE = _encode_table(linear_to_ulaw, ULAW_TO_LINEAR)
_ALAW_ENCODE = _encode_table(linear_to_alaw, ALAW_TO_LINEAR)


def _samples(pcm: bytes | bytearray) -> memoryview | array[int]:
    if len(pcm) % 2:
        raise ValueError("16-bit PCM must have an even number of bytes")
    if sys.byteorder == "little":
        return memoryview(pcm).cast("H")
    swapped = array("H", pcm)
    swapped.byteswap()
    return swapped


def _decode(codes: bytes | bytearray, low: bytes, high: bytes) -> bytes:
    out = bytearray(2 * len(codes))
    out[0::2] = codes.translate(low)
    out[1::2] = codes.translate(high)
    return bytes(out)


def ulaw_decode(codes: bytes | bytearray) -> bytes:
    """μ-law codes to 16-bit little-endian PCM (two bytes per code)."""
    return _decode(codes, _ULAW_LOW, _ULAW_HIGH)


def alaw_decode(codes: bytes | bytearray) -> bytes:
    """A-law codes to 16-bit little-endian PCM."""
    return _decode(codes, _ALAW_LOW, _ALAW_HIGH)


def ulaw_encode(pcm: bytes | bytearray) -> bytes:
    """16-bit little-endian PCM to μ-law codes (one per sample)."""
    return bytes(map(_ULAW_ENCODE.__getitem__, _samples(pcm)))


def alaw_encode(pcm: bytes | bytearray) -> bytes:
    """16-bit little-endian PCM to A-law codes."""
    return bytes(map(_ALAW_ENCODE.__getitem__, _samples(pcm)))
