"""Header names and the typed header values the stack relies on (RFC 3261 §7.3, §20, §25.1).

Names: compact forms (§7.3.3) expand to their long names and every name gets one canonical
spelling, so lookups are plain string compares. Values: Via, name-addr/addr-spec headers
(From, To, Contact, Route, Record-Route, ...) and CSeq parse into frozen dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache

from pbx.sip import abnf
from pbx.sip.errors import ParseError
from pbx.sip.params import Params, split_params
from pbx.sip.uri import SipUri, Uri, parse_uri

_CANONICAL = [
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
    "Allow-Events", "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact",
    "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
    "Content-Type", "CSeq", "Date", "Error-Info", "Event", "Expires", "From", "History-Info",
    "Identity", "In-Reply-To", "Max-Forwards", "Min-Expires", "Min-SE", "MIME-Version",
    "Organization", "P-Asserted-Identity", "P-Preferred-Identity", "Path", "Priority",
    "Privacy", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "RAck", "Reason",
    "Record-Route", "Refer-To", "Referred-By", "Reject-Contact", "Replaces", "Reply-To",
    "Request-Disposition", "Require", "Retry-After", "Route", "RSeq", "Server",
    "Service-Route", "Session-Expires", "SIP-ETag", "SIP-If-Match", "Subject",
    "Subscription-State", "Supported", "Timestamp", "To", "Unsupported", "User-Agent", "Via",
    "Warning", "WWW-Authenticate",
]  # fmt: skip
CANONICAL_NAMES: dict[str, str] = {name.lower(): name for name in _CANONICAL}
# Compact forms, RFC 3261 §7.3.3 and extensions (RFC 3515 r, RFC 3892 b, RFC 4028 x, ...).
CANONICAL_NAMES.update(
    {
        "i": "Call-ID", "m": "Contact", "e": "Content-Encoding", "l": "Content-Length",
        "c": "Content-Type", "f": "From", "s": "Subject", "k": "Supported", "t": "To",
        "v": "Via", "o": "Event", "u": "Allow-Events", "r": "Refer-To", "b": "Referred-By",
        "x": "Session-Expires", "a": "Accept-Contact", "j": "Reject-Contact",
        "d": "Request-Disposition", "y": "Identity",
    }
)  # fmt: skip

CANONICAL_SET = frozenset(CANONICAL_NAMES.values())

# Headers whose grammar is a comma-separated list (§7.3.1): one line may carry several values.
LIST_HEADERS = frozenset(
    {
        "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow", "Allow-Events",
        "Call-Info", "Contact", "Content-Encoding", "Content-Language", "Error-Info",
        "In-Reply-To", "Path", "Proxy-Require", "Record-Route", "Reply-To", "Require", "Route",
        "Service-Route", "Supported", "Unsupported", "Via", "Warning", "History-Info",
        "P-Asserted-Identity", "P-Preferred-Identity", "Reason", "Privacy",
    }
)  # fmt: skip
# Headers that must appear at most once (§20 and RFC 4475 §3.3.8/§3.3.9).
SINGLE_HEADERS = frozenset(
    {"Call-ID", "CSeq", "From", "To", "Max-Forwards", "Content-Type", "Expires"}
)


def canonical_name(name: str) -> str:
    """The canonical spelling of a header name (compact forms expanded)."""
    if name in CANONICAL_SET:
        return name
    known = CANONICAL_NAMES.get(name.lower())
    if known is not None:
        return known
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value, respecting quotes and ``<...>``; drop empties."""
    if "," not in value:
        value = value.strip()
        return [value] if value else []
    if '"' not in value and "<" not in value:
        parts = value.split(",")
    else:
        parts = abnf.split_outside_quotes(value, ",")
    return [p.strip() for p in parts if p.strip()]


def parse_params(text: str, where: str) -> Params:
    """Parse ``name[=value]`` items (already split off after the first ``;``): generic-param."""
    items: list[tuple[str, str | None]] = []
    for part in split_params(text):
        name, eq, value = part.partition("=")
        name = name.strip()
        if not abnf.is_token(name):
            raise ParseError(f"invalid parameter {part.strip()!r} in {where}")
        if eq:
            value = value.strip()
            if value.startswith('"'):
                if abnf.find_quoted_end(value, 0) != len(value) - 1:
                    raise ParseError(f"invalid quoted parameter in {where}")
            elif not _is_gen_value(value):
                raise ParseError(f"invalid parameter value {value!r} in {where}")
            items.append((name, value))
        else:
            items.append((name, None))
    return Params(tuple(items))


def _is_gen_value(value: str) -> bool:
    # gen-value = token / host / quoted-string; IPv6 references and bare IPv6 (received=) too.
    if abnf.is_token(value):
        return True
    try:
        abnf.check_host(value, allow_bare_ipv6=True)
    except ParseError:
        return False
    return True


# ---------------------------------------------------------------------------------------- Via


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value: ``SIP/2.0/UDP host:port;branch=...;received=...;rport`` (§20.42)."""

    transport: str
    host: str
    port: int | None = None
    params: Params = field(default_factory=Params)
    protocol: str = "SIP/2.0"

    def __str__(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        return f"{self.protocol}/{self.transport} {self.host}{port}{self.params}"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> int | None:
        """The filled-in ``rport`` value; ``None`` when absent or still empty."""
        value = self.params.get("rport")
        return int(value) if value else None

    @property
    def wants_rport(self) -> bool:
        return "rport" in self.params

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return self.host.lower(), self.port

    @property
    def is_rfc3261(self) -> bool:
        """Whether the branch carries the RFC 3261 magic cookie (§8.1.1.7)."""
        branch = self.branch
        return branch is not None and branch.startswith("z9hG4bK")

    def with_params(self, **values: str | None) -> Via:
        params = self.params
        for name, value in values.items():
            params = params.with_(name, value)
        return replace(self, params=params)


def parse_via(value: str) -> Via:
    return _parse_via(value.strip())


@lru_cache(maxsize=1024)
def _parse_via(text: str) -> Via:
    value = text
    proto, sep, rest = _split_sent_protocol(text)
    if not sep:
        raise ParseError(f"invalid Via {value!r}")
    parts = proto
    is_token = abnf.is_token
    if len(parts) != 3 or not (is_token(parts[0]) and is_token(parts[1]) and is_token(parts[2])):
        raise ParseError(f"invalid Via sent-protocol in {value!r}")
    sent_by, semi, params_text = rest.partition(";")
    sent_by = sent_by.strip()
    if sent_by.startswith("["):
        end = sent_by.find("]")
        host, after = sent_by[: end + 1], sent_by[end + 1 :].strip()
        port_text = after[1:].strip() if after.startswith(":") else None
        if after and port_text is None:
            raise ParseError(f"invalid Via sent-by in {value!r}")
    else:
        host, colon, port_ = sent_by.partition(":")
        host = host.strip()
        port_text = port_.strip() if colon else None
    try:
        abnf.check_host(host)
        port = None if port_text is None else abnf.check_port(port_text)
    except ParseError as exc:
        raise ParseError(f"invalid Via sent-by in {value!r}: {exc.reason}") from None
    params = parse_params(params_text, "Via") if semi else Params()
    ttl = params.get("ttl")
    if ttl is not None and (not ttl.isdigit() or int(ttl) > 255):
        raise ParseError(f"invalid Via ttl in {value!r}")
    rport = params.get("rport")
    if rport:
        abnf.check_port(rport)
    if params.get("branch") == "":  # present, but empty (a flag or "")
        raise ParseError(f"empty Via branch in {value!r}")
    return Via(parts[2].upper(), host, port, params, f"{parts[0].upper()}/{parts[1].strip()}")


def _split_sent_protocol(text: str) -> tuple[list[str], bool, str]:
    """Split ``SIP / 2.0 / UDP host...`` into the three protocol parts and the rest.

    LWS is allowed around the slashes (§25.1 SLASH = SWS "/" SWS), so the sent-protocol ends
    at the first whitespace that is not next to a slash.
    """
    parts = text.split("/", 2)
    if len(parts) != 3:
        return [], False, ""
    transport_and_rest = parts[2].lstrip()
    i = 0
    n = len(transport_and_rest)
    while i < n and transport_and_rest[i] not in " \t":
        i += 1
    transport = transport_and_rest[:i]
    rest = transport_and_rest[i:].lstrip()
    if not rest:
        return [], False, ""
    return [parts[0].strip(), parts[1].strip(), transport], True, rest


# ------------------------------------------------------------------------ name-addr headers


@dataclass(frozen=True, slots=True)
class Address:
    """A name-addr or addr-spec with header parameters: From, To, Contact, Route, ... (§20.10)."""

    uri: Uri
    display_name: str | None = None
    params: Params = field(default_factory=Params)
    # Whether the URI was (or must be) enclosed in <>: always when serialized with a name or
    # when the URI has parameters or headers, so they are not read as header parameters.
    angle: bool = True

    def __str__(self) -> str:
        uri = str(self.uri)
        if self.display_name is not None:
            name = self.display_name
            head = (name if _is_token_list(name) else abnf.quote(name)) + " " if name else ""
            return f"{head}<{uri}>{self.params}"
        if self.angle or _needs_angle(uri):
            return f"<{uri}>{self.params}"
        return f"{uri}{self.params}"

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def with_tag(self, tag: str) -> Address:
        return replace(self, params=self.params.with_("tag", tag))

    @property
    def sip_uri(self) -> SipUri:
        if not isinstance(self.uri, SipUri):
            raise ParseError(f"not a SIP URI: {self.uri}", 416)
        return self.uri


def _needs_angle(uri: str) -> bool:
    return any(ch in uri for ch in ";,?")


def _is_token_list(name: str) -> bool:
    return all(abnf.is_token(word) for word in name.split(" "))


def parse_address(value: str, *, what: str = "address") -> Address:
    """Parse a name-addr or addr-spec with parameters. ``what`` names the header in errors."""
    return _parse_address(value.strip(), what)


@lru_cache(maxsize=4096)
def _parse_address(text: str, what: str) -> Address:
    # Cached: addresses are immutable and repeat (dialog peers, retransmissions).
    if not text:
        raise ParseError(f"empty {what}")
    lt = text.find("<")
    if text[0] == '"' or lt >= 0:
        display: str | None = None
        if text[0] == '"':
            end = abnf.find_quoted_end(text, 0)
            display = abnf.unquote(text[: end + 1])
            rest = text[end + 1 :].lstrip()
            if not rest.startswith("<"):
                raise ParseError(f"display name without <URI> in {what}")
            lt = 0
            text = rest
        else:
            name = text[:lt].strip()
            if name:
                if not _is_token_list(" ".join(name.split())):
                    raise ParseError(f"invalid display name {name!r} in {what}")
                display = " ".join(name.split())
        gt = text.find(">", lt)
        if gt < 0:
            raise ParseError(f"unterminated <URI> in {what}")
        uri_text = text[lt + 1 : gt]
        if uri_text != uri_text.strip() or not uri_text:
            raise ParseError(f"whitespace inside <URI> in {what}")
        uri = parse_uri(uri_text)
        after = text[gt + 1 :].strip()
        params = _parse_trailing_params(after, what)
        return Address(uri, display, params, True)
    # addr-spec: the URI ends at the first ';' (its params would need <>), §20.
    uri_text, semi, params_text = text.partition(";")
    uri_text = uri_text.strip()
    if any(ch in uri_text for ch in " \t"):
        raise ParseError(f"whitespace in addr-spec of {what}")
    if "?" in uri_text or "," in uri_text:
        raise ParseError(f"addr-spec with '?' or ',' must be enclosed in <> in {what}")
    uri = parse_uri(uri_text)
    params = parse_params(params_text, what) if semi else Params()
    return Address(uri, None, params, False)


def _parse_trailing_params(after: str, what: str) -> Params:
    if not after:
        return Params()
    if not after.startswith(";"):
        raise ParseError(f"unexpected text {after!r} after <URI> in {what}")
    return parse_params(after[1:], what)


# --------------------------------------------------------------------------------------- CSeq


@dataclass(frozen=True, slots=True)
class CSeq:
    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


MAX_CSEQ = 2**31 - 1


def parse_cseq(value: str) -> CSeq:
    parts = value.split()
    if len(parts) != 2 or not parts[0].isdigit() or not abnf.is_token(parts[1]):
        raise ParseError(f"invalid CSeq {value!r}")
    if len(parts[0]) > 10 or int(parts[0]) > MAX_CSEQ:
        raise ParseError(f"CSeq number out of range in {value!r}")
    return CSeq(int(parts[0]), parts[1])


def parse_uint(value: str, name: str, maximum: int) -> int:
    """A decimal scalar header such as Max-Forwards or Content-Length, bounded."""
    text = value.strip()
    if not text.isdigit() or not text.isascii():
        raise ParseError(f"invalid {name} {value!r}")
    if len(text) > 12 or int(text) > maximum:
        raise ParseError(f"{name} out of range: {text}")
    return int(text)


def parse_call_id(value: str) -> str:
    text = value.strip()
    if not abnf.CALL_ID.fullmatch(text):
        raise ParseError(f"invalid Call-ID {value!r}")
    return text


def parse_tokens(value: str) -> list[str]:
    """A comma list of tokens (Require, Supported, Allow, ...)."""
    out = split_list(value)
    for item in out:
        if not abnf.is_token(item):
            raise ParseError(f"invalid token {item!r}")
    return out
