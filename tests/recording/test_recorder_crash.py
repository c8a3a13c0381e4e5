"""Crash safety end to end: ``kill -9`` of ``edgepbx run`` (all its processes, or only the
core) in the middle of a recorded call, then ``edgepbx recordings recover`` (or the restarted
core): the partial file becomes a valid age file holding every
complete chunk (stock ``age -d`` opens it, the WAV's sizes are right, both tones are there),
the recording and the call record say ``incomplete``, and the audit log says so too. Also the
same recovery done automatically when the box starts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.agetool import age, keygen, needs_age
from support.daemon import BoxDaemon, put_binding
from support.recording_box import agent, read_wav, talk, udp_socket
from support.tones import tone_seconds

from appliance.daemon import prepare_data
from appliance.recordings import open_recordings, start_box_recording
from appliance.store import open_store
from pbx.recording.age import CHUNK_SIZE, AgeWriter, X25519Recipient
from pbx.recording.catalog import RecordingInfo, RecordingState
from pbx.recording.service import RecordingSettings, relative_path
from pbx.recording.wav import HEADER_SIZE, wav_header
from pbx.sip.events import Peer

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

EDGEPBX = [sys.executable, "-m", "appliance.cli"]


def edgepbx(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EDGEPBX, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def ready(fields: dict[str, str]) -> bool:
    return fields.get("READY") == "1"


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"  # a zombie holds no files (nor locks) any more


async def recorded_call_then_kill(
    tmp_path: Path, journal: Path, recipient: str, *, whole_box: bool
) -> tuple[Path, BoxDaemon]:
    """``edgepbx run`` records a call; both phones send their tone for 3 s, then
    ``kill -9``: of the core process (the supervisor restarts it), or of every process of
    the box (``whole_box``)."""
    data = tmp_path / "data"
    socks = udp_socket(), udp_socket()
    callee = await agent(socks[1].getsockname()[1])
    caller = await agent(socks[0].getsockname()[1])
    demo = dict(prepare_data(data, "edgepbx.local"))
    put_binding(data, "102", "127.0.0.1", callee.endpoint.local("UDP")[1])
    extra = ["--record", "both", "--recipient", recipient, "--journal", str(journal)]
    box = BoxDaemon(data, extra=extra)
    try:
        await asyncio.to_thread(box.wait_notify, ready)
        peer = Peer("UDP", "127.0.0.1", box.sip_port)
        call = await talk(
            peer, caller, callee, *socks, seconds=3.0, caller_hz=1000, callee_hz=600,
            hang_up=False, linger=30, password=demo["101"],
        )  # fmt: skip
        assert isinstance(call, asyncio.Future)
        # The box holds the folder while it runs: recovery from outside is refused.
        refused = edgepbx("recordings", "--data", data, "--journal", journal, "recover")
        assert refused.returncode == 1 and "running box" in refused.stderr
        parts = box.children()
        victims = list(parts.values()) if whole_box else [parts["core"]]
        if whole_box:
            # Freeze the supervisor first: it neither restarts the core nor, by dying first,
            # lets its children stop gracefully (they would finalize the file themselves).
            os.kill(box.process.pid, signal.SIGSTOP)
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):  # a part that had just exited
                os.kill(pid, signal.SIGKILL)  # mid-call, mid-chunk
        if whole_box:
            os.kill(box.process.pid, signal.SIGKILL)
            victims.append(box.process.pid)
        for _ in range(100):
            if all(gone(pid) for pid in victims):
                break
            await asyncio.sleep(0.05)
        call.cancel()
    except BaseException:
        box.close()
        raise
    finally:
        for ua in (caller, callee):
            await ua.close()
        for sock in socks:
            sock.close()
    return data, box


def check_recovered(data: Path, journal: Path, identity: Path) -> None:
    """One incomplete recording holding exactly its complete chunk, its call record and its
    audit trail, a clean verify, and audio that stock age decrypts with both tones."""
    store = open_store(data)
    try:
        recordings = open_recordings(store, data, journal_dir=journal)
        (info,) = recordings.catalog.list()
        assert info.state is RecordingState.INCOMPLETE
        # Whole chunks only (the timeline runs on in silence after the tone until the kill).
        plaintext = HEADER_SIZE + round(info.duration * 8000) * 4
        assert plaintext % CHUNK_SIZE == 0 and plaintext >= CHUNK_SIZE
        (record,) = store.cdr.search()
        assert (record.recording_ref, record.recording_state) == (info.id, "incomplete")
        assert record.caller_number == "101" and record.callee_number == "102"
        actions = [e.action for e in store.audit.events(target=info.id)]
        assert actions == ["recording.started", "recording.recovered"]
        path = recordings.path(info)
    finally:
        store.close()
    assert not list(journal.iterdir())  # the file key is gone from the journal
    verified = edgepbx("recordings", "--data", data, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "1 recordings checked; audit chain ok" in verified.stdout
    wav = read_wav(age("-d", "-i", identity, path))
    assert wav.frames == (plaintext - HEADER_SIZE) // 4
    assert tone_seconds(wav.left, 1000) >= 1.5 and tone_seconds(wav.right, 600) >= 1.5


@needs_age
async def test_kill_9_of_the_box_then_edgepbx_recordings_recover(
    tmp_path: Path, volatile_dir: Path
) -> None:
    identity = tmp_path / "site.txt"
    recipient = keygen(identity)
    data, box = await recorded_call_then_kill(tmp_path, volatile_dir, recipient, whole_box=True)
    box.close()
    assert len(list(volatile_dir.iterdir())) == 1  # the file key of the unfinished recording
    done = edgepbx("recordings", "--data", data, "--journal", volatile_dir, "recover")
    assert done.returncode == 0, done.stderr
    assert "1 recordings recovered" in done.stdout
    check_recovered(data, volatile_dir, identity)


@needs_age
async def test_kill_9_of_the_core_then_it_recovers_when_restarted(
    tmp_path: Path, volatile_dir: Path
) -> None:
    identity = tmp_path / "site.txt"
    recipient = keygen(identity)
    data, box = await recorded_call_then_kill(tmp_path, volatile_dir, recipient, whole_box=False)
    try:
        # The supervisor restarts the core; it finalizes the recording before taking calls.
        await asyncio.to_thread(box.wait_notify, lambda f: "core failed" in f.get("STATUS", ""))
        for _ in range(300):
            store = open_store(data)
            try:
                rows = open_recordings(store, data, journal_dir=volatile_dir).catalog.list()
            finally:
                store.close()
            if rows and rows[0].state is RecordingState.INCOMPLETE:
                break
            await asyncio.sleep(0.1)
        box.process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(box.process.wait, 30) == 0
    finally:
        box.close()
    check_recovered(data, volatile_dir, identity)


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
