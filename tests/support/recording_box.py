"""Helpers of the recorder's end-to-end tests: a box with recording on, phones that send a tone
as paced RTP, WAV reading and tone detection (Goertzel; no numpy in the venv)."""

from __future__ import annotations

import asyncio
import io
import os
import re
import socket
import struct
import uuid
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from appliance.recordings import open_recordings
from appliance.store import SqliteStore, open_store
from pbx.recording.age import AgeWriter, X25519Recipient
from pbx.recording.catalog import RecordingInfo, RecordingState
from pbx.recording.service import CallRecorder, Recordings, RecordingSettings, relative_path
from pbx.recording.wav import wav_header
from pbx.rtp.g711 import ulaw_encode
from pbx.service import SipCore
from pbx.settings import SipSettings
from pbx.sip import auth
from pbx.sip.dialog import new_call_id, new_tag
from pbx.sip.events import Peer
from pbx.sip.message import build_request
from pbx.sip.timers import TimerConfig
from pbx.sip.uri import SipUri
from pbx.store import (
    CallRecord,
    Direction,
    Disposition,
    Extension,
    HangupSide,
    RecordPolicy,
)
from support.agent import Agent, AgentConfig, loopback_binding, wait_answered
from support.tones import sine_pcm
from support.wait import wait_for

PASSWORD = "Secret-101"
FAST = TimerConfig(t1=0.05, t2=0.4, t4=0.5)


@dataclass
class Box:
    core: SipCore
    store: SqliteStore
    recordings: Recordings
    recorder: CallRecorder
    data: Path


@asynccontextmanager
async def recording_box(
    data: Path,
    journal: Path,
    recipients: list[str],
    *,
    caller_policy: RecordPolicy = RecordPolicy.OUTBOUND,
    box_policy: str = "none",
    password: str = PASSWORD,
) -> AsyncIterator[Box]:
    store = open_store(data)
    settings = SipSettings(port=0, t1=0.1, t2=0.8, rtp_port_min=41000, rtp_port_max=41999)
    for number in ("101", "102"):
        policy = caller_policy if number == "101" else RecordPolicy.NONE
        store.directory.create(Extension(number=number, record_calls=policy))
        store.directory.set_password(number, password, settings.domain)
    recordings = open_recordings(
        store,
        data,
        RecordingSettings(policy=box_policy),
        journal_dir=journal,  # type: ignore[arg-type]
    )
    keys = [X25519Recipient.from_string(r) for r in recipients]
    recorder = CallRecorder(recordings, lambda: keys)
    core = SipCore(settings, store, b"k" * 32, recorder)
    await core.start()
    try:
        yield Box(core, store, recordings, recorder, data)
    finally:
        await core.close()
        store.close()


def tone(hz: float, seconds: float, amplitude: float = 8000) -> bytes:
    """A sine as μ-law codes at 8 kHz."""
    return ulaw_encode(sine_pcm(hz, seconds, amplitude))


async def send_rtp(
    sock: socket.socket,
    dest: tuple[str, int],
    codes: bytes,
    ssrc: int,
    start: float,
    ts0: int = 1000,
) -> None:
    """Send ``codes`` as 20 ms PCMU packets on an absolute schedule from ``start`` (loop
    time), timestamps from ``ts0``."""
    loop = asyncio.get_running_loop()
    for i in range(len(codes) // 160):
        delay = start + i * 0.02 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        header = struct.pack("!BBHII", 0x80, 0, i & 0xFFFF, (ts0 + i * 160) & 0xFFFFFFFF, ssrc)
        sock.sendto(header + codes[i * 160 : (i + 1) * 160], dest)


def udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


def sdp_port(body: bytes) -> int:
    match = re.search(rb"m=audio (\d+)", body)
    assert match, body
    return int(match.group(1))


async def agent(media_port: int) -> Agent:
    ua = Agent(AgentConfig(timers=FAST, media_port=media_port))
    await ua.start("UDP")
    return ua


@dataclass
class Phones:
    """101 (``caller``) and 102 (``callee``), test agents with an RTP socket each
    (``socks``, caller's first), and the box's SIP address (``peer``)."""

    peer: Peer
    caller: Agent
    callee: Agent
    socks: tuple[socket.socket, socket.socket]

    async def talk(self, **options: Any) -> asyncio.Future[int] | int:
        """:func:`talk` between these two phones."""
        return await talk(self.peer, self.caller, self.callee, *self.socks, **options)

    async def answer(
        self, **options: Any
    ) -> tuple[asyncio.Future[int], tuple[str, int], tuple[str, int]]:
        """:func:`answer` between these two phones."""
        return await answer(self.peer, self.caller, self.callee, **options)


@asynccontextmanager
async def phones(core: SipCore, store: SqliteStore) -> AsyncIterator[Phones]:
    """Two phones for a call through ``core``, 102 registered in ``store``; closed after."""
    socks = udp_socket(), udp_socket()
    callee = await agent(socks[1].getsockname()[1])
    store.bindings.put(loopback_binding("102", callee.endpoint.local("UDP")[1]))
    caller = await agent(socks[0].getsockname()[1])
    try:
        yield Phones(Peer("UDP", "127.0.0.1", core.endpoint.local("UDP")[1]), caller, callee, socks)
    finally:
        for ua in (caller, callee):
            await ua.close()
        for sock in socks:
            sock.close()


async def register(ua: Agent, box: Peer, number: str, password: str, domain: str) -> int:
    """REGISTER ``ua`` as ``number`` at the box, answering the digest challenge."""
    host, port = ua.endpoint.local("UDP")
    uri = SipUri(box.host, None, box.port)
    call_id, tag = new_call_id(host), new_tag()
    status = 0
    creds = None
    for cseq in (1, 2):
        headers = [
            ("Via", ua.endpoint.via("UDP")),
            ("Max-Forwards", "70"),
            ("From", f"<sip:{number}@{domain}>;tag={tag}"),
            ("To", f"<sip:{number}@{domain}>"),
            ("Call-ID", call_id),
            ("CSeq", f"{cseq} REGISTER"),
            ("Contact", f"<sip:{number}@{host}:{port}>"),
            ("Expires", "600"),
        ]
        if creds is not None:
            headers.append(("Authorization", creds.to_header()))
        response = await ua.endpoint.request(build_request("REGISTER", uri, headers), box)
        status = response.status
        if status != 401:
            return status
        challenges = [auth.parse_challenge(v) for v in response.headers.lines("WWW-Authenticate")]
        creds = auth.DigestClient(number, password).authorize(challenges, "REGISTER", str(uri))
    return status


@dataclass
class TalkResult:
    status: int
    caller_rtp: int
    callee_rtp: int


async def answer(
    box_peer: Peer, caller: Agent, callee: Agent, *, seconds: float, password: str = PASSWORD
) -> tuple[asyncio.Future[int], tuple[str, int], tuple[str, int]]:
    """101 calls 102 and talks ``seconds``; returns the call and where each phone must send
    its RTP (the box's ports), once 102 has the ACK."""
    call = asyncio.ensure_future(
        caller.call(box_peer, "102", talk=seconds, auth_as=("101", password))
    )
    await wait_answered(caller, call)
    await wait_for(lambda: callee.counts["ACK"] > 0, "the callee's ACK", timeout=10)
    return (
        call,
        ("127.0.0.1", sdp_port(caller.last_sdp)),
        ("127.0.0.1", sdp_port(callee.first_offer)),
    )


async def talk(
    box_peer: Peer,
    caller: Agent,
    callee: Agent,
    caller_sock: socket.socket,
    callee_sock: socket.socket,
    *,
    seconds: float,
    caller_hz: float,
    callee_hz: float,
    hang_up: bool = True,
    linger: float = 0.3,
    password: str = PASSWORD,
) -> asyncio.Future[int] | int:
    """101 calls 102; both send their tone for ``seconds``; then 101 hangs up (or, with
    ``hang_up`` False, the call is left up and its future returned). The caller hangs up
    ``linger`` seconds after the tone."""
    call, to_box_from_caller, to_box_from_callee = await answer(
        box_peer, caller, callee, seconds=seconds + linger, password=password
    )
    start = asyncio.get_running_loop().time() + 0.05
    await asyncio.gather(
        send_rtp(caller_sock, to_box_from_caller, tone(caller_hz, seconds), 0x1111, start),
        send_rtp(callee_sock, to_box_from_callee, tone(callee_hz, seconds), 0x2222, start),
    )
    if not hang_up:
        return call
    return await call


async def finished(recordings: Recordings, call_id: str, timeout: float = 10) -> RecordingInfo:
    """The call's recording once it left the ``recording`` state."""
    for _ in range(int(timeout / 0.05)):
        rows = recordings.catalog.list(call_id=call_id)
        if rows and rows[0].state is not RecordingState.RECORDING:
            return rows[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"the recording of {call_id} did not finish: {rows}")


# ------------------------------------------------------------------------------ audio


@dataclass
class Wav:
    channels: int
    rate: int
    frames: int
    left: list[int]
    right: list[int]


def read_wav(data: bytes) -> Wav:
    """Parse with the standard library's ``wave`` (a stock reader, not ours)."""
    with wave.open(io.BytesIO(data)) as w:
        channels, width, rate, frames = (
            w.getnchannels(),
            w.getsampwidth(),
            w.getframerate(),
            w.getnframes(),
        )
        raw = w.readframes(frames)
    assert width == 2
    samples = struct.unpack(f"<{len(raw) // 2}h", raw)
    return Wav(channels, rate, frames, list(samples[0::2]), list(samples[1::2]))


# ------------------------------------------------------------------------------ catalog


def finished_recording(
    recordings: Recordings,
    recipient: X25519Recipient,
    *,
    started_at: float,
    caller: str = "101",
    callee: str = "102",
    seconds: float = 0.5,
) -> RecordingInfo:
    """A recording as the recorder leaves it: file, row, call record."""
    rid = uuid.uuid4().hex
    pcm = os.urandom(int(seconds * 8000) * 4)
    new = RecordingInfo(
        id=rid,
        call_id=f"call-{rid}",
        path=relative_path(rid, started_at),
        started_at=started_at,
        caller_number=caller,
        callee_number=callee,
    )
    path = recordings.path(new)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = AgeWriter.create(path, [recipient])
    writer.write(wav_header(len(pcm)) + pcm)
    result = writer.close()
    done = replace(
        new,
        state=RecordingState.COMPLETE,
        size=result.ciphertext_size,
        sha256=result.sha256,
        duration=seconds,
        ended_at=started_at + seconds,
        recipients=(recipient.fingerprint,),
    )
    recordings.catalog.put(done)
    recordings.cdr.write(
        CallRecord(
            call_id=done.call_id,
            sip_call_id="x",
            caller_number=caller,
            dialed=callee,
            callee_number=callee,
            direction=Direction.INTERNAL,
            start_time=started_at,
            answer_time=started_at,
            end_time=started_at + seconds,
            disposition=Disposition.ANSWERED,
            hangup_side=HangupSide.CALLER,
            recording_ref=rid,
            recording_state="complete",
        )
    )
    return done
