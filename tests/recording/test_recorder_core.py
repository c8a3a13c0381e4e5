"""The recorder's sans-IO core: alignment of both directions on one call timeline.

Every packet carries a unique signature (its first two μ-law codes), so a test can find
where the recorder put it in the output and check that it is in step with real time."""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbx.recording.recorder import RecorderCore, Side, record_tap
from pbx.rtp.g711 import alaw_encode, ulaw_decode

RATE = 8000
WINDOW = 0.2
SAMPLES = 160  # 20 ms packets
ALLOWED = list(range(0x00, 0x64))  # 100 μ-law codes with distinct, non-zero values
FILL = 0x50


def rtp(pt: int, seq: int, ts: int, ssrc: int, payload: bytes) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


def signed_payload(key: int) -> bytes:
    return bytes([ALLOWED[key // 100], ALLOWED[key % 100]]) + bytes([FILL]) * (SAMPLES - 2)


@dataclass
class Sent:
    side: Side
    key: int
    send: float  # when the phone sent it (real time)
    arrival: float
    data: bytes
    segment: int
    index: int  # within the segment


def channels(out: bytes) -> tuple[bytes, bytes]:
    left = bytearray(len(out) // 2)
    right = bytearray(len(out) // 2)
    left[0::2], left[1::2] = out[0::4], out[1::4]
    right[0::2], right[1::2] = out[2::4], out[3::4]
    return bytes(left), bytes(right)


def find(channel: bytes, pcm: bytes) -> int | None:
    at = channel.find(pcm)
    while at >= 0 and at % 2:
        at = channel.find(pcm, at + 1)
    return None if at < 0 else at // 2


def run(core: RecorderCore, packets: list[Sent], advance_every: int = 1) -> bytes:
    out = bytearray()
    for n, p in enumerate(sorted(packets, key=lambda p: p.arrival)):
        if n % advance_every == 0:
            out += core.advance(p.arrival)
        core.feed(p.side, p.arrival, p.data)
    out += core.finish()
    return bytes(out)


# ------------------------------------------------------------------ strategies


@st.composite
def jittery_streams(draw: st.DrawFn) -> list[Sent]:
    """Both directions: any start time, any 32-bit timestamp base (wrap included), any loss
    pattern, any delay below the jitter window (so any arrival order within it)."""
    packets: list[Sent] = []
    for side in Side:
        count = draw(st.integers(0, 60))
        start = draw(st.floats(0, 1))
        ts0 = draw(st.integers(0, 2**32 - 1))
        ssrc = draw(st.integers(1, 2**32 - 1))
        lost = draw(st.lists(st.booleans(), min_size=count, max_size=count))
        delays = draw(st.lists(st.floats(0, 0.18), min_size=count, max_size=count))
        for i in range(count):
            if lost[i]:
                continue
            send = start + i * SAMPLES / RATE
            data = rtp(0, i, ts0 + i * SAMPLES, ssrc, signed_payload(i))
            packets.append(Sent(side, i, send, send + delays[i], data, 0, i))
    return packets


@st.composite
def interrupted_streams(draw: st.DrawFn) -> list[Sent]:
    """Streams cut by hold, re-INVITE or transfer: after each gap the phone may keep its SSRC
    and timestamps (as if nothing happened, or advanced by the gap), jump its timestamps, or
    start a new SSRC. Network delays are zero so every packet's true place is known. (Same
    SSRC, timestamps moved by exactly the time that passed, within the window: that is a
    retransmission, indistinguishable from one; not generated.)"""
    packets: list[Sent] = []
    for side in Side:
        t = draw(st.floats(0, 0.5))
        ssrc = draw(st.integers(1, 2**32 - 1))
        ts = draw(st.integers(0, 2**32 - 1))
        key = 0
        for segment in range(draw(st.integers(1, 4))):
            if segment:
                gap = draw(st.sampled_from([0.1, 0.3, 0.7, 1.5, 4.0]))
                kind = draw(st.sampled_from(["paused", "wallclock", "jump", "new-ssrc"]))
                t += gap
                if kind == "wallclock":
                    ts += round(gap * RATE)
                elif kind == "jump":  # a real jump: further than 1 s from where it was
                    shift = draw(st.integers(12_000, 2**31 - 1)) * draw(st.sampled_from([1, -1]))
                    ts += round(gap * RATE) + shift
                elif kind == "new-ssrc":
                    ssrc = ssrc % (2**32 - 1) + 1  # another SSRC
                    ts = draw(st.integers(0, 2**32 - 1))
            for i in range(draw(st.integers(5, 25))):
                data = rtp(0, key, ts, ssrc, signed_payload(key))
                packets.append(Sent(side, key, t, t, data, segment, i))
                key += 1
                t += SAMPLES / RATE
                ts += SAMPLES
    return packets


# ------------------------------------------------------------------ properties


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(jittery_streams(), st.integers(1, 7))
def test_any_arrival_order_and_loss_keeps_both_channels_in_step(
    packets: list[Sent], advance_every: int
) -> None:
    core = RecorderCore(window=WINDOW)
    out = run(core, packets, advance_every)
    assert len(out) % 4 == 0
    left, right = channels(out)
    assert len(left) == len(right) == 2 * core.frames
    if not packets:
        assert out == b""
        return
    anchor = min(p.arrival for p in packets) - WINDOW
    assert core.anchor == anchor
    placed = [bytearray(len(left)), bytearray(len(right))]
    for p in packets:
        pcm = ulaw_decode(p.data[12:])
        at = find(left if p.side is Side.CALLER else right, pcm)
        assert at is not None, f"packet {p.key} of {p.side.name} is missing"
        # In step: where it sits matches when it was sent, within the jitter window.
        assert abs(at - (p.send - anchor) * RATE) <= WINDOW * RATE + 1
        placed[p.side][2 * at : 2 * at + 2 * SAMPLES] = pcm
    # Lost packets and gaps are silence, and the stream ends with the last packet.
    assert (bytes(placed[0]), bytes(placed[1])) == (left, right)
    assert core.stats[0].late == core.stats[1].late == 0
    # Relative positions within a direction are exactly the timestamp differences.
    for side in Side:
        mine = sorted((p for p in packets if p.side is side), key=lambda p: p.key)
        channel = left if side is Side.CALLER else right
        spots = [find(channel, ulaw_decode(p.data[12:])) for p in mine]
        for n in range(1, len(mine)):
            assert spots[n] - spots[n - 1] == (mine[n].key - mine[n - 1].key) * SAMPLES  # type: ignore[operator]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(interrupted_streams())
def test_hold_reinvite_and_transfer_are_reanchored_in_step(packets: list[Sent]) -> None:
    core = RecorderCore(window=WINDOW)
    out = run(core, packets)
    left, right = channels(out)
    assert len(left) == len(right)
    anchor = min(p.arrival for p in packets) - WINDOW
    for p in packets:
        at = find(left if p.side is Side.CALLER else right, ulaw_decode(p.data[12:]))
        if at is None:
            # Only the first packets after a discontinuity may be lost, while the recorder
            # tells a shift from jitter.
            assert p.segment > 0 and p.index < 3, f"packet {p.key} ({p.segment}/{p.index})"
            continue
        assert abs(at - (p.send - anchor) * RATE) <= WINDOW * RATE + 1, (p.segment, p.index)


# ------------------------------------------------------------------ examples


def test_a_tone_per_side_lands_in_its_channel() -> None:
    core = RecorderCore()
    caller = [rtp(0, i, i * SAMPLES, 1, bytes([0x10]) * SAMPLES) for i in range(50)]
    tone = alaw_encode(b"\x00\x10" * SAMPLES)
    callee = [rtp(8, i, 9000 + i * SAMPLES, 2, tone) for i in range(50)]
    out = bytearray()
    for i in range(50):
        now = i * 0.02
        out += core.advance(now)
        core.feed(Side.CALLER, now, caller[i])
        core.feed(Side.CALLEE, now + 0.001, callee[i])
    out += core.finish()
    left, right = channels(bytes(out))
    lead = int(0.2 * RATE) * 2  # the timeline starts one window before the first packet
    assert core.frames == 1600 + 50 * SAMPLES + 8  # the callee started 1 ms (8 samples) later
    assert set(left[:lead]) == {0} and set(right[: lead + 16]) == {0}
    assert 0 not in set(left[lead : lead + 50 * SAMPLES * 2 : 2]) and set(left[-16:]) == {0}
    assert 0 not in set(right[lead + 16 :: 2])
    assert core.codec == "PCMA/PCMU" and core.note == ""


def test_events_comfort_noise_and_other_codecs() -> None:
    core = RecorderCore(payload_types={96: "opus", 101: "telephone-event"})
    core.feed(Side.CALLER, 0.0, rtp(0, 1, 0, 1, bytes([0x10]) * SAMPLES))
    core.feed(Side.CALLER, 0.02, rtp(101, 2, 160, 1, b"\x05\x0a\x00\xa0"))  # key 5
    core.feed(Side.CALLER, 0.04, rtp(13, 3, 320, 1, b"\x40"))  # comfort noise
    for i in range(5):
        core.feed(Side.CALLEE, 0.0 + i * 0.02, rtp(96, i, i * 960, 2, b"opus!"))
    core.feed(Side.CALLEE, 0.1, b"\x00junk")
    out = core.finish()
    left, right = channels(out)
    assert core.frames == 1600 + SAMPLES and set(right) == {0} and set(left) != {0}
    caller, callee = core.stats
    assert (caller.packets, caller.events, caller.comfort_noise) == (1, 1, 1)
    assert callee.unsupported == {"opus": 5} and callee.malformed == 1
    assert core.note == "callee: opus not decodable, 5 packets left silent"


def test_a_packet_later_than_the_window_is_dropped_not_shifted() -> None:
    core = RecorderCore(window=WINDOW)
    sent = [rtp(0, i, i * SAMPLES, 7, signed_payload(i)) for i in range(40)]
    out = bytearray()
    for i in range(40):
        if i == 10:
            continue
        out += core.advance(i * 0.02)
        core.feed(Side.CALLER, i * 0.02, sent[i])
    out += core.advance(0.5)
    core.feed(Side.CALLER, 0.5, sent[10])  # 300 ms late: its place is written already
    out += core.finish()
    left, _ = channels(bytes(out))
    assert find(left, ulaw_decode(sent[10][12:])) is None
    assert find(left, ulaw_decode(sent[11][12:])) == 1600 + 11 * SAMPLES
    assert core.stats[0].late == 1 and core.stats[0].reanchors == 0


def test_timestamp_wrap_is_continuous() -> None:
    core = RecorderCore()
    base = 2**32 - 3 * SAMPLES
    for i in range(6):
        core.feed(Side.CALLEE, i * 0.02, rtp(0, i, base + i * SAMPLES, 3, signed_payload(i)))
    _, right = channels(core.finish())
    assert [find(right, ulaw_decode(signed_payload(i))) for i in range(6)] == [
        1600 + i * SAMPLES for i in range(6)
    ]
    assert core.stats[1].reanchors == 0


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="window"):
        RecorderCore(window=0.5, jump=0.4)


# ------------------------------------------------------------------ asyncio consumer


class FakeTap:
    """A queue with the relay tap's surface, fed by the test (the relay's own tap is
    exercised by the end-to-end tests through the box)."""

    def __init__(self) -> None:
        self.items: list[tuple[object, float, bytes]] = []
        self.closed = False
        self.dropped = 0

    def drain(self) -> list[tuple[object, float, bytes]]:
        items, self.items = self.items, []
        return items

    def close(self) -> None:
        self.closed = True


class Sink:
    def __init__(self, fail_after: int | None = None) -> None:
        self.data = bytearray()
        self.fail_after = fail_after

    def write(self, data: bytes) -> int:
        if self.fail_after is not None and len(self.data) + len(data) > self.fail_after:
            raise OSError(28, "No space left on device")
        self.data += data
        return len(data)


async def test_record_tap_writes_everything_once_the_tap_closes() -> None:
    tap, sink, now = FakeTap(), Sink(), [0.0]
    task = asyncio.ensure_future(
        record_tap(tap, RecorderCore(), sink, clock=lambda: now[0], interval=0.001)
    )
    for i in range(30):
        now[0] = i * 0.02
        tap.items.append(("a->b", now[0], rtp(0, i, i * SAMPLES, 1, bytes([0x10]) * SAMPLES)))
        tap.items.append(("b->a", now[0], rtp(0, i, i * SAMPLES, 2, bytes([0x20]) * SAMPLES)))
        await asyncio.sleep(0.002)
    tap.close()
    outcome = await asyncio.wait_for(task, 5)
    assert outcome.error is None and outcome.frames == 1600 + 30 * SAMPLES
    left, right = channels(bytes(sink.data))
    assert left == bytes(3200) + ulaw_decode(bytes([0x10]) * SAMPLES * 30)
    assert right == bytes(3200) + ulaw_decode(bytes([0x20]) * SAMPLES * 30)


async def test_record_tap_stops_on_a_failing_sink_and_closes_the_tap() -> None:
    tap, sink, now = FakeTap(), Sink(fail_after=4 * 1000), [0.0]
    task = asyncio.ensure_future(
        record_tap(tap, RecorderCore(), sink, clock=lambda: now[0], interval=0.001)
    )
    for i in range(100):
        now[0] = i * 0.02
        if not tap.closed:
            tap.items.append(("a->b", now[0], rtp(0, i, i * SAMPLES, 1, b"\x10" * SAMPLES)))
        await asyncio.sleep(0.002)
    outcome = await asyncio.wait_for(task, 5)
    assert isinstance(outcome.error, OSError) and tap.closed
    assert len(sink.data) <= 4000 and len(sink.data) == 4 * outcome.frames
