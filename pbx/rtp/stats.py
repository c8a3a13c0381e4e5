"""Receive statistics of one RTP stream, sans-IO (arrival time is passed in as ``now``).

- RFC 3550 Appendix A.1: source validation (probation), extended sequence numbers across the
  16-bit wrap, large jumps re-synchronised after two sequential packets.
- Appendix A.3: expected, received, cumulative lost (may go negative: duplicates count as
  received) and the 8-bit fraction lost over an interval.
- Appendix A.8: interarrival jitter in timestamp units (estimator with gain 1/16).
- Beyond the RFC: duplicates and reordered packets, told apart with a bitmap of the last 128
  sequence numbers (wider than A.1's misorder limit of 100, so every late packet is classified).

A change of SSRC starts a new source (a re-INVITE or transfer can do that); the totals of the
previous sources are carried so loss over the whole stream stays right.

The far end's view arrives by RTCP: :meth:`ReceiveStats.record_far_end` keeps the latest
report block the receiver of this stream sent about it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pbx.rtp.packet import ReportBlock

RTP_SEQ_MOD = 1 << 16
MAX_DROPOUT = 3000
MAX_MISORDER = 100
MIN_SEQUENTIAL = 2
_WINDOW_BITS = 128
_WINDOW_MASK = (1 << _WINDOW_BITS) - 1
_TS_MOD = 1 << 32
_TS_HALF = 1 << 31


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    """A point-in-time copy of :class:`ReceiveStats`, for call records and dashboards."""

    ssrc: int | None
    expected: int
    received: int
    lost: int
    loss_ratio: float
    duplicates: int
    reordered: int
    jitter: float
    jitter_ms: float
    far_end: ReportBlock | None
    far_end_jitter_ms: float | None


class ReceiveStats:
    """Statistics of the packets received on one stream.

    Call :meth:`update` for every RTP packet; ``timestamp=None`` leaves jitter alone (used for
    RFC 4733 events, whose packets repeat one timestamp). ``min_sequential`` is A.1's
    probation: 2 as in the RFC (the first packet of a source is not counted), 1 counts from the
    first packet.
    """

    __slots__ = (
        "_bad_seq",
        "_base_seq",
        "_carried_expected",
        "_carried_received",
        "_expected_prior",
        "_probation",
        "_received",
        "_received_prior",
        "_transit",
        "_window",
        "clock_rate",
        "cycles",
        "duplicates",
        "far_end",
        "far_end_at",
        "jitter",
        "last_at",
        "max_seq",
        "min_sequential",
        "reordered",
        "sources",
        "ssrc",
    )

    def __init__(self, clock_rate: int = 8000, *, min_sequential: int = MIN_SEQUENTIAL) -> None:
        if clock_rate <= 0:
            raise ValueError("clock rate must be positive")
        if min_sequential < 1:
            raise ValueError("min_sequential must be at least 1 (1: no probation)")
        self.clock_rate = clock_rate
        self.min_sequential = min_sequential
        self.ssrc: int | None = None
        self.sources = 0  # how many SSRCs were seen
        self.max_seq = 0
        self.cycles = 0
        self.jitter = 0.0  # timestamp units (A.8 keeps it as a float scaled by 16; same thing)
        self.duplicates = 0
        self.reordered = 0
        self.last_at: float | None = None
        self.far_end: ReportBlock | None = None
        self.far_end_at: float | None = None
        self._base_seq = 0
        self._bad_seq = RTP_SEQ_MOD + 1
        self._probation = 0
        self._received = 0
        self._carried_expected = 0
        self._carried_received = 0
        self._expected_prior = 0
        self._received_prior = 0
        self._window = 0
        self._transit: float | None = None

    # --------------------------------------------------------------------- the per-packet path

    def update(self, ssrc: int, seq: int, timestamp: int | None, now: float) -> None:
        """Account for one received packet (A.1 ``update_seq`` plus A.8 jitter)."""
        if ssrc != self.ssrc:
            self._new_source(ssrc, seq)
        self.last_at = now
        udelta = (seq - self.max_seq) & 0xFFFF
        if self._probation:
            # A.1: a source is valid after min_sequential packets in sequence.
            if udelta == 1:
                self._probation -= 1
                self.max_seq = seq
                if self._probation:
                    return
                self._init_seq(seq)
            else:
                self._probation = self.min_sequential - 1
                self.max_seq = seq
                return
        elif udelta < MAX_DROPOUT:
            if udelta:
                if seq < self.max_seq:
                    self.cycles += RTP_SEQ_MOD  # the 16-bit sequence number wrapped
                self.max_seq = seq
                self._window = ((self._window << udelta) | 1) & _WINDOW_MASK
            else:
                self.duplicates += 1  # the newest packet again
        elif udelta <= RTP_SEQ_MOD - MAX_MISORDER:
            # A very large jump: accept it once the next packet confirms it (the sender restarted).
            if seq != self._bad_seq:
                self._bad_seq = (seq + 1) & 0xFFFF
                return
            self._fold_totals()
            self._init_seq(seq)
        else:
            bit = 1 << (RTP_SEQ_MOD - udelta)  # a late packet, 1..100 behind the newest
            if self._window & bit:
                self.duplicates += 1
            else:
                self._window |= bit
                self.reordered += 1
        self._received += 1
        if timestamp is not None:
            transit = now * self.clock_rate - timestamp
            previous = self._transit
            self._transit = transit
            if previous is not None:
                d = transit - previous
                if d > _TS_HALF:  # the 32-bit RTP timestamp wrapped between the two packets
                    d -= _TS_MOD
                elif d < -_TS_HALF:
                    d += _TS_MOD
                if d < 0:
                    d = -d
                self.jitter += (d - self.jitter) / 16

    def _new_source(self, ssrc: int, seq: int) -> None:
        self._fold_totals()
        self.ssrc = ssrc
        self.sources += 1
        self._init_seq(seq)
        self.max_seq = (seq - 1) & 0xFFFF
        self._probation = self.min_sequential
        self._transit = None

    def _init_seq(self, seq: int) -> None:
        self._base_seq = seq
        self.max_seq = seq
        self._bad_seq = RTP_SEQ_MOD + 1  # so seq == bad_seq is false
        self.cycles = 0
        self._received = 0
        self._window = 1

    def _fold_totals(self) -> None:
        # Keep what the finished source (or sequence run) contributed before restarting A.1.
        self._carried_expected += self._source_expected()
        self._carried_received += self._received
        self._received = 0

    def _source_expected(self) -> int:
        if self._probation or self._received == 0:
            return 0
        return self.cycles + self.max_seq - self._base_seq + 1

    # ------------------------------------------------------------------------------ reading

    @property
    def valid(self) -> bool:
        """The current source passed probation (A.1)."""
        return self.ssrc is not None and not self._probation

    @property
    def extended_max(self) -> int:
        """The highest sequence number received, extended by the wrap count (A.1)."""
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        return self._carried_expected + self._source_expected()

    @property
    def received(self) -> int:
        return self._carried_received + self._received

    @property
    def lost(self) -> int:
        """Cumulative packets lost (A.3); negative when duplicates outnumber losses."""
        return self.expected - self.received

    @property
    def loss_ratio(self) -> float:
        """Lost / expected over the stream's life, 0 when nothing is lost or expected."""
        expected = self.expected
        return max(self.lost, 0) / expected if expected else 0.0

    @property
    def jitter_ms(self) -> float:
        return self.jitter * 1000 / self.clock_rate

    def interval(self) -> tuple[int, int, int]:
        """(fraction lost as 8-bit fixed point, expected, lost) since the previous call (A.3);
        what a receiver report block carries."""
        expected = self.expected
        received = self.received
        expected_interval = expected - self._expected_prior
        lost_interval = expected_interval - (received - self._received_prior)
        self._expected_prior = expected
        self._received_prior = received
        if expected_interval <= 0 or lost_interval <= 0:
            return 0, expected_interval, lost_interval
        return (lost_interval << 8) // expected_interval, expected_interval, lost_interval

    def report_block(self, last_sr: int = 0, delay_since_last_sr: int = 0) -> ReportBlock:
        """A reception report about the current source (A.3); advances the interval."""
        fraction, _, _ = self.interval()
        lost = max(min(self.lost, (1 << 23) - 1), -(1 << 23))  # clamp to 24 bits signed
        return ReportBlock(
            self.ssrc or 0,
            fraction,
            lost,
            self.extended_max & 0xFFFFFFFF,
            int(self.jitter),
            last_sr,
            delay_since_last_sr,
        )

    # ---------------------------------------------------------------- what the far end says

    def record_far_end(self, block: ReportBlock, now: float) -> None:
        """Keep the latest RTCP report block about this stream from its receiver."""
        self.far_end = block
        self.far_end_at = now

    @property
    def far_end_jitter_ms(self) -> float | None:
        if self.far_end is None:
            return None
        return self.far_end.jitter * 1000 / self.clock_rate

    def snapshot(self) -> StatsSnapshot:
        return StatsSnapshot(
            self.ssrc,
            self.expected,
            self.received,
            self.lost,
            self.loss_ratio,
            self.duplicates,
            self.reordered,
            self.jitter,
            self.jitter_ms,
            self.far_end,
            self.far_end_jitter_ms,
        )
