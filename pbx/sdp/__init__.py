"""SDP for the B2BUA, sans-IO: session descriptions (RFC 8866) and offer/answer (RFC 3264).

``parse_sdp(body)`` gives a :class:`SessionDescription`, ``bytes(sdp)`` the body again. An
:class:`SdpLeg` per call leg rewrites the other leg's offers and answers so that media runs
through the box; :func:`media_targets` tells the relay where each peer wants its RTP.
"""

from pbx.sdp.errors import SdpError, SdpNotAcceptable, SdpParseError
from pbx.sdp.offer_answer import (
    MediaTarget,
    SdpLeg,
    SdpPolicy,
    is_hold,
    media_targets,
    negotiated_codec,
)
from pbx.sdp.session import (
    Attribute,
    Bandwidth,
    Codec,
    Connection,
    Direction,
    MediaDescription,
    Origin,
    Rtcp,
    SessionDescription,
    Timing,
    parse_sdp,
)

__all__ = [
    "Attribute",
    "Bandwidth",
    "Codec",
    "Connection",
    "Direction",
    "MediaDescription",
    "MediaTarget",
    "Origin",
    "Rtcp",
    "SdpError",
    "SdpLeg",
    "SdpNotAcceptable",
    "SdpParseError",
    "SdpPolicy",
    "SessionDescription",
    "Timing",
    "is_hold",
    "media_targets",
    "negotiated_codec",
    "parse_sdp",
]
