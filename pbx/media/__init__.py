"""Media plane adapters (asyncio): the RTP relay anchoring every call's media on the box,
and the RTP/RTCP port allocator it binds from. Packet logic lives in :mod:`pbx.rtp`."""

from pbx.media.ports import MediaError, PortAllocator, PortBindError, PortPair, PortsExhausted
from pbx.media.relay import (
    Direction,
    InvalidRemote,
    LatchPolicy,
    Leg,
    LegCounters,
    MediaRelay,
    MediaSession,
    SessionCounters,
    Tap,
    TapClosed,
    TapItem,
)

__all__ = [
    "Direction",
    "InvalidRemote",
    "LatchPolicy",
    "Leg",
    "LegCounters",
    "MediaError",
    "MediaRelay",
    "MediaSession",
    "PortAllocator",
    "PortBindError",
    "PortPair",
    "PortsExhausted",
    "SessionCounters",
    "Tap",
    "TapClosed",
    "TapItem",
]
