"""Errors of the SIP stack.

Every error the stack raises derives from :class:`SipError`. A peer's mistake
(:class:`RemoteProtocolError`) carries the reaction it calls for: a status code to answer
with, or ``status is None`` meaning "drop silently" (a broken response, or a request so broken
that no reply can be addressed). A mistake in our own use of the stack is a
:class:`LocalProtocolError` and is never sent to a peer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pbx.sip.message import Headers


class SipError(Exception):
    """Base of every error raised by :mod:`pbx.sip`."""


class RemoteProtocolError(SipError):
    """Something received from a peer violates SIP.

    ``status``: the response code to answer with, or ``None`` to drop the message.
    ``reason``: a short human reason, safe to put into a reason phrase.
    ``headers``: the header lines of the offending request, when it is to be answered, so a
    stateless answer can copy Via, From, To, Call-ID and CSeq from them.
    """

    def __init__(
        self, reason: str, status: int | None = 400, headers: Headers | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.headers = headers

    @property
    def drop(self) -> bool:
        return self.status is None


class ParseError(RemoteProtocolError):
    """The bytes are not a well-formed SIP message (RFC 3261 §25)."""


class MessageTooLarge(ParseError):
    """The message exceeds the configured size or header-count limit."""

    def __init__(
        self, reason: str, status: int | None = 513, headers: Headers | None = None
    ) -> None:
        super().__init__(reason, status, headers)


class LocalProtocolError(SipError):
    """The application used the stack in a way SIP forbids (a bug on our side)."""
