"""What every UAS checks before processing a request (RFC 3261 §8.2.1-§8.2.3, §11, §16.3).

A pure function of the request and the element's capabilities: it returns the error response
to send, or ``None`` when the request may be processed. The order is the RFC's: method, then
URI scheme, then extensions (Require), then content (Content-Type, Content-Encoding).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pbx.sip.errors import ParseError
from pbx.sip.message import Request, Response, make_response

# Methods this stack knows by name (a method outside this set is "not recognized": 501).
KNOWN_METHODS = frozenset(
    {
        "ACK", "BYE", "CANCEL", "INFO", "INVITE", "MESSAGE", "NOTIFY", "OPTIONS", "PRACK",
        "PUBLISH", "REFER", "REGISTER", "SUBSCRIBE", "UPDATE",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What this element supports; advertised in OPTIONS answers and checked on requests."""

    methods: frozenset[str] = frozenset(
        {
            "INVITE",
            "ACK",
            "CANCEL",
            "BYE",
            "OPTIONS",
            "REGISTER",
            "INFO",
            "UPDATE",
            "REFER",
            "MESSAGE",
        }
    )
    schemes: frozenset[str] = frozenset({"sip", "sips", "tel"})
    option_tags: frozenset[str] = frozenset({"replaces", "timer", "path", "outbound"})
    content_types: frozenset[str] = frozenset(
        {"application/sdp", "application/dtmf-relay", "message/sipfrag", "text/plain"}
    )
    content_encodings: frozenset[str] = frozenset({"identity"})
    user_agent: str = "edgepbx"
    # Headers to add to every OPTIONS answer (e.g. Accept-Language).
    extra: tuple[tuple[str, str], ...] = field(default=())

    def allow_header(self) -> str:
        order = ["INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER"]
        rest = sorted(self.methods - set(order))
        return ", ".join([m for m in order if m in self.methods] + rest)


def check_request(request: Request, caps: Capabilities, to_tag: str) -> Response | None:
    """The §8.2 checks. ``to_tag`` is used for the error response's To tag."""
    method = request.method
    if method not in caps.methods:
        # §8.2.1: recognized but not supported -> 405 with Allow; unknown -> 501.
        status = 405 if method in KNOWN_METHODS else 501
        return make_response(request, status, to_tag=to_tag, extra=[("Allow", caps.allow_header())])
    if request.uri.scheme not in caps.schemes:  # §8.2.2.1
        return make_response(request, 416, to_tag=to_tag)
    if method not in ("ACK", "CANCEL"):  # §8.2.2.3: never 420 to ACK or CANCEL
        try:
            required = request.tokens("Require")
        except ParseError:
            return make_response(request, 400, "Malformed Require header", to_tag=to_tag)
        unsupported = [tag for tag in required if tag.lower() not in caps.option_tags]
        if unsupported:
            extra = [("Unsupported", ", ".join(unsupported))]
            return make_response(request, 420, to_tag=to_tag, extra=extra)
    content = _check_content(request, caps, to_tag)
    if content is not None:
        return content
    if method == "INVITE" and not _accepts_sdp(request):
        # We answer every INVITE with SDP; a caller that cannot take it gets 406 (RFC 4475
        # §3.3.15) with a Warning saying why.
        warning = '399 edgepbx "an answer can only be given in application/sdp"'
        return make_response(request, 406, to_tag=to_tag, extra=[("Warning", warning)])
    return None


def _accepts_sdp(request: Request) -> bool:
    accepted = request.headers.values("Accept")
    if not accepted:
        return True  # absent Accept means application/sdp (§20.1)
    types = {a.split(";", 1)[0].strip().lower() for a in accepted}
    return bool(types & {"application/sdp", "application/*", "*/*"})


def _check_content(request: Request, caps: Capabilities, to_tag: str) -> Response | None:
    """§8.2.3: a body we cannot read gets 415 naming what we do accept."""
    if not request.body:
        return None
    ctype = request.content_type
    if ctype is not None and ctype not in caps.content_types and not ctype.startswith("multipart/"):
        accept = ", ".join(sorted(caps.content_types))
        return make_response(request, 415, to_tag=to_tag, extra=[("Accept", accept)])
    encodings = [e.lower() for e in request.headers.values("Content-Encoding")]
    if any(e not in caps.content_encodings for e in encodings):
        accept = ", ".join(sorted(caps.content_encodings))
        return make_response(request, 415, to_tag=to_tag, extra=[("Accept-Encoding", accept)])
    return None


def check_max_forwards(request: Request, to_tag: str) -> Response | None:
    """§16.3 step 2 (for requests the element forwards): Max-Forwards 0 -> 483.
    OPTIONS addressed to the element itself is answered instead (§11.1 and RFC 4475 §3.3.12)."""
    if request.max_forwards == 0 and request.method != "ACK":
        return make_response(request, 483, to_tag=to_tag)
    return None


def options_response(request: Request, caps: Capabilities, to_tag: str) -> Response:
    """200 to an out-of-dialog OPTIONS (§11.2) listing what this element supports."""
    extra = [
        ("Allow", caps.allow_header()),
        ("Accept", ", ".join(sorted(caps.content_types))),
        ("Accept-Encoding", ", ".join(sorted(caps.content_encodings))),
        ("Supported", ", ".join(sorted(caps.option_tags))),
        ("Server", caps.user_agent),
        *caps.extra,
    ]
    return make_response(request, 200, to_tag=to_tag, extra=extra)
