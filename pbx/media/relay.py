"""The media relay: every call's RTP is anchored on the box (asyncio adapter over pbx.rtp).

A :class:`MediaSession` has two legs, A and B, each with an RTP and an RTCP socket on the box.
A packet that arrives on leg A's socket leaves from leg B's socket to B's remote, and vice
versa, with its bytes untouched (SSRC, sequence numbers, timestamps, SRTP all pass through).
RTCP follows the same path (on the RTP socket when a leg uses rtcp-mux, RFC 5761).

Where to send (symmetric RTP / latching, for phones behind NAT):

- Until something arrives from a leg's phone, its media goes to the address in its SDP.
- The first RTP packet from an *acceptable* source latches the leg: from then on media for the
  phone goes to that packet's real source address and port (RFC 4961 symmetric RTP), and
  packets from any other source ("strangers") are dropped and counted.
- :class:`LatchPolicy` says what is acceptable. ``OPEN`` (default): a source with the SDP's
  IP address, any port; any source at all when the SDP address is not globally routable
  (RFC 1918, CGNAT 100.64/10, loopback, link-local, ULA) or not known yet, since the phone
  then wrote its own private address behind a NAT. ``STRICT``: the SDP's IP only.
  ``OFF``: no latching, media always goes to the SDP address and any source is relayed.
  The relay's policy applies to every leg unless a leg is given its own (``leg.latching``).
- A latch is redone when :meth:`Leg.set_remote` changes the SDP address (re-INVITE), or when
  the latched source has been silent for ``relatch_after`` seconds (default 3 s) and an
  acceptable source sends: long enough that two sources cannot take turns packet by packet,
  short enough that a NAT rebinding or Wi-Fi roam costs a phone about 3 s of one-way audio.
  RTCP on its own socket latches the same way, independently.

Hold: the SDP direction is recorded with :meth:`Leg.set_remote` / :meth:`Leg.set_direction`
(an old-style ``c=0.0.0.0`` hold leaves the leg with nowhere to send).
The relay still forwards what arrives (the phones already know from SDP what to send; a relay
that dropped it would only hide misbehaviour) and keeps counting. A held session is exempt
from dead-media detection, because phones on hold legitimately stop sending.

Dead media: when no RTP arrived on either leg for ``dead_after`` seconds, ``on_dead(session)``
is called once (again only after media resumed and stopped again), so the B2BUA can hang up.

Per-packet work is kept small: a source comparison, one header unpack, a few counters, the
:class:`~pbx.rtp.stats.ReceiveStats` update and one ``sendto``; DTMF, taps and RTCP parsing cost
only on the packets that need them.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

from pbx.media.ports import TOS_EF, MediaError, PortAllocator, PortPair
from pbx.rtp.packet import (
    Bye,
    PacketError,
    ReceiverReport,
    SenderReport,
    TelephoneEvent,
    is_rtcp,
    is_rtp,
    parse_rtcp,
    parse_rtp,
    parse_telephone_event,
    peek_sequence_timestamp_ssrc,
)
from pbx.rtp.stats import ReceiveStats, StatsSnapshot

log = logging.getLogger(__name__)

SdpDirection = Literal["sendrecv", "sendonly", "recvonly", "inactive"]
_DIRECTIONS = frozenset({"sendrecv", "sendonly", "recvonly", "inactive"})

Address = tuple[Any, ...]  # (host, port) for IPv4, (host, port, flowinfo, scope) for IPv6


class LatchPolicy(enum.Enum):
    """Which sources may latch a leg (see the module docstring)."""

    OPEN = "open"
    STRICT = "strict"
    OFF = "off"


class Direction(enum.Enum):
    """Which way a packet travels through a session."""

    A_TO_B = "a->b"
    B_TO_A = "b->a"


#: What a tap yields: direction, arrival time (the relay's clock), the packet's bytes.
TapItem = tuple[Direction, float, bytes]


class TapClosed(MediaError):
    """The tap was closed (or its session ended) and everything queued has been read."""


class InvalidRemote(MediaError, ValueError):
    """The address given for a leg's remote cannot be used from the relay's sockets."""


# ------------------------------------------------------------------------------------- taps


class Tap:
    """A copy of a session's RTP in both directions, in arrival order, for one consumer.

    A bounded queue: when it is full, new packets are dropped and counted in :attr:`dropped`,
    so a slow consumer never delays media. Read with ``await get()``, ``await get_batch()``
    or ``async for item in tap``; :meth:`close` stops the copying. Use it from the relay's
    event loop.
    """

    def __init__(self, session: MediaSession, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("a tap needs room for at least one packet")
        self.session = session
        self.maxsize = maxsize
        self.dropped = 0
        self.copied = 0
        self._items: deque[TapItem] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    def _offer(self, item: TapItem) -> None:
        # The relay's per-packet path: no awaiting, no allocation beyond the item.
        if len(self._items) >= self.maxsize:
            self.dropped += 1
            return
        self._items.append(item)
        self.copied += 1
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    @property
    def closed(self) -> bool:
        return self._closed

    def qsize(self) -> int:
        return len(self._items)

    def get_nowait(self) -> TapItem | None:
        """The oldest queued item, or None when nothing is queued."""
        return self._items.popleft() if self._items else None

    async def get(self) -> TapItem:
        """The oldest item, waiting for one. Raises :class:`TapClosed` once closed and empty."""
        await self._wait()
        return self._items.popleft()

    async def get_batch(self) -> list[TapItem]:
        """Everything queued (at least one item), waiting when empty."""
        await self._wait()
        return self.drain()

    def drain(self) -> list[TapItem]:
        """Everything queued now, without waiting. A consumer that writes in blocks (the
        recorder) is cheapest when it drains on its own timer, every 50-100 ms: awaiting
        :meth:`get` costs the relay a task wake-up per packet."""
        items = list(self._items)
        self._items.clear()
        return items

    async def _wait(self) -> None:
        while not self._items:
            if self._closed:
                raise TapClosed("tap closed")
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter

    def close(self) -> None:
        """Stop copying; what is queued can still be read."""
        if self._closed:
            return
        self._closed = True
        self.session._detach_tap(self)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __aiter__(self) -> Tap:
        return self

    async def __anext__(self) -> TapItem:
        try:
            return await self.get()
        except TapClosed:
            raise StopAsyncIteration from None


# ------------------------------------------------------------------------------- counters


@dataclass(frozen=True, slots=True)
class LegCounters:
    """A snapshot of one leg. ``received_*`` count RTP from this leg's phone (the direction
    away from it), ``sent_*`` RTP relayed to it. ``stats`` are the receive statistics of the
    stream from this phone, with ``stats.far_end`` the latest RTCP report about that stream
    from the phone on the other leg."""

    name: str
    received_packets: int
    received_bytes: int
    sent_packets: int
    sent_bytes: int
    strangers: int
    ignored: int
    no_destination: int
    send_errors: int
    rtcp_received: int
    rtcp_sent: int
    latches: int
    latched_source: Address | None
    last_received: float | None
    stats: StatsSnapshot


@dataclass(frozen=True, slots=True)
class SessionCounters:
    a: LegCounters
    b: LegCounters

    def direction(self, direction: Direction) -> tuple[LegCounters, LegCounters]:
        """(ingress leg, egress leg) of a direction: A->B enters on A and leaves on B."""
        return (self.a, self.b) if direction is Direction.A_TO_B else (self.b, self.a)


# ------------------------------------------------------------------------------------ legs


class Leg(asyncio.DatagramProtocol):
    """One side of a session: the box's RTP/RTCP sockets facing one phone (or trunk).

    It is the asyncio protocol of its RTP socket; :meth:`datagram_received` is the relay's
    per-packet path.
    """

    __slots__ = (
        "_clock",
        "_dest",
        "_event_pt",
        "_flow",
        "_last_event_ts",
        "_peer",
        "_policy",
        "_relatch_after",
        "_rtcp_dest",
        "_rtcp_endpoint",
        "_rtcp_lost",
        "_rtcp_source",
        "_rtcp_transport",
        "_rtp_lost",
        "_sdp",
        "_sdp_open",
        "_sdp_rtcp",
        "_source",
        "_taps",
        "_transport",
        "bye_at",
        "direction",
        "ignored",
        "last_rtcp_at",
        "last_rx",
        "latched_at",
        "latches",
        "name",
        "no_destination",
        "ports",
        "rtcp_mux",
        "rtcp_rx",
        "rtcp_tx",
        "rx_bytes",
        "rx_packets",
        "send_errors",
        "session",
        "stats",
        "strangers",
        "tx_bytes",
        "tx_packets",
    )

    def __init__(self, session: MediaSession, name: str, ports: PortPair, relay: MediaRelay):
        self.session = session
        self.name = name
        self.ports = ports
        self.direction: SdpDirection = "sendrecv"
        self.rtcp_mux = False
        self.stats = ReceiveStats()
        self.rx_packets = self.rx_bytes = 0
        self.tx_packets = self.tx_bytes = 0
        self.strangers = self.ignored = self.no_destination = self.send_errors = 0
        self.rtcp_rx = self.rtcp_tx = 0
        self.latches = 0
        self.last_rx: float | None = None
        self.latched_at: float | None = None
        self.last_rtcp_at: float | None = None
        self.bye_at: float | None = None
        self._clock = relay.clock
        self._policy = relay.latching
        self._relatch_after = relay.relatch_after
        self._peer: Leg = self  # set by the session once both legs exist
        self._taps = session._taps  # shared with the session: attaching a tap is seen at once
        self._transport: asyncio.DatagramTransport | None = None
        self._rtcp_transport: asyncio.DatagramTransport | None = None
        self._rtcp_endpoint = _RtcpEndpoint(self)
        self._rtp_lost: asyncio.Future[None] | None = None
        self._rtcp_lost: asyncio.Future[None] | None = None
        self._flow = Direction.A_TO_B if name == "A" else Direction.B_TO_A
        self._sdp: Address | None = None
        self._sdp_rtcp: Address | None = None
        self._sdp_open = True  # no SDP yet: nothing to compare against
        self._source: Address | None = None
        self._dest: Address | None = None
        self._rtcp_source: Address | None = None
        self._rtcp_dest: Address | None = None
        self._event_pt = -1
        self._last_event_ts: int | None = None

    # ------------------------------------------------------------------ B2BUA-facing API

    @property
    def local_address(self) -> tuple[str, int]:
        """Where this leg's phone must send RTP: put it into the SDP for that phone."""
        return self.ports.host, self.ports.rtp_port

    @property
    def local_rtcp_port(self) -> int:
        return self.ports.rtcp_port

    @property
    def remote(self) -> Address | None:
        """The RTP address from this leg's SDP."""
        return self._sdp

    @property
    def destination(self) -> Address | None:
        """Where RTP for this leg's phone goes now: the latched source, else the SDP address."""
        return self._dest

    @property
    def rtcp_destination(self) -> Address | None:
        return self._dest if self.rtcp_mux else self._rtcp_dest

    @property
    def latched(self) -> bool:
        return self._source is not None

    @property
    def latched_source(self) -> Address | None:
        return self._source

    @property
    def dtmf_payload_type(self) -> int | None:
        return None if self._event_pt < 0 else self._event_pt

    def set_remote(
        self,
        host: str,
        rtp_port: int,
        rtcp_port: int | None = None,
        rtcp_mux: bool = False,
        *,
        direction: SdpDirection = "sendrecv",
        dtmf_payload_type: int | None = None,
        clock_rate: int = 8000,
    ) -> None:
        """This leg's remote as its SDP describes it; call again with every new SDP
        (re-INVITE, UPDATE): each call states the whole picture.

        ``host`` is an IP literal (``c=``), ``rtp_port`` the ``m=`` port (0: stream
        rejected, nothing is sent), ``rtcp_port`` from ``a=rtcp`` (default ``rtp_port + 1``),
        ``rtcp_mux`` when both sides agreed on ``a=rtcp-mux``, ``direction`` the SDP direction
        attribute. ``dtmf_payload_type`` is the telephone-event payload type of packets *from*
        this phone (None: not negotiated); ``clock_rate`` that of its audio, for jitter.
        A changed address drops the latch, so the phone's next packet latches afresh; the same
        address keeps it (a hold/resume re-INVITE does not disturb NATed media).
        """
        try:
            ip = ipaddress.ip_address(host)
        except ValueError as exc:
            raise InvalidRemote(f"remote host {host!r} is not an IP address") from exc
        if (ip.version == 6) != (":" in self.ports.host):
            raise InvalidRemote(f"remote {host} and the relay's {self.ports.host} differ in family")
        if not 0 <= rtp_port <= 65535 or not 0 <= (rtcp_port or 0) <= 65535:
            raise InvalidRemote(f"remote port {rtp_port}/{rtcp_port} out of range")
        if dtmf_payload_type is not None and not 0 <= dtmf_payload_type < 128:
            raise InvalidRemote(f"payload type {dtmf_payload_type} out of range")
        if clock_rate <= 0:
            raise InvalidRemote(f"clock rate {clock_rate} is not positive")
        self.set_direction(direction)
        text = str(ip)
        # Port 0 rejects the stream; c=0.0.0.0 is RFC 2543 hold: nothing to send to either.
        usable = rtp_port != 0 and not ip.is_unspecified
        sdp = (text, rtp_port) if usable else None
        sdp_rtcp = (text, rtcp_port or rtp_port + 1) if usable else None
        if sdp != self._sdp or sdp_rtcp != self._sdp_rtcp or rtcp_mux != self.rtcp_mux:
            self._sdp, self._sdp_rtcp, self.rtcp_mux = sdp, sdp_rtcp, rtcp_mux
            self._sdp_open = not ip.is_global
            self._unlatch()
        self._event_pt = -1 if dtmf_payload_type is None else dtmf_payload_type
        self.stats.clock_rate = clock_rate

    @property
    def latching(self) -> LatchPolicy:
        """The latching policy of this leg (the relay's unless changed, e.g. ``STRICT`` for a
        trunk whose media always comes from its SDP address)."""
        return self._policy

    @latching.setter
    def latching(self, policy: LatchPolicy) -> None:
        self._policy = policy
        self._unlatch()

    def set_direction(self, direction: SdpDirection) -> None:
        """This leg's SDP direction attribute (hold: sendonly / inactive)."""
        if direction not in _DIRECTIONS:
            raise InvalidRemote(f"unknown SDP direction {direction!r}")
        self.direction = direction

    @property
    def on_hold(self) -> bool:
        return self.direction != "sendrecv"

    def counters(self) -> LegCounters:
        return LegCounters(
            self.name,
            self.rx_packets,
            self.rx_bytes,
            self.tx_packets,
            self.tx_bytes,
            self.strangers,
            self.ignored,
            self.no_destination,
            self.send_errors,
            self.rtcp_rx,
            self.rtcp_tx,
            self.latches,
            self._source,
            self.last_rx,
            self.stats.snapshot(),
        )

    # ------------------------------------------------------------------- asyncio protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        _resolve(self._rtp_lost)

    def error_received(self, exc: Exception) -> None:
        # A failed send to this leg's phone (asyncio reports it here, not from sendto).
        self.send_errors += 1
        log.debug("leg %s of %s: %s", self.name, self.session, exc)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if addr == self._source:
            self._relay(data)
        else:
            self._from_elsewhere(data, addr)

    # ------------------------------------------------------------------- per-packet path

    def _relay(self, data: bytes) -> None:
        size = len(data)
        if size < 4 or data[0] & 0xC0 != 0x80:
            self.ignored += 1  # not version 2: STUN, DTLS, keep-alives
            return
        now = self._clock()
        second = data[1]
        if 191 < second < 224:  # RTCP on the RTP port (rtcp-mux, RFC 5761 §4)
            self._rtcp(data, now)
            return
        if size < 12:
            self.ignored += 1
            return
        self.last_rx = now
        self.rx_packets += 1
        self.rx_bytes += size
        seq, timestamp, ssrc = peek_sequence_timestamp_ssrc(data, 2)
        if second & 0x7F == self._event_pt:
            self.stats.update(ssrc, seq, None, now)  # events repeat a timestamp: no jitter
            self._event(data)
        else:
            self.stats.update(ssrc, seq, timestamp, now)
        out = self._peer
        dest = out._dest
        transport = out._transport
        if dest is None or transport is None:
            self.no_destination += 1
        else:
            try:
                transport.sendto(data, dest)
            except OSError:  # uvloop raises what asyncio hands to error_received
                out.send_errors += 1
            else:
                out.tx_packets += 1
                out.tx_bytes += size
        if self._taps:
            item = (self._flow, now, data)
            for tap in self._taps:
                tap._offer(item)

    def _from_elsewhere(self, data: bytes, addr: Address) -> None:
        """A packet not from the latched source, or before anything latched."""
        policy = self._policy
        if policy is LatchPolicy.OFF:
            self._relay(data)
            return
        if self._source is not None:
            last = self.last_rx
            if last is not None and self._clock() - last < self._relatch_after:
                self.strangers += 1
                return
        rtcp = is_rtcp(data)
        if not rtcp and not is_rtp(data):
            self.ignored += 1
            return
        if not self._acceptable(addr):
            self.strangers += 1
            return
        if rtcp:  # rtcp-mux RTCP before RTP latched: relay it, but only RTP latches
            self._rtcp(data, self._clock())
            return
        self._latch(addr)
        self._relay(data)

    def _acceptable(self, addr: Address) -> bool:
        sdp = self._sdp
        if sdp is not None and addr[0] == sdp[0]:
            return True
        return self._policy is LatchPolicy.OPEN and self._sdp_open

    def _latch(self, addr: Address) -> None:
        if self._source is None:
            log.debug("%r of %s latched to %s", self, self.session, addr)
        else:
            log.info("%r of %s re-latched %s -> %s", self, self.session, self._source, addr)
        self._source = self._dest = addr
        self.latched_at = self._clock()
        self.latches += 1

    def _unlatch(self) -> None:
        self._source = None
        self._dest = self._sdp
        self._rtcp_source = None
        self._rtcp_dest = self._sdp_rtcp

    def _event(self, data: bytes) -> None:
        # RFC 4733 §2.5.1.4: the end packet is sent three times; report the event once.
        try:
            packet = parse_rtp(data)
            event = parse_telephone_event(packet.payload)
        except PacketError:
            return
        if not event.end or packet.timestamp == self._last_event_ts:
            return
        self._last_event_ts = packet.timestamp
        callback = self.session.on_dtmf
        if callback is not None:
            try:
                callback(self, event)
            except Exception:
                log.exception("DTMF callback of %s failed", self.session)

    # ---------------------------------------------------------------------------- RTCP

    def _rtcp_from(self, data: bytes, addr: Address) -> None:
        """A datagram on the RTCP socket (legs without rtcp-mux)."""
        if len(data) < 4 or data[0] & 0xC0 != 0x80:
            self.ignored += 1  # not version 2: never latches
            return
        if addr != self._rtcp_source and self._policy is not LatchPolicy.OFF:
            # RTCP comes every few seconds, so the leg's RTP keeps the RTCP latch alive too.
            last = max(self.last_rtcp_at or 0.0, self.last_rx or 0.0)
            if self._rtcp_source is not None and self._clock() - last < self._relatch_after:
                self.strangers += 1
                return
            if not self._acceptable(addr):
                self.strangers += 1
                return
            self._rtcp_source = self._rtcp_dest = addr
        self._rtcp(data, self._clock())

    def _rtcp(self, data: bytes, now: float) -> None:
        self.rtcp_rx += 1
        self.last_rtcp_at = now
        try:
            packets = parse_rtcp(data)
        except PacketError:
            packets = ()  # SRTCP or a vendor oddity: relayed, just not read
        for packet in packets:
            if isinstance(packet, SenderReport | ReceiverReport) and packet.reports:
                # This phone reports on what it receives: the stream entering the other leg.
                self._peer.stats.record_far_end(packet.reports[0], now)
            elif isinstance(packet, Bye):
                self.bye_at = now
        out = self._peer
        if out.rtcp_mux:
            dest, transport = out._dest, out._transport
        else:
            dest, transport = out._rtcp_dest, out._rtcp_transport
        if dest is None or transport is None:
            return
        try:
            transport.sendto(data, dest)
        except OSError:
            out.send_errors += 1
        else:
            out.rtcp_tx += 1

    # --------------------------------------------------------------------------- closing

    async def _open(self, loop: asyncio.AbstractEventLoop) -> None:
        self._rtp_lost = loop.create_future()
        self._rtcp_lost = loop.create_future()
        await loop.create_datagram_endpoint(lambda: self, sock=self.ports.rtp_socket)
        await loop.create_datagram_endpoint(
            lambda: self._rtcp_endpoint, sock=self.ports.rtcp_socket
        )

    async def _close(self) -> None:
        """Close both transports and wait until they let go of their sockets."""
        pending = []
        for transport, lost in (
            (self._transport, self._rtp_lost),
            (self._rtcp_transport, self._rtcp_lost),
        ):
            if transport is not None and lost is not None:
                transport.close()
                pending.append(lost)
        if pending:
            await asyncio.wait(pending, timeout=2.0)

    def __repr__(self) -> str:
        return f"<Leg {self.name} {self.ports.host}:{self.ports.rtp_port} -> {self._dest}>"


class _RtcpEndpoint(asyncio.DatagramProtocol):
    """The protocol of a leg's RTCP socket."""

    __slots__ = ("leg",)

    def __init__(self, leg: Leg) -> None:
        self.leg = leg

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.leg._rtcp_transport = cast(asyncio.DatagramTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.leg._rtcp_transport = None
        _resolve(self.leg._rtcp_lost)

    def error_received(self, exc: Exception) -> None:
        self.leg.send_errors += 1

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.leg._rtcp_from(data, addr)


def _resolve(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


# -------------------------------------------------------------------------------- sessions


class MediaSession:
    """A call's media on the box: legs :attr:`a` and :attr:`b`. Made by
    :meth:`MediaRelay.create_session`; end it with :meth:`close`.

    ``on_dead(session)`` is called when media stopped (see the module docstring);
    ``on_dtmf(leg, event)`` once per RFC 4733 event, when its end packet passes through
    ``leg`` (needs the leg's ``dtmf_payload_type``). Both may be set at any time.
    """

    def __init__(
        self,
        relay: MediaRelay,
        number: int,
        label: str,
        ports: tuple[PortPair, PortPair],
        dead_after: float,
    ) -> None:
        self.relay = relay
        self.id = number
        self.label = label or f"media-{number}"
        self.dead_after = dead_after
        self.on_dead: Callable[[MediaSession], None] | None = None
        self.on_dtmf: Callable[[Leg, TelephoneEvent], None] | None = None
        self.created_at = relay.clock()
        self._taps: list[Tap] = []  # shared by both legs; mutated in place only
        self.a = Leg(self, "A", ports[0], relay)
        self.b = Leg(self, "B", ports[1], relay)
        self.a._peer, self.b._peer = self.b, self.a
        self._closed = False
        self._dead_reported = False
        self._activity_floor = self.created_at  # moved up while on hold

    @property
    def legs(self) -> tuple[Leg, Leg]:
        return self.a, self.b

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def on_hold(self) -> bool:
        return self.a.on_hold or self.b.on_hold

    @property
    def last_activity(self) -> float:
        """When RTP last arrived on either leg (the session's start, or the end of a hold,
        when that is later)."""
        return max(self._activity_floor, self.a.last_rx or 0.0, self.b.last_rx or 0.0)

    def tap(self, maxsize: int = 1000) -> Tap:
        """Start copying both directions' RTP into a new bounded :class:`Tap`."""
        if self._closed:
            raise MediaError(f"{self} is closed")
        tap = Tap(self, maxsize)
        self._taps.append(tap)
        return tap

    def _detach_tap(self, tap: Tap) -> None:
        if tap in self._taps:
            self._taps.remove(tap)

    def counters(self) -> SessionCounters:
        return SessionCounters(self.a.counters(), self.b.counters())

    def _check_dead(self, now: float) -> None:
        if self.on_hold:
            self._activity_floor = now
            self._dead_reported = False
            return
        if now - self.last_activity < self.dead_after:
            self._dead_reported = False
            return
        if self._dead_reported:
            return
        self._dead_reported = True
        log.info("%s: no media for %.0f s", self, now - self.last_activity)
        if self.on_dead is not None:
            try:
                self.on_dead(self)
            except Exception:
                log.exception("dead-media callback of %s failed", self)

    async def close(self) -> None:
        """Stop relaying, close the taps and give the ports back. Closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        self.relay._forget(self)
        for tap in list(self._taps):
            tap.close()
        await self._teardown()

    async def _teardown(self) -> None:
        await asyncio.gather(self.a._close(), self.b._close())
        self.relay.ports.release(self.a.ports)
        self.relay.ports.release(self.b.ports)

    def __repr__(self) -> str:
        return f"<MediaSession {self.label}>"


# ----------------------------------------------------------------------------------- relay


class MediaRelay:
    """Makes :class:`MediaSession` s with sockets on ``bind_host``, RTP ports from
    ``port_range`` (inclusive). Use from one event loop; close with :meth:`close` or
    ``async with``.

    ``dead_after``: seconds without RTP on both legs before ``on_dead``; checked every
    ``dead_check_interval`` (default: a quarter of ``dead_after``, at most 1 s).
    ``clock``: monotonic seconds; also the time stamped on tap items and used for jitter.
    """

    def __init__(
        self,
        bind_host: str,
        port_range: tuple[int, int],
        *,
        latching: LatchPolicy = LatchPolicy.OPEN,
        relatch_after: float = 3.0,
        dead_after: float = 60.0,
        dead_check_interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        tos: int | None = TOS_EF,
        receive_buffer: int | None = None,
    ) -> None:
        if dead_after <= 0 or relatch_after < 0:
            raise ValueError("dead_after must be positive and relatch_after not negative")
        self.ports = PortAllocator(
            bind_host, port_range[0], port_range[1], tos=tos, receive_buffer=receive_buffer
        )
        self.bind_host = self.ports.host
        self.latching = latching
        self.relatch_after = relatch_after
        self.dead_after = dead_after
        self.dead_check_interval = dead_check_interval or min(1.0, dead_after / 4)
        self.clock = clock
        self._sessions: dict[int, MediaSession] = {}
        self._next_id = 1
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def sessions(self) -> list[MediaSession]:
        return list(self._sessions.values())

    async def create_session(
        self,
        label: str = "",
        *,
        on_dead: Callable[[MediaSession], None] | None = None,
        on_dtmf: Callable[[Leg, TelephoneEvent], None] | None = None,
        dead_after: float | None = None,
    ) -> MediaSession:
        """Bind two port pairs and start relaying between them. Raises
        :class:`~pbx.media.ports.PortsExhausted` when the range is used up."""
        if self._closed:
            raise MediaError("the media relay is closed")
        loop = asyncio.get_running_loop()
        first = self.ports.allocate()
        try:
            second = self.ports.allocate()
        except BaseException:
            self.ports.release(first)
            raise
        session = MediaSession(
            self, self._next_id, label, (first, second), dead_after or self.dead_after
        )
        self._next_id += 1
        session.on_dead, session.on_dtmf = on_dead, on_dtmf
        try:
            await session.a._open(loop)
            await session.b._open(loop)
        except BaseException:
            await session._teardown()
            raise
        self._sessions[session.id] = session
        if self._timer is None:
            self._timer = loop.call_later(self.dead_check_interval, self._check_dead, loop)
        return session

    def _forget(self, session: MediaSession) -> None:
        self._sessions.pop(session.id, None)

    def _check_dead(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = self.clock()
        for session in list(self._sessions.values()):
            session._check_dead(now)
        if self._sessions and not self._closed:
            self._timer = loop.call_later(self.dead_check_interval, self._check_dead, loop)

    async def close(self) -> None:
        """Close every session."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await asyncio.gather(*(s.close() for s in list(self._sessions.values())))

    async def __aenter__(self) -> MediaRelay:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
