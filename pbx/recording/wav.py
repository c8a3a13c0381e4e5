"""The recordings' WAV container: 16-bit PCM, 8 kHz, stereo (caller left, callee right).

A recording is streamed into an age file while the call runs, so its lengths are unknown when
the header is written. The recorder writes a *streaming* header first (RIFF and data sizes
0xFFFFFFFF, which sox, ffmpeg and libsndfile read as "up to the end of the file") and puts the
real sizes in at the end: the age writer re-seals chunk 0 with the final header at close, and
crash recovery and disk-full salvage pass :func:`header_for_plaintext` so the finalized file
gets the sizes of what it kept. A reader that meets a streaming header anyway (a file exported
by hand from a half-written recording) can call :func:`fix_header`.
"""

from __future__ import annotations

import struct

__all__ = [
    "BYTES_PER_FRAME",
    "CHANNELS",
    "HEADER_SIZE",
    "SAMPLE_RATE",
    "STREAMING_SIZE",
    "WavError",
    "fix_header",
    "header_for_plaintext",
    "parse_header",
    "wav_header",
]

SAMPLE_RATE = 8000
CHANNELS = 2
SAMPLE_WIDTH = 2
BYTES_PER_FRAME = CHANNELS * SAMPLE_WIDTH
HEADER_SIZE = 44
STREAMING_SIZE = 0xFFFFFFFF
_MAX_DATA = 0xFFFFFFFF - 36


class WavError(ValueError):
    """The bytes are not a WAV file of the recorder's format."""


def wav_header(
    data_size: int | None, *, rate: int = SAMPLE_RATE, channels: int = CHANNELS
) -> bytes:
    """A canonical 44-byte PCM header; ``data_size`` None gives the streaming header."""
    if data_size is None:
        riff = data = STREAMING_SIZE
    else:
        if data_size < 0 or data_size % (channels * SAMPLE_WIDTH):
            raise ValueError(f"data_size {data_size} is not a whole number of frames")
        data = min(data_size, _MAX_DATA)  # > 4 GiB (150 h at 8 kHz stereo): stay streaming
        riff = data + 36
    block = channels * SAMPLE_WIDTH
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        riff,
        b"WAVE",
        b"fmt ",
        16,
        1,  # PCM
        channels,
        rate,
        rate * block,
        block,
        8 * SAMPLE_WIDTH,
        b"data",
        data,
    )


def header_for_plaintext(plaintext_size: int) -> bytes:
    """The header for a recording whose whole plaintext (header included) is this long;
    for :func:`pbx.recording.age.recover` and ``AgeWriter.salvage``."""
    audio = max(plaintext_size - HEADER_SIZE, 0)
    return wav_header(audio - audio % BYTES_PER_FRAME)


def parse_header(data: bytes) -> tuple[int, int, int | None]:
    """(channels, rate, data size or None when streaming) of a header this module writes."""
    if len(data) < HEADER_SIZE:
        raise WavError("shorter than a WAV header")
    fields = struct.unpack("<4sI4s4sIHHIIHH4sI", data[:HEADER_SIZE])
    riff, _, wave, fmt, fmt_size, pcm, channels, rate, _, _, bits, tag, size = fields
    if (riff, wave, fmt, tag) != (b"RIFF", b"WAVE", b"fmt ", b"data") or fmt_size != 16:
        raise WavError("not a canonical RIFF/WAVE header")
    if pcm != 1 or bits != 16:
        raise WavError("not 16-bit PCM")
    return channels, rate, None if size == STREAMING_SIZE else size


def fix_header(wav: bytes) -> bytes:
    """The same file with sizes that match its length (a streaming header made exact)."""
    channels, rate, _ = parse_header(wav)
    audio = len(wav) - HEADER_SIZE
    audio -= audio % (channels * SAMPLE_WIDTH)
    head = wav_header(audio, rate=rate, channels=channels)
    return head + wav[HEADER_SIZE : HEADER_SIZE + audio]
