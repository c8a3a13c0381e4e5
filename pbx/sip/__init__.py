"""A sans-IO SIP stack (RFC 3261 and friends): no sockets, no asyncio, no clock inside.

``parse(data)`` turns bytes into a :class:`Request` or :class:`Response`; messages serialize
back with ``bytes(message)``. Transactions, dialogs and digest authentication build on these.
"""

from pbx.sip.errors import (
    LocalProtocolError,
    MessageTooLarge,
    ParseError,
    RemoteProtocolError,
    SipError,
)
from pbx.sip.headers import Address, CSeq, Via
from pbx.sip.message import Headers, Message, Request, Response, make_response
from pbx.sip.params import Params
from pbx.sip.parser import Limits, StreamFramer, parse
from pbx.sip.uri import AbsoluteUri, SipUri, Uri, parse_uri

__all__ = [
    "AbsoluteUri",
    "Address",
    "CSeq",
    "Headers",
    "Limits",
    "LocalProtocolError",
    "Message",
    "MessageTooLarge",
    "Params",
    "ParseError",
    "RemoteProtocolError",
    "Request",
    "Response",
    "SipError",
    "SipUri",
    "StreamFramer",
    "Uri",
    "Via",
    "make_response",
    "parse",
    "parse_uri",
]
