"""Recording encryption cost: our age writer against the stock ``age`` binary on the same data,
and what one recorded call costs (a stereo 8 kHz 16-bit stream written in 20 ms frames)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from support.agetool import keygen, needs_age
from support.bench import report

from pbx.recording.age import AgeReader, AgeWriter, X25519Identity, X25519Recipient

pytestmark = [pytest.mark.bench, needs_age]

SIZE = 64 << 20
CALL_RATE = 8000 * 2 * 2  # bytes/s: stereo, 8 kHz, 16-bit
FRAME = CALL_RATE // 50  # 20 ms


def best_of(rounds: int, fn) -> float:  # type: ignore[no-untyped-def]
    """Best wall time of ``rounds`` runs of ``fn``."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def test_encryption_throughput_and_cost_per_call(tmp_path: Path) -> None:
    identity_file = tmp_path / "id.txt"
    recipient = X25519Recipient.from_string(keygen(identity_file))
    plain = tmp_path / "plain"
    data = os.urandom(SIZE)
    plain.write_bytes(data)
    out = tmp_path / "out.age"

    def ours_bulk() -> None:
        out.unlink(missing_ok=True)
        with AgeWriter.create(out, [recipient]) as writer:
            for start in range(0, SIZE, 1 << 20):
                writer.write(data[start : start + (1 << 20)])

    def ours_frames() -> None:
        out.unlink(missing_ok=True)
        view = memoryview(data)[: 16 << 20]
        with AgeWriter.create(out, [recipient]) as writer:
            for start in range(0, len(view), FRAME):
                writer.write(view[start : start + FRAME])

    def stock() -> None:
        subprocess.run(
            ["age", "-r", str(recipient), "-o", str(out), str(plain)], check=True, env={}
        )
        out.unlink()

    identity = X25519Identity.generate()
    enc = tmp_path / "read.age"
    with AgeWriter.create(enc, [identity.recipient()]) as writer:
        writer.write(data)

    def ours_read() -> None:
        with AgeReader.open(enc, [identity]) as reader:
            for _ in reader.iter_range(0, reader.size):
                pass

    def ours_memory() -> None:
        writer = AgeWriter(_Discard(), [recipient])  # type: ignore[arg-type]
        for start in range(0, SIZE, 1 << 20):
            writer.write(data[start : start + (1 << 20)])
        writer.close()

    mb = SIZE / 1e6
    rows: list[dict[str, object]] = [
        {"what": "encrypt, ours, to a discarding sink", "value": mb / best_of(3, ours_memory)},
        {"what": "encrypt, ours, 1 MiB writes, file + fsync", "value": mb / best_of(3, ours_bulk)},
        {"what": "encrypt, ours, 640-byte frames, file", "value": 16.78 / best_of(3, ours_frames)},
        {"what": "encrypt, stock age -r (Go), file", "value": mb / best_of(3, stock)},
        {"what": "decrypt+verify, ours, page cache", "value": mb / best_of(3, ours_read)},
    ]
    for row in rows:
        row["unit"] = "MB/s"

    # One call: 60 s of audio in 20 ms frames; CPU time of this process (encryption, hashing,
    # the write syscalls), not wall time: the writer never waits for the disk.
    seconds = 60
    audio = memoryview(data)[: CALL_RATE * seconds]
    cpu = float("inf")
    for _ in range(3):
        out.unlink(missing_ok=True)
        start = time.process_time()
        with AgeWriter.create(out, [recipient, X25519Identity.generate().recipient()]) as writer:
            for offset in range(0, len(audio), FRAME):
                writer.write(audio[offset : offset + FRAME])
        cpu = min(cpu, time.process_time() - start)
    share = cpu / seconds
    rows.append(
        {"what": "one recorded call, 2 recipients", "value": 1e6 * share, "unit": "µs CPU/s"}
    )
    rows.append(
        {"what": "recorded calls per core (file layer)", "value": 1 / share, "unit": "calls"}
    )

    # 500 calls at once, interleaved as the recorder sees them: one 20 ms frame per call per
    # tick, 10 s of audio each, into 500 files (500 live 64 KiB buffers: cache pressure).
    calls, ticks = 500, 500
    frame = bytes(memoryview(data)[:FRAME])
    folder = tmp_path / "calls"
    folder.mkdir()
    writers = [AgeWriter.create(folder / f"{n}.age", [recipient]) for n in range(calls)]
    start = time.process_time()
    for _ in range(ticks):
        for writer in writers:
            writer.write(frame)
    busy = time.process_time() - start
    start = time.process_time()
    for writer in writers:
        writer.close()
    closing = time.process_time() - start
    audio_seconds = ticks * 0.02
    rows.append(
        {
            "what": f"{calls} concurrent calls: CPU per second of audio, all calls",
            "value": 1e3 * busy / audio_seconds,
            "unit": "ms CPU/s",
        }
    )
    rows.append(
        {
            "what": f"{calls} concurrent calls: close (fsync) each",
            "value": 1e3 * closing / calls,
            "unit": "ms CPU",
        }
    )
    report("recording_encryption", rows)


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)

    def flush(self) -> None:
        pass
