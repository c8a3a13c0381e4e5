"""A real call through the box is recorded: two stack agents call each other (101 -> 102) with
RTP from UDP sockets, a different tone each way; the recording decrypts with the stock ``age``
tool, is a valid stereo WAV, and each tone is in its own channel for as long as it was sent.
Also: the policy, a full disk during a call, and what a call record says."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.agetool import age, keygen, needs_age
from support.recording_box import (
    finished,
    phones,
    read_wav,
    recording_box,
    send_rtp,
    tone,
)
from support.tones import tone_seconds

from pbx.recording.catalog import RecordingState
from pbx.recording.service import wants_recording
from pbx.recording.wav import HEADER_SIZE
from pbx.store import Disposition, RecordPolicy

pytestmark = [pytest.mark.interop, pytest.mark.timeout(90)]

CALLER_HZ, CALLEE_HZ = 1000.0, 600.0


@pytest.fixture
def site_key(tmp_path: Path) -> tuple[Path, str]:
    identity = tmp_path / "site-identity.txt"
    return identity, keygen(identity)


@needs_age
async def test_a_call_is_recorded_and_each_tone_lands_in_its_channel(
    tmp_path: Path, volatile_dir: Path, site_key: tuple[Path, str]
) -> None:
    identity, recipient = site_key
    async with recording_box(tmp_path / "data", volatile_dir, [recipient]) as box:
        async with phones(box.core, box.store) as pair:
            status = await pair.talk(seconds=2.5, caller_hz=CALLER_HZ, callee_hz=CALLEE_HZ)
            assert status == 200
            (record,) = box.store.cdr.search()
            info = await finished(box.recordings, record.call_id)

        # The metadata row: finalized, hashed, the recipient named; no audio, no key.
        assert info.state is RecordingState.COMPLETE
        path = box.recordings.path(info)
        ciphertext = path.read_bytes()
        assert info.size == len(ciphertext)
        assert info.sha256 == hashlib.sha256(ciphertext).hexdigest()
        assert info.caller_number == "101" and info.callee_number == "102"
        assert info.codec_note == "PCMU"
        assert len(info.recipients) == 1 and info.recipients[0].startswith("sha256:")
        assert info.path.endswith(f"/{info.id}.wav.age") and info.path.count("/") == 2
        assert not list(volatile_dir.iterdir())  # the journal forgot the file key at close
        # The call record points at it, with its state.
        record = box.store.cdr.get(record.call_id)
        assert record is not None and record.disposition is Disposition.ANSWERED
        assert (record.recording_ref, record.recording_state) == (info.id, "complete")
        # The audit chain has its lifecycle and is intact.
        actions = [e.action for e in box.store.audit.events(target=info.id)]
        assert actions == ["recording.started", "recording.finished"]
        assert box.recordings.verify().ok

    # The stock age tool decrypts it; the standard library's wave module reads it.
    plain = age("-d", "-i", identity, path)
    assert plain[:4] == b"RIFF" and not (path.parent / "x.wav").exists()
    wav = read_wav(plain)
    assert (wav.channels, wav.rate) == (2, 8000)
    assert wav.frames * 4 == len(plain) - HEADER_SIZE  # the header's sizes are exact
    assert abs(wav.frames / 8000 - info.duration) < 1e-6
    assert 2.5 <= info.duration <= 3.2  # 2.5 s of audio, plus the jitter window's lead-in
    left_1000, left_600 = tone_seconds(wav.left, CALLER_HZ), tone_seconds(wav.left, CALLEE_HZ)
    right_600, right_1000 = tone_seconds(wav.right, CALLEE_HZ), tone_seconds(wav.right, CALLER_HZ)
    assert 2.3 <= left_1000 <= 2.5 and left_600 == 0, (left_1000, left_600)
    assert 2.3 <= right_600 <= 2.5 and right_1000 == 0, (right_600, right_1000)
    # What the box replicates (metadata.db and its WAL) holds no audio and no key material.
    replicated = b"".join(
        p.read_bytes() for p in (tmp_path / "data").glob("metadata.db*") if p.is_file()
    )
    secret = identity.read_text().split("AGE-SECRET-KEY-")[1].split()[0]
    assert b"AGE-SECRET-KEY" not in replicated and secret.encode() not in replicated
    windows = [plain[at : at + 32] for at in range(HEADER_SIZE, len(plain) - 32, 997)]
    audible = [w for w in windows if len(set(w)) > 8]  # not silence
    assert len(audible) > 50
    assert not [w for w in audible if w in replicated]
    assert not [
        c for c in range(0, len(ciphertext) - 32, 997) if ciphertext[c : c + 32] in replicated
    ]
    # In step: both tones start within a packet or two of each other.
    first = [next(i for i, x in enumerate(ch) if abs(x) > 2000) for ch in (wav.left, wav.right)]
    assert abs(first[0] - first[1]) <= 320, first


async def test_policy_decides_which_calls_are_recorded(
    tmp_path: Path, volatile_dir: Path, site_key: tuple[Path, str]
) -> None:
    # An internal call is outbound for the caller and inbound for the callee.
    out, inb, both, none = (RecordPolicy(v) for v in ("outbound", "inbound", "both", "none"))
    assert wants_recording("none", out, none) and wants_recording("none", none, inb)
    assert wants_recording("none", both, None) and wants_recording("both", None, None)
    assert not wants_recording("none", inb, out) and not wants_recording("inbound", None, None)
    # Through the box: nobody asked for recording, so the call has none.
    _, recipient = site_key
    async with (
        recording_box(
            tmp_path / "data", volatile_dir, [recipient], caller_policy=RecordPolicy.INBOUND
        ) as box,
        phones(box.core, box.store) as pair,
    ):
        assert await pair.talk(seconds=0.2, caller_hz=1, callee_hz=1) == 200
        await asyncio.sleep(0.2)
        (record,) = box.store.cdr.search()
        assert record.recording_ref is None and record.recording_state is None
        assert box.recordings.catalog.list() == []


async def test_no_recording_key_fails_the_recording_not_the_call(
    tmp_path: Path, volatile_dir: Path
) -> None:
    async with (
        recording_box(tmp_path / "data", volatile_dir, []) as box,
        phones(box.core, box.store) as pair,
    ):
        assert await pair.talk(seconds=0.2, caller_hz=1, callee_hz=1) == 200
        await asyncio.sleep(0.2)
        (record,) = box.store.cdr.search()
        (info,) = box.recordings.catalog.list()
        assert info.state is RecordingState.FAILED and "no recording key" in info.codec_note
        assert (record.recording_ref, record.recording_state) == (info.id, "failed")
        (alarm,) = box.recordings.alarms.active()
        assert alarm.code == "recording.no-key"
        assert [e.action for e in box.store.audit.events()] == ["recording.failed"]


# ------------------------------------------------------------------------------ disk full


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 100 KiB tmpfs as the recordings folder: room for the header and one 64 KiB chunk."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    folder = tmp_path / "data" / "recordings"
    folder.mkdir(parents=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=100k,mode=0750", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@needs_age
async def test_disk_full_stops_the_recording_cleanly_and_the_call_goes_on(
    tmp_path: Path, volatile_dir: Path, site_key: tuple[Path, str], small_disk: Path
) -> None:
    identity, recipient = site_key
    async with (
        recording_box(tmp_path / "data", volatile_dir, [recipient]) as box,
        phones(box.core, box.store) as pair,
    ):
        call = await pair.talk(
            seconds=3.0, caller_hz=CALLER_HZ, callee_hz=CALLEE_HZ, hang_up=False, linger=1.5
        )
        assert isinstance(call, asyncio.Future)
        # The disk filled while the call was up: the recording stopped, the call did not.
        (call_id,) = box.core.calls.calls
        info = await finished(box.recordings, call_id)
        assert box.core.calls.calls  # still up
        assert await call == 200  # and it ends normally
        await asyncio.sleep(0.3)
        record = box.store.cdr.get(call_id)
        assert record is not None and record.disposition is Disposition.ANSWERED
        assert (record.recording_ref, record.recording_state) == (info.id, "incomplete")
        (alarm,) = box.recordings.alarms.active()
        assert alarm.code == "recording.disk-full" and info.id in alarm.message
        assert info.state is RecordingState.INCOMPLETE and "disk-full" in info.codec_note
        path = box.recordings.path(info)
        assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert box.recordings.verify().ok
        assert [e.action for e in box.store.audit.events(target=info.id)] == [
            "recording.started",
            "recording.finished",
        ]
    # What was written before the disk filled is intact: one whole chunk, a valid WAV.
    wav = read_wav(age("-d", "-i", identity, path))
    assert (
        wav.frames == (65536 - HEADER_SIZE) // 4 and abs(info.duration - wav.frames / 8000) < 1e-6
    )
    assert tone_seconds(wav.left, CALLER_HZ) >= 1.5 and tone_seconds(wav.right, CALLEE_HZ) >= 1.5


async def test_hold_then_a_new_stream_stays_in_step(
    tmp_path: Path, volatile_dir: Path, site_key: tuple[Path, str]
) -> None:
    """Through the real relay: the caller talks 1 s, goes silent 1.2 s (hold), then comes back
    as a new RTP stream (new SSRC and timestamps, as after a re-INVITE or a transfer) for 1 s,
    while the callee talks throughout. The caller's second stretch lands 2.2 s after its
    first, where it was spoken, not right after the first stretch."""
    identity, recipient = site_key
    async with (
        recording_box(tmp_path / "data", volatile_dir, [recipient]) as box,
        phones(box.core, box.store) as pair,
    ):
        call, to_box_a, to_box_b = await pair.answer(seconds=3.6)
        start = asyncio.get_running_loop().time() + 0.05
        await asyncio.gather(
            send_rtp(pair.socks[1], to_box_b, tone(CALLEE_HZ, 3.2), 0x2222, start),
            send_rtp(pair.socks[0], to_box_a, tone(CALLER_HZ, 1.0), 0x1111, start),
            send_rtp(
                pair.socks[0], to_box_a, tone(CALLER_HZ, 1.0), 0x3333, start + 2.2, 0x7FFF0000
            ),
        )
        assert await call == 200
        (record,) = box.store.cdr.search()
        info = await finished(box.recordings, record.call_id)
    wav = read_wav(age("-d", "-i", identity, box.recordings.path(info)))
    assert 1.9 <= tone_seconds(wav.left, CALLER_HZ) <= 2.0
    assert 3.1 <= tone_seconds(wav.right, CALLEE_HZ) <= 3.2
    loud = [i for i, x in enumerate(wav.left) if abs(x) > 2000]
    gaps = [(a, b) for a, b in itertools.pairwise(loud) if b - a > 8000]
    assert len(gaps) == 1, gaps
    (end_first, start_second) = gaps[0]
    assert abs((start_second - loud[0]) / 8000 - 2.2) <= 0.05, (loud[0], start_second)
    assert abs((end_first - loud[0]) / 8000 - 1.0) <= 0.02
    right_start = next(i for i, x in enumerate(wav.right) if abs(x) > 2000)
    assert abs(right_start - loud[0]) <= 320  # both channels start together
