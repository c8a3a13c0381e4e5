"""Recorder throughput: how many simultaneous recorded calls one core sustains.

Each simulated call is what the box does per recorded call after the relay's tap: parse both
directions' RTP (50 packets/s each), align and decode them (:class:`RecorderCore`), emit the
stereo PCM every 100 ms, encrypt it with the age writer and write it to a file (page cache,
fsync at create and close as in production). The clock is simulated, the CPU time is real
(``time.process_time``): calls per core = 1 / (CPU seconds per second of recorded call).
"""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import pytest
from support.bench import report

from pbx.recording.age import AgeWriter, X25519Identity
from pbx.recording.recorder import RecorderCore, Side
from pbx.recording.wav import wav_header

pytestmark = [pytest.mark.bench]

SECONDS = 10  # simulated call time
PACKETS = 50  # per second and direction (20 ms)


def packets(ssrc: int) -> list[bytes]:
    payload = os.urandom(160)
    return [
        struct.pack("!BBHII", 0x80, 0, i & 0xFFFF, i * 160, ssrc) + payload
        for i in range(SECONDS * PACKETS)
    ]


def run(calls: int, folder: Path) -> dict[str, object]:
    recipient = X25519Identity.generate().recipient()
    caller, callee = packets(1), packets(2)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    writers = []
    cores = []
    for n in range(calls):
        writer = AgeWriter.create(folder / f"{calls}-{n}.wav.age", [recipient], keep_head=True)
        writer.write(wav_header(None))
        writers.append(writer)
        cores.append(RecorderCore())
    setup_cpu = time.process_time() - cpu0
    cpu1 = time.process_time()
    for tick in range(SECONDS * 10):  # the recorder drains its tap every 100 ms
        now = tick * 0.1
        for core, writer in zip(cores, writers, strict=True):
            for i in range(tick * 5, tick * 5 + 5):
                core.feed(Side.CALLER, now, caller[i])
                core.feed(Side.CALLEE, now, callee[i])
            writer.write(core.advance(now))
    steady_cpu = time.process_time() - cpu1
    cpu2 = time.process_time()
    for core, writer in zip(cores, writers, strict=True):
        writer.write(core.finish())
        writer.close(wav_header(core.frames * 4))
    close_cpu = time.process_time() - cpu2
    per_call_second = steady_cpu / (calls * SECONDS)
    return {
        "calls": calls,
        "simulated s": SECONDS,
        "wall s": time.perf_counter() - wall0,
        "steady cpu s": steady_cpu,
        "cpu us per call-second": per_call_second * 1e6,
        "cpu share per call %": per_call_second * 100,
        "calls per core": 1 / per_call_second,
        "create+close cpu ms per call": (setup_cpu + close_cpu) / calls * 1e3,
    }


def test_recorder_throughput(tmp_path: Path) -> None:
    rows = [run(calls, tmp_path) for calls in (50, 500)]
    report("recorder", rows)
    # The target: at least 500 recorded calls on one core, with encryption.
    assert rows[-1]["calls per core"] >= 500  # type: ignore[operator]
