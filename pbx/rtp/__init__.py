"""Sans-IO RTP: packets (RTP, RTCP, RFC 4733 events), receive statistics, G.711.

Nothing here touches sockets, asyncio or the clock: arrival times are passed in.
"""

from pbx.rtp.packet import (
    Bye,
    PacketError,
    ReceiverReport,
    ReportBlock,
    RtcpOther,
    RtcpPacket,
    RtpExtension,
    RtpPacket,
    SenderReport,
    TelephoneEvent,
    build_rtcp,
    is_rtcp,
    is_rtp,
    parse_rtcp,
    parse_rtp,
    parse_telephone_event,
)
from pbx.rtp.stats import ReceiveStats, StatsSnapshot

__all__ = [
    "Bye",
    "PacketError",
    "ReceiveStats",
    "ReceiverReport",
    "ReportBlock",
    "RtcpOther",
    "RtcpPacket",
    "RtpExtension",
    "RtpPacket",
    "SenderReport",
    "StatsSnapshot",
    "TelephoneEvent",
    "build_rtcp",
    "is_rtcp",
    "is_rtp",
    "parse_rtcp",
    "parse_rtp",
    "parse_telephone_event",
]
