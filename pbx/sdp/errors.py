"""Errors of the SDP layer.

A bad session description from a peer is a :class:`pbx.sip.errors.RemoteProtocolError`, so
the SIP layer answers it like any other peer mistake. The status says how:

- 400 (Bad Request): the body is not a well-formed session description (:class:`SdpParseError`);
- 488 (Not Acceptable Here, RFC 3261 §21.4.26): it is well formed but nothing in it can be
  accepted, or an answer breaks the offer/answer rules of RFC 3264 (:class:`SdpNotAcceptable`).

When the bad SDP arrives in a response (an answer in a 200 from the callee), the status is the
one to give the *other* leg; the leg that sent it is ACKed and hung up by the call layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pbx.sip.errors import RemoteProtocolError

if TYPE_CHECKING:
    from pbx.sip.message import Headers


class SdpError(RemoteProtocolError):
    """Base of every error raised by :mod:`pbx.sdp` for a peer's session description."""

    def __init__(
        self, reason: str, status: int | None = 488, headers: Headers | None = None
    ) -> None:
        super().__init__(reason, status, headers)


class SdpParseError(SdpError):
    """The bytes are not a well-formed session description (RFC 8866 §5, §9)."""

    def __init__(
        self, reason: str, status: int | None = 400, headers: Headers | None = None
    ) -> None:
        super().__init__(reason, status, headers)


class SdpNotAcceptable(SdpError):
    """Well-formed, but unacceptable: no common codec, an unsupported stream, or an answer that
    does not fit its offer (RFC 3264 §6)."""


def show(text: str, limit: int = 40) -> str:
    """Peer text made safe for a reason phrase: ASCII, escaped, quoted, cut short."""
    if len(text) > limit:
        text = text[:limit] + "..."
    return ascii(text)
