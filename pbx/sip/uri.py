"""SIP and SIPS URIs (RFC 3261 §19.1, §25.1; IPv6 references per RFC 5118) and other absolute URIs.

The parts are kept as received (escapes intact) so a URI serializes back to equivalent text;
:meth:`SipUri.equivalent` implements the comparison rules of §19.1.4.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import lru_cache

from pbx.sip import abnf
from pbx.sip.errors import ParseError
from pbx.sip.params import Params

_SIP_URI = re.compile(
    r"(?P<scheme>[Ss][Ii][Pp][Ss]?):(?:(?P<userinfo>[^@]*)@)?(?P<hostport>[^;?]*)"
    r"(?P<params>;[^?]*)?(?:\?(?P<headers>.*))?",
    re.DOTALL,
)
# Parameters whose presence in only one of two URIs makes them differ (§19.1.4).
_SIGNIFICANT = ("user", "ttl", "method", "maddr", "transport")


@dataclass(frozen=True, slots=True)
class SipUri:
    host: str
    user: str | None = None
    port: int | None = None
    scheme: str = "sip"
    password: str | None = None
    params: Params = field(default_factory=Params)
    headers: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out.append(":" + self.password)
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        if self.params:
            out.append(str(self.params))
        if self.headers:
            out.append("?" + "&".join(f"{n}={v}" for n, v in self.headers))
        return "".join(out)

    @property
    def secure(self) -> bool:
        return self.scheme == "sips"

    @property
    def transport(self) -> str | None:
        value = self.params.get("transport")
        return value.lower() if value else None

    @property
    def host_bare(self) -> str:
        """The host without IPv6 brackets, as sockets want it."""
        return self.host[1:-1] if self.host.startswith("[") else self.host

    @property
    def user_unescaped(self) -> str | None:
        return None if self.user is None else abnf.unescape(self.user)

    def with_params(self, **values: str | None) -> SipUri:
        params = self.params
        for name, value in values.items():
            params = params.with_(name, value)
        return replace(self, params=params)

    def without_params(self, *names: str) -> SipUri:
        params = self.params
        for name in names:
            params = params.without(name)
        return replace(self, params=params)

    def equivalent(self, other: object) -> bool:
        """URI equality per RFC 3261 §19.1.4."""
        if not isinstance(other, SipUri) or self.scheme != other.scheme:
            return False
        if self.user_unescaped != other.user_unescaped:
            return False
        if _unescape_opt(self.password) != _unescape_opt(other.password):
            return False
        if self.host.lower() != other.host.lower() or self.port != other.port:
            return False
        mine = {n: _param_value(v) for n, v in ((n.lower(), v) for n, v in self.params)}
        theirs = {n: _param_value(v) for n, v in ((n.lower(), v) for n, v in other.params)}
        for name in set(mine) | set(theirs):
            if name in mine and name in theirs:
                if mine[name] != theirs[name]:
                    return False
            elif name in _SIGNIFICANT:
                return False
        return _header_key(self.headers) == _header_key(other.headers)


@dataclass(frozen=True, slots=True)
class AbsoluteUri:
    """Any other URI scheme (tel:, isbn:, http:, ...), kept opaque."""

    scheme: str
    rest: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.rest}"

    def equivalent(self, other: object) -> bool:
        return (
            isinstance(other, AbsoluteUri)
            and self.scheme.lower() == other.scheme.lower()
            and abnf.unescape(self.rest) == abnf.unescape(other.rest)
        )


Uri = SipUri | AbsoluteUri


def parse_uri(text: str) -> Uri:
    """Parse a SIP/SIPS URI or an absolute URI of another scheme; raise :class:`ParseError`."""
    scheme, colon, rest = text.partition(":")
    if colon and scheme in ("sip", "sips"):
        return parse_sip_uri(text)  # the usual spelling, no need to check the scheme's syntax
    if not colon or not abnf.SCHEME.fullmatch(scheme):
        raise ParseError(f"invalid URI {text!r}")
    if scheme.lower() in ("sip", "sips"):
        return parse_sip_uri(text)
    if not rest or abnf.ABSOLUTE_REST.fullmatch(rest) is None:
        raise ParseError(f"invalid URI {text!r}")
    return AbsoluteUri(scheme.lower(), rest)


@lru_cache(maxsize=4096)
def parse_sip_uri(text: str) -> SipUri:
    """Parse a sip:/sips: URI. Cached: URIs are immutable values and peers repeat them."""
    m = _SIP_URI.fullmatch(text)
    if m is None:
        raise ParseError(f"invalid SIP URI {text!r}")
    scheme, userinfo, hostport, raw_params, raw_headers = m.groups()  # one call, not five
    user = password = None
    if userinfo is not None:
        user, colon, pw = userinfo.partition(":")
        if not abnf.USER.fullmatch(user):
            raise ParseError(f"invalid user part in {text!r}")
        if colon:
            if not abnf.PASSWORD.fullmatch(pw):
                raise ParseError(f"invalid password part in {text!r}")
            password = pw
    host, port = _split_hostport(hostport, text)
    params = Params(_parse_uri_params(raw_params[1:], text)) if raw_params else Params()
    headers: tuple[tuple[str, str], ...] = ()
    if raw_headers is not None:
        headers = _parse_uri_headers(raw_headers, text)
    return SipUri(host, user, port, scheme.lower(), password, params, headers)


def _split_hostport(hostport: str, text: str) -> tuple[str, int | None]:
    if not hostport:
        raise ParseError(f"missing host in {text!r}")
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise ParseError(f"unterminated IPv6 reference in {text!r}")
        host, rest = hostport[: end + 1], hostport[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ParseError(f"invalid host in {text!r}")
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text_ = hostport.partition(":")
        port_text = port_text_ if colon else None
    abnf.check_host(host)
    return host, None if port_text is None else abnf.check_port(port_text)


def _parse_uri_params(text: str, uri: str) -> tuple[tuple[str, str | None], ...]:
    items: list[tuple[str, str | None]] = []
    for part in text.split(";"):
        name, eq, value = part.partition("=")
        if not abnf.PARAM_NAME.fullmatch(name) or (eq and not abnf.PARAM_VALUE.fullmatch(value)):
            raise ParseError(f"invalid URI parameter {part!r} in {uri!r}")
        items.append((name, value if eq else None))
    return tuple(items)


def _parse_uri_headers(text: str, uri: str) -> tuple[tuple[str, str], ...]:
    items: list[tuple[str, str]] = []
    for part in text.split("&"):
        name, eq, value = part.partition("=")
        if not eq or not name or not abnf.HEADER_PART.fullmatch(name):
            raise ParseError(f"invalid URI header {part!r} in {uri!r}")
        if not abnf.HEADER_PART.fullmatch(value):
            raise ParseError(f"invalid URI header {part!r} in {uri!r}")
        items.append((name, value))
    return tuple(items)


def _unescape_opt(text: str | None) -> str | None:
    return None if text is None else abnf.unescape(text)


def _param_value(value: str | None) -> str | None:
    return None if value is None else abnf.unescape(value).lower()


def _header_key(headers: tuple[tuple[str, str], ...]) -> frozenset[tuple[str, str]]:
    return frozenset((n.lower(), abnf.unescape(v)) for n, v in headers)
