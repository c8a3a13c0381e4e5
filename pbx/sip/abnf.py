"""Character classes and small lexical helpers from RFC 3261 §25.1 (with RFC 5118 for IPv6).

Compiled once; every other module of the parser builds on these.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

from pbx.sip.errors import ParseError

_ALNUM = "A-Za-z0-9"
_MARK = r"\-_.!~*'()"
_UNRESERVED = _ALNUM + _MARK
_ESCAPED = "%[0-9A-Fa-f]{2}"

TOKEN_CHARS = _ALNUM + r"\-.!%*_+`'~"
TOKEN = re.compile(f"[{TOKEN_CHARS}]+")
# A "word" (Call-ID parts) allows more than a token: RFC 3261 §25.1.
WORD = re.compile(f'[{TOKEN_CHARS}()<>:\\\\"/\\[\\]?{{}}]+')
CALL_ID = re.compile(f"{WORD.pattern}(?:@{WORD.pattern})?")

USER = re.compile(f"(?:[{_UNRESERVED}&=+$,;?/]|{_ESCAPED})+")
PASSWORD = re.compile(f"(?:[{_UNRESERVED}&=+$,]|{_ESCAPED})*")
PARAM_NAME = re.compile(f"(?:[{_UNRESERVED}\\[\\]/:&+$]|{_ESCAPED})+")
PARAM_VALUE = PARAM_NAME
HEADER_PART = re.compile(f"(?:[{_UNRESERVED}\\[\\]/?:+$]|{_ESCAPED})*")
SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
# The rest of an absoluteURI (RFC 2396 uric): used for non-SIP schemes such as tel:, isbn:, http:.
ABSOLUTE_REST = re.compile(f"(?:[{_UNRESERVED};/?:@&=+$,\\[\\]]|{_ESCAPED})+")

_HOSTNAME = re.compile(
    r"(?:[A-Za-z0-9_](?:[A-Za-z0-9_\-]*[A-Za-z0-9_])?\.)*"
    r"[A-Za-z](?:[A-Za-z0-9_\-]*[A-Za-z0-9])?\.?"
)
_IPV4 = re.compile(
    r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}"
)
_IPV4_SHAPE = re.compile(r"[\d.]+")
_ESCAPE_SEQ = re.compile(r"%([0-9A-Fa-f]{2})")


def is_token(text: str) -> bool:
    return TOKEN.fullmatch(text) is not None


def check_host(host: str, *, allow_bare_ipv6: bool = False) -> str:
    """Validate a host (hostname, IPv4 address, or bracketed IPv6 reference) and return it.

    ``allow_bare_ipv6`` accepts an unbracketed IPv6 address, as the Via ``received`` parameter
    does (RFC 5118 §4.5).
    """
    error = _host_error(host, allow_bare_ipv6)
    if error is not None:
        raise ParseError(error)
    return host


@lru_cache(maxsize=4096)
def _host_error(host: str, allow_bare_ipv6: bool) -> str | None:
    # Cached: a peer sends its own host names and addresses again and again.
    if host.startswith("["):
        if not host.endswith("]") or not _is_ipv6(host[1:-1]):
            return f"invalid IPv6 reference {host!r}"
        return None
    if _IPV4_SHAPE.fullmatch(host):
        if _IPV4.fullmatch(host) is None:
            return f"invalid IPv4 address {host!r}"
        return None
    if _HOSTNAME.fullmatch(host):
        return None
    if allow_bare_ipv6 and _is_ipv6(host):
        return None
    return f"invalid host {host!r}"


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        # RFC 3261's ABNF (from RFC 2373) derives "::" followed by an IPv4 part as ":::";
        # RFC 5118 §4.10 asks implementations to tolerate it.
        if ":::" not in text:
            return False
        try:
            ipaddress.IPv6Address(text.replace(":::", "::", 1))
        except ValueError:
            return False
    return True


def check_port(text: str) -> int:
    if not text.isdigit() or len(text) > 5 or int(text) > 65535:
        raise ParseError(f"invalid port {text!r}")
    return int(text)


def unescape(text: str) -> str:
    """Decode %HH escapes (RFC 3261 §19.1.2), keeping the result as text; bytes >= 0x80 are
    decoded as UTF-8 where they form valid sequences."""
    if "%" not in text:
        return text
    raw = _ESCAPE_SEQ.sub(lambda m: chr(int(m.group(1), 16)), text)
    try:
        return raw.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return raw


def unquote(text: str) -> str:
    """Return the content of a quoted-string (``"..."`` with ``\\`` escapes), or ``text`` as is."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        inner = text[1:-1]
        if "\\" not in inner:
            return inner
        out: list[str] = []
        i = 0
        while i < len(inner):
            ch = inner[i]
            if ch == "\\" and i + 1 < len(inner):
                i += 1
                ch = inner[i]
            out.append(ch)
            i += 1
        return "".join(out)
    return text


def quote(text: str) -> str:
    """Make a quoted-string from arbitrary text."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def find_quoted_end(text: str, start: int) -> int:
    """Given ``text[start] == '"'``, return the index of the closing quote; raise if unbalanced."""
    i = start + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            return i
        i += 1
    raise ParseError("unterminated quoted string")


_SPLIT_SPECIALS = re.compile(r'["<>\\]|,|;')


def split_outside_quotes(text: str, sep: str) -> list[str]:
    """Split on ``sep`` (``,`` or ``;``) where it is outside quoted strings and ``<...>``.

    Jumps from one special character to the next with a regex instead of walking every
    character: values are long, specials are few.
    """
    if '"' not in text and "<" not in text:
        return text.split(sep)
    parts: list[str] = []
    depth = 0
    begin = 0
    in_quotes = False
    escaped_until = -1
    for m in _SPLIT_SPECIALS.finditer(text):
        i = m.start()
        if i <= escaped_until:
            continue
        ch = text[i]
        if in_quotes:
            if ch == "\\":
                escaped_until = i + 1
            elif ch == '"':
                in_quotes = False
        elif ch == '"':
            in_quotes = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            if depth:
                depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[begin:i])
            begin = i + 1
    if in_quotes:
        raise ParseError("unterminated quoted string")
    parts.append(text[begin:])
    return parts
