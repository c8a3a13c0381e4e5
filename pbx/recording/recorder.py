"""The call recorder: both directions of a call's RTP -> one stereo 16-bit PCM stream at 8 kHz,
caller on the left, callee on the right, the two channels in step for the whole call.

Sans-IO core (:class:`RecorderCore`): fed RTP packets with their arrival times, it hands back
interleaved PCM for the part of the call timeline that is final. A thin asyncio consumer
(:func:`record_tap`) drains the relay's :class:`~pbx.media.relay.Tap` on a timer and writes
the PCM to a sink (the age writer), so the relay never waits for the recorder.

Alignment (why the channels stay in step):

- One **call timeline** in samples, position 0 one jitter window before the arrival of the
  call's first recorded packet (either direction), so a packet reordered ahead of it fits.
  Each direction's RTP timestamps are mapped onto it with an offset fixed by the arrival of
  that stream's first packet: position = timestamp + offset. Timestamps, not arrival times,
  place the audio, so network jitter does not stretch or squeeze it, and a lost packet
  leaves its 20 ms of silence in place.
- The timeline is written out only up to ``now - window`` (the jitter window, 200 ms by
  default). A packet reordered or delayed by less than that lands where it belongs; a later
  one finds its place already written and is counted as ``late`` (its audio is dropped,
  never shifted). Silence is the default everywhere, so gaps, lost packets, hold and
  one-way audio are silence on that channel while the other goes on.
- **Re-anchoring.** A new SSRC (re-INVITE, transfer to another phone), a timestamp that
  disagrees with arrival time by more than ``jump`` (1 s: the sender restarted or jumped its
  timestamps after hold), or three packets in a row off their place by more than the window
  (a smaller shift, e.g. a phone that paused its timestamps during a short hold) map the
  stream afresh from that packet's arrival. One late packet alone is jitter, not a shift:
  it is dropped, the mapping stays. Slow clock drift between a phone and the box (100 ppm
  is 0.36 s an hour) is absorbed the same way, by a re-anchor once it exceeds the window.
  Because both directions are mapped onto the same arrival-anchored timeline, a
  re-anchored channel cannot slide against the other by more than the jitter window.
- Both channels are emitted together, frame by frame, so they always have the same length.

Codecs: G.711 μ-law (PCMU) and A-law (PCMA) are decoded. RFC 4733 telephone-event packets are
ignored (the keypress is still audible if the phone also sends it in-band), comfort noise
(CN) is written as silence. Any other codec (G.722, opus, G.729, ...) cannot be decoded here:
its packets are counted, that channel stays silent, and :attr:`RecorderCore.note` says so;
the recording's ``codec_note`` in the metadata database carries that note. The SDP policy of
the box offers G.711 first, so this only happens when a phone insists on another codec.
"""

from __future__ import annotations

import asyncio
import enum
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pbx.rtp.g711 import alaw_decode, ulaw_decode
from pbx.rtp.packet import PacketError, parse_rtp

__all__ = [
    "STATIC_PAYLOAD_TYPES",
    "RecorderCore",
    "RecordingOutcome",
    "Side",
    "SideStats",
    "TapLike",
    "Writer",
    "record_tap",
]

SAMPLE_RATE = 8000

# RFC 3551 static payload types the recorder may meet (names as in SDP rtpmap).
STATIC_PAYLOAD_TYPES: Mapping[int, str] = {
    0: "PCMU",
    3: "GSM",
    4: "G723",
    8: "PCMA",
    9: "G722",
    13: "CN",
    18: "G729",
}
# Packets in a row off their timestamp's place by more than the window: a shift, not jitter.
_STRIKES = 3
_DECODERS: Mapping[str, Callable[[bytes], bytes]] = {"PCMU": ulaw_decode, "PCMA": alaw_decode}


class Side(enum.IntEnum):
    """A channel of the recording: the caller on the left, the callee on the right."""

    CALLER = 0
    CALLEE = 1


@dataclass
class SideStats:
    """What happened to one direction's packets."""

    packets: int = 0  # audio packets placed on the timeline
    late: int = 0  # arrived after their place had been written (audio dropped)
    events: int = 0  # RFC 4733 telephone-event packets (ignored)
    comfort_noise: int = 0  # CN packets (silence)
    malformed: int = 0  # not RTP
    reanchors: int = 0  # SSRC changes and timestamp jumps after the first packet
    codecs: set[str] = field(default_factory=set)  # decoded codecs seen
    unsupported: dict[str, int] = field(default_factory=dict)  # codec -> packets left silent


@dataclass(slots=True)
class _Stream:
    ssrc: int = -1
    offset: int = 0  # timeline position of extended timestamp 0
    last: int = 0  # extended timestamp of the newest packet (for unwrapping)
    strikes: int = 0  # packets in a row that were off their place by more than the window


class RecorderCore:
    """Aligns and mixes the two directions of a call (see the module docstring).

    ``payload_types`` names dynamic payload types (from the call's SDP); ``event_types``
    are the RFC 4733 payload types. Times are seconds on any monotonic clock (the relay's).
    """

    def __init__(
        self,
        *,
        window: float = 0.2,
        jump: float = 1.0,
        payload_types: Mapping[int, str] | None = None,
        event_types: Collection[int] = (),
        rate: int = SAMPLE_RATE,
    ) -> None:
        if window <= 0 or jump <= window:
            raise ValueError("window must be positive and jump longer than window")
        self.rate = rate
        self.window = window
        self._jump = round(jump * rate)
        self._window = round(window * rate)
        self._names = {**STATIC_PAYLOAD_TYPES, **(payload_types or {})}
        self._events = frozenset(event_types)
        self.anchor: float | None = None  # the time of timeline position 0
        self.frames = 0  # frames emitted so far (= the timeline position of _bufs[.][0])
        self._bufs = (bytearray(), bytearray())  # 16-bit PCM not yet emitted, per side
        self._streams = (_Stream(), _Stream())
        self.stats = (SideStats(), SideStats())

    @property
    def duration(self) -> float:
        """Seconds of audio emitted so far."""
        return self.frames / self.rate

    def feed(self, side: Side, arrival: float, data: bytes) -> None:
        """One RTP packet of ``side``'s direction, arrived at ``arrival``."""
        stats = self.stats[side]
        try:
            packet = parse_rtp(data)
        except PacketError:
            stats.malformed += 1
            return
        pt = packet.payload_type
        name = self._names.get(pt, "")
        if pt in self._events or name.lower() == "telephone-event":
            stats.events += 1
            return
        if name.upper() == "CN":
            stats.comfort_noise += 1
            return
        decode = _DECODERS.get(name.upper())
        if decode is None:
            label = name or f"payload type {pt}"
            stats.unsupported[label] = stats.unsupported.get(label, 0) + 1
            return
        if self.anchor is None:
            # Position 0 is one window before the first arrival: a packet sent before the
            # first one to arrive (reordered) still has its place.
            self.anchor = arrival - self.window
        here = round((arrival - self.anchor) * self.rate)
        stream = self._streams[side]
        ts = packet.timestamp
        if stream.ssrc == packet.ssrc:
            delta = (ts - stream.last) & 0xFFFFFFFF
            ext = stream.last + (delta - (1 << 32) if delta >= 1 << 31 else delta)
            off = abs(here - (ext + stream.offset))
            stream.strikes = stream.strikes + 1 if off > self._window else 0
            if off > self._jump or stream.strikes >= _STRIKES:
                ext = self._reanchor(stream, stats, packet.ssrc, ts, here)
        else:
            ext = self._reanchor(stream, stats, packet.ssrc, ts, here)
        stream.last = ext
        stats.packets += 1
        stats.codecs.add(name.upper())
        self._place(side, ext + stream.offset, decode(packet.payload))

    def _reanchor(self, stream: _Stream, stats: SideStats, ssrc: int, ts: int, here: int) -> int:
        if stream.ssrc != -1:
            stats.reanchors += 1
        stream.ssrc = ssrc
        stream.offset = here - ts
        stream.strikes = 0
        return ts

    def _place(self, side: Side, position: int, pcm: bytes) -> None:
        start = (position - self.frames) * 2
        end = start + len(pcm)
        if end <= 0:
            self.stats[side].late += 1
            return
        if start < 0:  # partly written already: keep the part still to come
            pcm, start = pcm[-start:], 0
        buf = self._bufs[side]
        if len(buf) < end:
            buf.extend(bytes(end - len(buf)))
        buf[start:end] = pcm

    def advance(self, now: float) -> bytes:
        """Interleaved stereo PCM for the timeline up to ``now - window``."""
        if self.anchor is None:
            return b""
        target = math.floor((now - self.anchor - self.window) * self.rate)
        return self._emit(target - self.frames)

    def finish(self) -> bytes:
        """Everything still held (the call ended): the last packets, up to the longer side."""
        return self._emit(max(len(b) for b in self._bufs) // 2)

    def _emit(self, count: int) -> bytes:
        if count <= 0:
            return b""
        size = 2 * count
        out = bytearray(2 * size)
        for index, buf in enumerate(self._bufs):
            if len(buf) < size:
                buf.extend(bytes(size - len(buf)))
            at = 2 * index  # byte offset of this channel inside a 4-byte frame
            out[at::4] = buf[0:size:2]
            out[at + 1 :: 4] = buf[1:size:2]
            del buf[:size]
        self.frames += count
        return bytes(out)

    @property
    def codec(self) -> str:
        """The decoded codecs, e.g. "PCMU" (both sides) or "PCMA/PCMU"."""
        return "/".join(sorted(self.stats[0].codecs | self.stats[1].codecs))

    @property
    def note(self) -> str:
        """Anything the listener should know: undecodable codecs, late packets."""
        parts = []
        for side, stats in zip(Side, self.stats, strict=True):
            who = side.name.lower()
            for codec, count in sorted(stats.unsupported.items()):
                parts.append(f"{who}: {codec} not decodable, {count} packets left silent")
            if stats.late:
                parts.append(f"{who}: {stats.late} packets arrived too late (silence)")
        return "; ".join(parts)


# ------------------------------------------------------------------------ asyncio consumer


class TapLike(Protocol):
    """What :func:`record_tap` needs of :class:`pbx.media.relay.Tap`."""

    @property
    def closed(self) -> bool: ...
    @property
    def dropped(self) -> int: ...
    def drain(self) -> Sequence[tuple[object, float, bytes]]: ...
    def close(self) -> None: ...


class Writer(Protocol):
    """Where the PCM goes: the age writer (or a byte sink in tests)."""

    def write(self, data: bytes) -> int: ...


@dataclass(frozen=True)
class RecordingOutcome:
    frames: int  # stereo frames written
    error: Exception | None  # the write that failed (disk full...), None when all went well
    tap_dropped: int  # packets the tap dropped because the recorder fell behind


async def record_tap(
    tap: TapLike,
    core: RecorderCore,
    writer: Writer,
    *,
    clock: Callable[[], float],
    interval: float = 0.1,
    sides: Callable[[object], Side] | None = None,
) -> RecordingOutcome:
    """Drain ``tap`` every ``interval`` seconds into ``core`` and write what is final to
    ``writer`` until the tap closes (the call ended); then write the rest. A failing write
    (an ``OSError`` or the age writer's ``StorageError``) stops the recording at once and
    closes the tap, so the call goes on without it. ``sides`` maps a tap item's direction to
    a :class:`Side` (default: the relay's A->B is the caller)."""
    side_of = sides or _relay_side
    written = 0
    try:
        while True:
            closed = tap.closed  # read before draining: nothing can follow a close
            for direction, arrival, data in tap.drain():
                core.feed(side_of(direction), arrival, data)
            pcm = core.finish() if closed else core.advance(clock())
            if pcm:
                writer.write(pcm)
                written = core.frames
            if closed:
                break
            await asyncio.sleep(interval)
    except Exception as exc:  # the sink failed: stop recording, never the call
        tap.close()
        return RecordingOutcome(written, exc, tap.dropped)
    return RecordingOutcome(written, None, tap.dropped)


def _relay_side(direction: object) -> Side:
    # pbx.media.relay.Direction.A_TO_B, compared by value: the core imports no adapter.
    return Side.CALLER if getattr(direction, "value", direction) == "a->b" else Side.CALLEE
