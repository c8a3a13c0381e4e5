"""Crash safety end to end: ``kill -9`` of ``edgepbx run`` in the middle of a recorded call,
then ``edgepbx recordings recover``: the partial file becomes a valid age file holding every
complete chunk (stock ``age -d`` opens it, the WAV's sizes are right, both tones are there),
the recording and the call record say ``incomplete``, and the audit log says so too. Also the
same recovery done automatically when the box starts."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.agetool import age, keygen, needs_age
from support.recording_box import agent, read_wav, register, talk, tone_seconds, udp_socket
from support.sipp import free_port

from appliance.recordings import open_recordings, start_box_recording
from appliance.store import open_store
from pbx.recording.age import CHUNK_SIZE, AgeWriter, X25519Recipient
from pbx.recording.catalog import RecordingInfo, RecordingState
from pbx.recording.service import RecordingSettings, relative_path
from pbx.recording.wav import HEADER_SIZE, wav_header
from pbx.sip.events import Peer

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

EDGEPBX = str(Path(sys.executable).parent / "edgepbx")


def edgepbx(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EDGEPBX, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def start_box(data: Path, journal: Path, port: int, recipient: str) -> subprocess.Popen[str]:
    box = subprocess.Popen(
        [EDGEPBX, "run", "--port", str(port), "--data", str(data), "--record", "both",
         "--recipient", recipient, "--journal", str(journal)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    assert box.stdout is not None
    deadline = time.monotonic() + 30
    seen = []
    while time.monotonic() < deadline:
        line = box.stdout.readline()
        seen.append(line)
        if "is running" in line:
            return box
        if not line and box.poll() is not None:
            break
    box.kill()
    raise AssertionError("edgepbx run did not start:\n" + "".join(seen))


@needs_age
async def test_kill_9_mid_call_then_recover(tmp_path: Path, volatile_dir: Path) -> None:
    identity = tmp_path / "site.txt"
    recipient = keygen(identity)
    data, port = tmp_path / "data", free_port()
    box = start_box(data, volatile_dir, port, recipient)
    try:
        passwords = dict(
            line.split() for line in (data / "demo-credentials.txt").read_text().splitlines()
        )
        peer = Peer("UDP", "127.0.0.1", port)
        socks = udp_socket(), udp_socket()
        callee = await agent(socks[1].getsockname()[1])
        assert await register(callee, peer, "102", passwords["102"], "edgepbx.local") == 200
        caller = await agent(socks[0].getsockname()[1])
        call = await talk(
            peer, caller, callee, *socks, seconds=3.0, caller_hz=1000, callee_hz=600,
            hang_up=False, linger=30, password=passwords["101"],
        )  # fmt: skip
        assert isinstance(call, asyncio.Future)
        # The box holds the folder while it runs: recovery from outside is refused.
        refused = edgepbx("recordings", "--data", data, "--journal", volatile_dir, "recover")
        assert refused.returncode == 1 and "running box" in refused.stderr
        os.kill(box.pid, signal.SIGKILL)  # mid-call, mid-chunk
        box.wait(10)
        call.cancel()
        for ua in (caller, callee):
            await ua.close()
        for sock in socks:
            sock.close()
    finally:
        if box.poll() is None:
            box.kill()
            box.wait()
    assert len(list(volatile_dir.iterdir())) == 1  # the file key of the unfinished recording

    done = edgepbx("recordings", "--data", data, "--journal", volatile_dir, "recover")
    assert done.returncode == 0, done.stderr
    assert "1 recordings recovered" in done.stdout
    assert not list(volatile_dir.iterdir())

    store = open_store(data)
    try:
        recordings = open_recordings(store, data, journal_dir=volatile_dir)
        (info,) = recordings.catalog.list()
        assert info.state is RecordingState.INCOMPLETE
        # One complete chunk was flushed before the kill (3 s of audio is 1.5 chunks).
        assert info.duration == (CHUNK_SIZE - HEADER_SIZE) // 4 / 8000
        (record,) = store.cdr.search()
        assert (record.recording_ref, record.recording_state) == (info.id, "incomplete")
        assert record.caller_number == "101" and record.callee_number == "102"
        actions = [e.action for e in store.audit.events(target=info.id)]
        assert actions == ["recording.started", "recording.recovered"]
        path = recordings.path(info)
    finally:
        store.close()
    verified = edgepbx("recordings", "--data", data, "verify")
    assert verified.returncode == 0 and "1 recordings checked; audit chain ok" in verified.stdout
    wav = read_wav(age("-d", "-i", identity, path))
    assert wav.frames == (CHUNK_SIZE - HEADER_SIZE) // 4
    assert tone_seconds(wav.left, 1000) >= 1.5 and tone_seconds(wav.right, 600) >= 1.5


@needs_age
def test_the_box_recovers_at_start(tmp_path: Path, volatile_dir: Path) -> None:
    """What ``edgepbx run`` does first: a writer abandoned mid-file (as by ``kill -9``: the
    header, two sealed chunks, a torn third) is finalized and marked before calls start."""
    identity = tmp_path / "site.txt"
    recipient = X25519Recipient.from_string(keygen(identity))
    data = tmp_path / "data"
    store = open_store(data)
    try:
        recordings = open_recordings(store, data, journal_dir=volatile_dir)
        info = RecordingInfo(
            id="ab" * 16,
            call_id="call-1",
            path=relative_path("ab" * 16, time.time()),
            started_at=time.time(),
            caller_number="101",
            callee_number="102",
        )
        recordings.catalog.put(info)
        path = recordings.path(info)
        path.parent.mkdir(parents=True)
        writer = AgeWriter.create(path, [recipient], journal=recordings.journal, keep_head=True)
        writer.write(wav_header(None) + bytes(range(256)) * 1024)  # 256 KiB + 44
        writer.abort()
        with open(path, "r+b") as f:  # tear the last chunk
            f.truncate(path.stat().st_size - 1000)
        # Another box's recording in progress, sharing the journal: not ours to touch.
        foreign = tmp_path / "other-box" / "call.wav.age"
        foreign.parent.mkdir()
        live = AgeWriter.create(foreign, [recipient], journal=recordings.journal)
        live.write(bytes(3 * CHUNK_SIZE))
        foreign_size = foreign.stat().st_size
        box = start_box_recording(
            store, data, RecordingSettings(), recipients=[str(recipient)], journal_dir=volatile_dir
        )
        box.close()
        after = store.cdr.get("call-1")
        got = recordings.catalog.get(info.id)
        assert got is not None and got.state is RecordingState.INCOMPLETE
        assert after is not None and after.recording_state == "incomplete"
        assert [e.action for e in store.audit.events()] == ["recording.recovered"]
        assert foreign.stat().st_size == foreign_size and len(list(volatile_dir.iterdir())) == 1
        live.close()
    finally:
        store.close()
    plain = age("-d", "-i", identity, path)
    assert len(plain) == 3 * CHUNK_SIZE  # three whole chunks kept, the torn one cut
    assert read_wav(plain).frames == (3 * CHUNK_SIZE - HEADER_SIZE) // 4
