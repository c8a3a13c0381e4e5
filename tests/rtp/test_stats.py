"""Receive statistics (RFC 3550 A.1, A.3, A.8): loss, reordering, duplicates, the 16-bit wrap,
jitter known answers, SSRC changes and far-end reports."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbx.rtp.packet import ReportBlock
from pbx.rtp.stats import ReceiveStats

SSRC = 0x1234
PTIME = 0.020
STEP = 160  # timestamp units per 20 ms at 8 kHz


def feed(stats: ReceiveStats, seqs: list[int], *, start_ts: int = 0, t0: float = 100.0) -> None:
    """Packets sent every 20 ms with sequence numbers ``seqs`` (in the order given); the
    timestamp and arrival follow the sequence number, so jitter stays 0."""
    first = seqs[0]
    for seq in seqs:
        k = (seq - first) & 0xFFFF
        stats.update(SSRC, seq & 0xFFFF, (start_ts + k * STEP) & 0xFFFFFFFF, t0 + k * PTIME)


def test_in_order_stream_after_probation() -> None:
    stats = ReceiveStats(min_sequential=1)
    feed(stats, list(range(1000, 1100)))
    assert stats.valid
    assert (stats.expected, stats.received, stats.lost) == (100, 100, 0)
    assert stats.duplicates == stats.reordered == 0
    assert stats.jitter == pytest.approx(0, abs=1e-6)


def test_rfc_probation_does_not_count_the_first_packet() -> None:
    stats = ReceiveStats()  # MIN_SEQUENTIAL = 2 as in A.1
    stats.update(SSRC, 10, 0, 0.0)
    assert not stats.valid
    assert stats.expected == stats.received == 0
    stats.update(SSRC, 11, 160, 0.02)
    assert stats.valid
    assert (stats.expected, stats.received) == (1, 1)


def test_probation_restarts_on_a_gap() -> None:
    stats = ReceiveStats()
    for seq in (10, 12, 13):
        stats.update(SSRC, seq, 0, 0.0)
    assert stats.valid
    assert (stats.expected, stats.received) == (1, 1)  # 13 ended probation, 12 began it


def test_loss() -> None:
    stats = ReceiveStats(min_sequential=1)
    seqs = [s for s in range(200) if s % 10 != 5]  # every tenth packet lost
    feed(stats, seqs)
    assert stats.expected == 200
    assert stats.received == 180
    assert stats.lost == 20
    assert stats.loss_ratio == pytest.approx(0.1)


def test_reordering_is_not_loss() -> None:
    stats = ReceiveStats(min_sequential=1)
    feed(stats, [0, 1, 2, 4, 3, 5, 7, 6, 8])
    assert stats.lost == 0
    assert stats.reordered == 2
    assert stats.duplicates == 0


def test_duplicates_are_counted_and_make_loss_negative() -> None:
    stats = ReceiveStats(min_sequential=1)
    feed(stats, [0, 1, 2, 2, 3, 1, 4])
    assert stats.duplicates == 2
    assert stats.reordered == 0
    assert stats.received == 7
    assert stats.expected == 5
    assert stats.lost == -2  # A.3: duplicates count as received
    assert stats.loss_ratio == 0


def test_sequence_wrap_at_65535() -> None:
    stats = ReceiveStats(min_sequential=1)
    feed(stats, [65530 + i for i in range(20)])  # 65530..65535, 0..13
    assert stats.cycles == 1 << 16
    assert stats.max_seq == 13
    assert stats.extended_max == (1 << 16) + 13
    assert (stats.expected, stats.lost) == (20, 0)


def test_reordering_and_loss_across_the_wrap() -> None:
    stats = ReceiveStats(min_sequential=1)
    seqs = [65533, 65534, 0, 65535, 2, 3]  # 65535 late, 1 lost
    for i, seq in enumerate(seqs):
        stats.update(SSRC, seq, i * STEP, i * PTIME)
    assert stats.reordered == 1
    assert stats.lost == 1
    assert stats.extended_max == (1 << 16) + 3


def test_large_jump_resynchronises_after_two_sequential_packets() -> None:
    stats = ReceiveStats(min_sequential=1)
    feed(stats, list(range(100)))
    stats.update(SSRC, 40000, 0, 10.0)  # one stray packet: ignored
    assert stats.received == 100
    stats.update(SSRC, 101, 0, 10.0)
    assert stats.lost == 1  # 100 never came
    stats.update(SSRC, 30000, 0, 11.0)
    stats.update(SSRC, 30001, 0, 11.02)  # the sender restarted its sequence: follow it
    stats.update(SSRC, 30002, 0, 11.04)
    assert stats.max_seq == 30002
    assert stats.received == 101 + 2
    assert stats.expected == 102 + 2  # the old run's total is carried


def test_ssrc_change_starts_a_new_source_and_keeps_totals() -> None:
    stats = ReceiveStats(min_sequential=1)
    feed(stats, [0, 1, 3])  # one lost
    for i, seq in enumerate([5000, 5001, 5002]):
        stats.update(0xBEEF, seq, i * STEP, 200 + i * PTIME)
    assert stats.ssrc == 0xBEEF
    assert stats.sources == 2
    assert stats.received == 6
    assert stats.lost == 1


def test_jitter_known_answer() -> None:
    # Packets every 20 ms, but every other one arrives 5 ms late: |D| = 5 ms = 40 units for
    # every pair, so after k pairs J = 40 * (1 - (15/16)^k)  (A.8, gain 1/16).
    stats = ReceiveStats(min_sequential=1)
    for i in range(50):
        arrival = 10.0 + i * PTIME + (0.005 if i % 2 else 0.0)
        stats.update(SSRC, i, i * STEP, arrival)
    assert stats.jitter == pytest.approx(40 * (1 - (15 / 16) ** 49))
    assert stats.jitter_ms == pytest.approx(stats.jitter / 8)


def test_jitter_of_a_constant_delay_is_zero_across_the_timestamp_wrap() -> None:
    stats = ReceiveStats(min_sequential=1)
    start = 0xFFFFFFFF - 5 * STEP
    feed(stats, list(range(20)), start_ts=start)
    assert stats.jitter == pytest.approx(0, abs=1e-3)


def test_events_without_timestamp_leave_jitter_alone() -> None:
    # RFC 4733 packets repeat one timestamp for 20 ms apart arrivals; fed with a timestamp
    # they would read as 160 units of jitter per packet.
    stats = ReceiveStats(min_sequential=1)
    for i in range(10):
        stats.update(SSRC, i, None, 5.0 + i * PTIME)
    assert stats.jitter == 0
    assert stats.received == 10
    stats.update(SSRC, 10, 0, 5.2)
    stats.update(SSRC, 11, 0, 5.22)
    assert stats.jitter == pytest.approx(160 / 16)


def test_interval_fraction_lost_and_report_block() -> None:
    stats = ReceiveStats(min_sequential=1)
    feed(stats, [s for s in range(100) if s % 10 != 9])  # 0..98: 9 lost of 99
    fraction, expected, lost = stats.interval()
    assert (expected, lost) == (99, 9)
    assert fraction == (9 << 8) // 99
    feed(stats, list(range(100, 110)), start_ts=100 * STEP, t0=102.0)
    block = stats.report_block(last_sr=7, delay_since_last_sr=65536)
    assert block.fraction_lost == (1 << 8) // 11  # 99 lost in the second interval
    assert block.cumulative_lost == 10
    assert block.highest_sequence == 109
    assert block.ssrc == SSRC
    assert (block.last_sr, block.delay_since_last_sr) == (7, 65536)
    assert stats.interval() == (0, 0, 0)


def test_far_end_report() -> None:
    stats = ReceiveStats(clock_rate=8000)
    assert stats.far_end is None and stats.far_end_jitter_ms is None
    block = ReportBlock(SSRC, 26, 40, 5000, 80)
    stats.record_far_end(block, 42.0)
    assert stats.far_end == block
    assert stats.far_end_at == 42.0
    assert stats.far_end_jitter_ms == 10.0
    snap = stats.snapshot()
    assert snap.far_end == block and snap.far_end_jitter_ms == 10.0


@given(
    start=st.integers(0, 0xFFFF),
    gaps=st.lists(st.integers(1, 40), min_size=1, max_size=300),
)
def test_loss_equals_skipped_packets(start: int, gaps: list[int]) -> None:
    # In-order delivery with random gaps (also across the wrap): lost = the numbers skipped.
    stats = ReceiveStats(min_sequential=1)
    seq = start
    stats.update(SSRC, seq, 0, 0.0)
    for gap in gaps:
        seq += gap
        stats.update(SSRC, seq & 0xFFFF, 0, 0.0)
    assert stats.expected == seq - start + 1
    assert stats.received == len(gaps) + 1
    assert stats.lost == sum(gaps) - len(gaps)
    assert stats.duplicates == stats.reordered == 0


@given(st.permutations(list(range(30))), st.integers(0, 0xFFFF))
def test_local_reordering_loses_nothing(order: list[int], start: int) -> None:
    stats = ReceiveStats(min_sequential=1)
    stats.update(SSRC, start, 0, 0.0)
    for k in order:
        stats.update(SSRC, (start + 1 + k) & 0xFFFF, 0, 0.0)
    assert stats.lost == 0
    assert stats.duplicates == 0
    assert stats.received == 31


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="clock"):
        ReceiveStats(0)
    with pytest.raises(ValueError, match="min_sequential"):
        ReceiveStats(min_sequential=0)
