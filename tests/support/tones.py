"""Tone analysis for the tests that check audio arrived (no numpy in the venv, so one
Goertzel bin at a time)."""

from __future__ import annotations

import math
import struct

RATE = 8000  # G.711's clock


def goertzel_power(block: list[int], hz: float, rate: int = RATE) -> float:
    """Power of ``block`` at ``hz``."""
    coeff = 2 * math.cos(2 * math.pi * hz / rate)
    s1 = s2 = 0.0
    for x in block:
        s1, s2 = x + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


def tone_seconds(samples: list[int], hz: float, rate: int = RATE) -> float:
    """How long ``hz`` is there: 20 ms blocks whose energy is mostly at ``hz``.
    For a pure sine of amplitude A over N samples, the Goertzel power is (A N / 2)^2 and the
    block energy A^2 N / 2, so their ratio 2 P / (N E) is 1; silence, noise or another tone
    give ~0."""
    n = rate // 50
    found = 0
    for start in range(0, len(samples) - n + 1, n):
        block = samples[start : start + n]
        energy = sum(x * x for x in block)
        if energy > n * 100**2 and 2 * goertzel_power(block, hz, rate) / (n * energy) > 0.5:
            found += 1
    return found * n / rate


def sine_pcm(hz: float, seconds: float, amplitude: float, rate: int = RATE) -> bytes:
    """A sine as 16-bit little-endian PCM samples."""
    return b"".join(
        struct.pack("<h", round(amplitude * math.sin(2 * math.pi * hz * n / rate)))
        for n in range(round(seconds * rate))
    )
