"""HTTP Digest authentication for SIP (RFC 3261 §22, RFC 7616, RFC 8760), sans-IO.

This module works on header *values*: the text after ``WWW-Authenticate:``,
``Proxy-Authenticate:``, ``Authorization:`` or ``Proxy-Authorization:``. It never reads a clock
(``now`` is passed in) and takes randomness from an injectable ``random_bytes`` callable.

Algorithms: ``MD5``, ``SHA-256`` and ``SHA-512-256`` (the last only where :mod:`hashlib` has it),
each also in its ``-sess`` variant. ``qop``: ``auth`` and ``auth-int`` (the body hash), and the
RFC 2069 form without ``qop`` where explicitly allowed. ``userhash`` (RFC 7616 §3.4.4) is not
supported: SIP does not use it, and such credentials verify as BAD.

Server side::

    server = DigestServer(realm="pbx.example", key=secret)
    headers = [c.to_header() for c in server.challenges(now)]          # 401 WWW-Authenticate
    ...
    creds = parse_credentials(authorization_value)                     # ParseError -> 400
    if not uri_matches(creds.uri, request_uri): ...                    # the caller's check
    result = server.verify(creds, "REGISTER", lookup, now, body)
    # OK -> go on; STALE -> challenges(now, stale=True); BAD or REPLAY -> challenges(now)

Client side::

    client = DigestClient("alice", "secret")
    creds = client.authorize([parse_challenge(v) for v in values], "REGISTER", "sip:pbx.example")
    authorization_value = creds.to_header()
"""

from __future__ import annotations

import binascii
import enum
import hashlib
import hmac
import re
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

from pbx.sip.errors import LocalProtocolError, ParseError, RemoteProtocolError
from pbx.sip.randomness import random_bytes as pooled_random

__all__ = [
    "SUPPORTED_ALGORITHMS",
    "AuthResult",
    "AuthStatus",
    "Challenge",
    "Credentials",
    "DigestClient",
    "DigestServer",
    "Ha1Source",
    "UnsupportedChallengeError",
    "UnsupportedSchemeError",
    "best_challenge",
    "compute_response",
    "ha1",
    "parse_challenge",
    "parse_credentials",
    "uri_matches",
]


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class UnsupportedSchemeError(RemoteProtocolError):
    """The header uses an auth scheme other than Digest (e.g. ``Basic``).

    Not a :class:`ParseError`: a server should answer with a fresh challenge (401, or 407 for
    ``Proxy-Authorization``), not with 400. ``scheme`` is the scheme as received.
    """

    def __init__(self, scheme: str, status: int | None = 401) -> None:
        super().__init__(f"unsupported auth scheme {scheme!r}", status)
        self.scheme = scheme


class UnsupportedChallengeError(RemoteProtocolError):
    """No offered challenge can be answered (unknown algorithm or qop).

    Raised by the client side on a received response, so there is nothing to answer:
    ``status`` is ``None``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason, None)


# --------------------------------------------------------------------------------------------
# Hashes
# --------------------------------------------------------------------------------------------

# Token (upper case) -> hashlib name, strongest first. SHA-512-256 needs OpenSSL support.
_HASHES: dict[str, str] = {
    name: hashlib_name
    for name, hashlib_name in (("SHA-512-256", "sha512_256"), ("SHA-256", "sha256"), ("MD5", "md5"))
    if hashlib_name in hashlib.algorithms_available
}
_STRENGTH: dict[str, int] = {name: len(_HASHES) - i for i, name in enumerate(_HASHES)}
# Token -> constructor: hashlib.md5 and hashlib.sha256 directly, cheaper than hashlib.new.
_HASH_NEW: dict[str, Callable[[bytes], Any]] = {
    name: getattr(hashlib, hashlib_name, None) or partial(hashlib.new, hashlib_name)
    for name, hashlib_name in _HASHES.items()
}

#: Every algorithm token this module can compute, canonical spelling, strongest first.
SUPPORTED_ALGORITHMS: tuple[str, ...] = tuple(
    variant for name in _HASHES for variant in (name, name + "-sess")
)


@lru_cache(maxsize=64)
def _split_algorithm(algorithm: str | None) -> tuple[str, bool] | None:
    """``"sha-256-SESS"`` -> ``("SHA-256", True)``; absent means MD5 (RFC 7616 §3.3)."""
    name = algorithm or "MD5"
    if not name.isascii():
        return None  # str.upper() folds some non-ASCII letters into ASCII ones
    name = name.upper()
    sess = name.endswith("-SESS")
    if sess:
        name = name[: -len("-SESS")]
    return (name, sess) if name in _HASHES else None


def _canonical(algorithm: str) -> str:
    split = _split_algorithm(algorithm)
    if split is None:
        raise LocalProtocolError(f"unsupported digest algorithm {algorithm!r}")
    return split[0] + ("-sess" if split[1] else "")


def _h(hash_name: str, data: str | bytes) -> str:
    # surrogatepass: never fail on a str; parsed values hold no surrogates anyway.
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    hexdigest: str = _HASH_NEW[hash_name](raw).hexdigest()
    return hexdigest


def ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    """The storable secret ``H(username:realm:password)`` as lower-case hex.

    For a ``-sess`` algorithm this returns the same value as for its base algorithm: the
    per-session key ``H(HA1:nonce:cnonce)`` depends on the nonce and is derived in
    :func:`compute_response`, so a box storing HA1 needs one value per hash (MD5, SHA-256),
    not per variant. Strings are encoded as UTF-8 (RFC 7616 ``charset=UTF-8``).
    """
    base = _canonical(algorithm).removesuffix("-sess")
    return _h(base, f"{username}:{realm}:{password}")


def compute_response(
    *,
    ha1: str,
    algorithm: str | None,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The ``response`` value (RFC 7616 §3.4.1, RFC 2617 §3.2.2, RFC 2069 when ``qop`` is None).

    ``ha1`` is the base HA1 (see :func:`ha1`); ``-sess`` is applied here. ``body`` is only used
    for ``qop=auth-int``.
    """
    split = _split_algorithm(algorithm)
    if split is None:
        raise LocalProtocolError(f"unsupported digest algorithm {algorithm!r}")
    name, sess = split
    key = ha1.lower()
    if sess:
        if cnonce is None:
            raise LocalProtocolError("-sess algorithms need a cnonce")
        key = _h(name, f"{key}:{nonce}:{cnonce}")
    if qop is None:
        a2 = f"{method}:{uri}"
        return _h(name, f"{key}:{nonce}:{_h(name, a2)}")
    if qop == "auth":
        a2 = f"{method}:{uri}"
    elif qop == "auth-int":
        a2 = f"{method}:{uri}:{_h(name, body)}"
    else:
        raise LocalProtocolError(f"unsupported qop {qop!r}")
    if nc is None or cnonce is None:
        raise LocalProtocolError("qop needs nc and cnonce")
    return _h(name, f"{key}:{nonce}:{nc}:{cnonce}:{qop}:{_h(name, a2)}")


# --------------------------------------------------------------------------------------------
# Parsing and serializing auth-param lists
# --------------------------------------------------------------------------------------------

_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_TOKEN_RE = re.compile(_TOKEN)
# One auth-param and its separator: name LWS "=" LWS (token / quoted-string) LWS ("," / end).
# qdtext and quoted-pair are checked separately on the quoted content (RFC 3261 §25.1).
# The quoted part is written as an unrolled loop (runs of plain characters between escapes):
# the same language as (?:[^"\\]|\\.)*, without a regex group entered for every character.
_PARAM = re.compile(
    rf'[ \t]*({_TOKEN})[ \t]*=[ \t]*(?:"([^"\\]*(?:\\.[^"\\]*)*)"|({_TOKEN}))[ \t]*(,|$)',
    re.DOTALL,
)
_ONLY_BLANKS = re.compile(r"[ \t]*\Z")
_SCHEME = re.compile(rf"[ \t]*({_TOKEN})(?:[ \t]+|$)")
# What qdtext may not contain: ASCII controls but HTAB, and the surrogates by which the
# message parser carries bytes that are not UTF-8.
_BAD_QDTEXT = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\ud800-\udfff]")
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)


def _is_token(text: str) -> bool:
    return _TOKEN_RE.fullmatch(text) is not None


def _unfold(value: str) -> str:
    """Replace header folding (CRLF followed by whitespace) by a space (RFC 3261 §7.3.1)."""
    out = value.replace("\r\n ", " ").replace("\r\n\t", " ")
    if "\r" in out or "\n" in out:
        raise ParseError("bare CR or LF in auth header")
    return out


def _unquote(raw: str) -> str:
    """The content of a quoted-string, checked against qdtext / quoted-pair."""
    if "\\" not in raw:
        if _BAD_QDTEXT.search(raw):
            raise ParseError("control character or invalid UTF-8 in quoted string")
        return raw
    if any(ord(c) > 0x7F for c in _QUOTED_PAIR.findall(raw)):
        raise ParseError("non-ASCII character escaped in quoted string")
    # Escaped controls are legal quoted-pairs (except CR/LF, gone with _unfold): check the
    # text with the pairs removed.
    if _BAD_QDTEXT.search(_QUOTED_PAIR.sub("", raw)):
        raise ParseError("control character or invalid UTF-8 in quoted string")
    return _QUOTED_PAIR.sub(r"\1", raw)


def _parse_digest(value: str) -> dict[str, tuple[str, str]]:
    """Parse ``Digest name=value, ...``; returns lower-cased name -> (name as sent, value).

    Raises :class:`UnsupportedSchemeError` for another scheme, :class:`ParseError` for bad syntax.
    """
    text = _unfold(value)
    m = _SCHEME.match(text)
    if m is None:
        raise ParseError("expected auth scheme at offset 0 of auth header")
    if m.group(1).lower() != "digest":
        raise UnsupportedSchemeError(m.group(1))
    pos = m.end()
    if pos >= len(text) or not text[m.start(1) + len(m.group(1)) :].startswith((" ", "\t")):
        raise ParseError("Digest without parameters")
    params: dict[str, tuple[str, str]] = {}
    # Without a bad character anywhere, a quoted value without escapes is its own content.
    clean = _BAD_QDTEXT.search(text) is None
    while True:
        p = _PARAM.match(text, pos)
        if p is None:
            # After a comma, nothing but blanks: a trailing comma. (Checked only here: a
            # parameter needs a token, so blanks alone never match.)
            if params and _ONLY_BLANKS.match(text, pos) is not None:
                raise ParseError("trailing comma in auth header")
            raise ParseError(f"malformed auth parameter at offset {pos} of auth header")
        name, quoted, bare, sep = p.groups()
        if quoted is None:
            param_value = bare
        elif clean and "\\" not in quoted:
            param_value = quoted
        else:
            param_value = _unquote(quoted)
        key = name.lower()
        if key in params:
            # RFC 7616 §3.3: each parameter at most once; a repeat is ambiguous.
            raise ParseError(f"duplicate auth parameter {name!r}")
        params[key] = (name, param_value)
        pos = p.end()
        if not sep:
            return params


def _quote(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise LocalProtocolError("CR or LF cannot appear in an auth parameter")
    # Escape the delimiters and every ASCII control but tab, which qdtext allows.
    return '"' + _NEEDS_ESCAPE.sub(r"\\\g<0>", value) + '"'


_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x08\x0b-\x1f\x7f]')


def _bare(name: str, value: str) -> str:
    # RFC 7616 §3.4: algorithm, qop (in credentials), nc and stale are sent as tokens.
    if not _is_token(value):
        raise LocalProtocolError(f"{name} must be a token, not {value!r}")
    return value


def _extra(
    params: dict[str, tuple[str, str]], known: frozenset[str]
) -> tuple[tuple[str, str], ...]:
    return tuple(pair for key, pair in params.items() if key not in known)


def _render(parts: list[str], extra: tuple[tuple[str, str], ...], known: Iterable[str]) -> str:
    if not extra:
        return "Digest " + ", ".join(parts)
    seen = {p.split("=", 1)[0].lower() for p in parts} | set(known)
    for name, value in extra:
        if not _is_token(name) or name.lower() in seen:
            raise LocalProtocolError(f"bad or duplicate extra auth parameter name {name!r}")
        seen.add(name.lower())
        parts.append(f"{name}={value if _is_token(value) else _quote(value)}")
    return "Digest " + ", ".join(parts)


def _opt(params: dict[str, tuple[str, str]], key: str) -> str | None:
    pair = params.get(key)
    return None if pair is None else pair[1]


_CHALLENGE_KEYS = ("realm", "nonce", "algorithm", "qop", "opaque", "domain", "stale")
_CREDENTIAL_KEYS = (
    "username",
    "realm",
    "nonce",
    "uri",
    "response",
    "algorithm",
    "cnonce",
    "opaque",
    "qop",
    "nc",
)
_CHALLENGE_SET = frozenset(_CHALLENGE_KEYS)
_CREDENTIAL_SET = frozenset(_CREDENTIAL_KEYS)


@dataclass(frozen=True)
class Challenge:
    """A Digest challenge (``WWW-Authenticate`` / ``Proxy-Authenticate`` value).

    ``algorithm`` is kept as sent (``None`` when absent, which means MD5). ``qop`` is the list
    of offered options (empty when absent). ``params`` holds unknown parameters, in order,
    as (name as sent, unquoted value).
    """

    realm: str
    nonce: str
    algorithm: str | None = None
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    domain: str | None = None
    stale: bool = False
    params: tuple[tuple[str, str], ...] = ()

    def to_header(self) -> str:
        parts = [f"realm={_quote(self.realm)}", f"nonce={_quote(self.nonce)}"]
        if self.algorithm is not None:
            parts.append(f"algorithm={_bare('algorithm', self.algorithm)}")
        if self.qop:
            for option in self.qop:
                _bare("qop", option)
            parts.append(f"qop={_quote(','.join(self.qop))}")
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        if self.domain is not None:
            parts.append(f"domain={_quote(self.domain)}")
        if self.stale:
            parts.append("stale=true")
        return _render(parts, self.params, _CHALLENGE_KEYS)


@dataclass(frozen=True)
class Credentials:
    """Digest credentials (``Authorization`` / ``Proxy-Authorization`` value).

    Every field is as received and may be ``None``: which ones are required is a semantic
    question answered by :meth:`DigestServer.verify` (missing ones make it BAD), not a syntax
    error. ``nc`` is kept as the 8-hex-digit string sent.
    """

    username: str | None = None
    realm: str | None = None
    nonce: str | None = None
    uri: str | None = None
    response: str | None = None
    algorithm: str | None = None
    cnonce: str | None = None
    opaque: str | None = None
    qop: str | None = None
    nc: str | None = None
    params: tuple[tuple[str, str], ...] = ()

    def to_header(self) -> str:
        parts: list[str] = []
        for key in ("username", "realm", "nonce", "uri", "response"):
            value = getattr(self, key)
            if value is not None:
                parts.append(f"{key}={_quote(value)}")
        if self.algorithm is not None:
            parts.append(f"algorithm={_bare('algorithm', self.algorithm)}")
        if self.cnonce is not None:
            parts.append(f"cnonce={_quote(self.cnonce)}")
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        if self.qop is not None:
            parts.append(f"qop={_bare('qop', self.qop)}")
        if self.nc is not None:
            parts.append(f"nc={_bare('nc', self.nc)}")
        if not parts and not self.params:
            raise LocalProtocolError("Digest credentials need at least one parameter")
        return _render(parts, self.params, _CREDENTIAL_KEYS)


def parse_challenge(value: str) -> Challenge:
    """Parse a ``WWW-Authenticate`` / ``Proxy-Authenticate`` value.

    Raises :class:`UnsupportedSchemeError` for a non-Digest scheme, :class:`ParseError` for bad
    syntax or a challenge without ``realm`` or ``nonce`` (it cannot be answered).
    """
    params = _parse_digest(value)
    realm, nonce = _opt(params, "realm"), _opt(params, "nonce")
    if realm is None or nonce is None:
        raise ParseError("Digest challenge without realm or nonce")
    qop = _opt(params, "qop")
    stale = _opt(params, "stale")
    return Challenge(
        realm=realm,
        nonce=nonce,
        algorithm=_opt(params, "algorithm"),
        qop=() if qop is None else tuple(o.strip() for o in qop.split(",") if o.strip()),
        opaque=_opt(params, "opaque"),
        domain=_opt(params, "domain"),
        # RFC 7616 §3.3: anything but a case-insensitive "true" means false.
        stale=stale is not None and stale.lower() == "true",
        params=_extra(params, _CHALLENGE_SET),
    )


def parse_credentials(value: str) -> Credentials:
    """Parse an ``Authorization`` / ``Proxy-Authorization`` value.

    Raises :class:`UnsupportedSchemeError` for a non-Digest scheme (answer with a challenge) and
    :class:`ParseError` for bad syntax (answer 400).
    """
    params = _parse_digest(value)
    return Credentials(
        username=_opt(params, "username"),
        realm=_opt(params, "realm"),
        nonce=_opt(params, "nonce"),
        uri=_opt(params, "uri"),
        response=_opt(params, "response"),
        algorithm=_opt(params, "algorithm"),
        cnonce=_opt(params, "cnonce"),
        opaque=_opt(params, "opaque"),
        qop=_opt(params, "qop"),
        nc=_opt(params, "nc"),
        params=_extra(params, _CREDENTIAL_SET),
    )


def uri_matches(digest_uri: str | None, request_uri: str) -> bool:
    """Whether the credentials' ``uri`` names the request's Request-URI.

    :meth:`DigestServer.verify` only checks that ``uri`` is present: the caller must check it
    against the Request-URI (RFC 7616 §3.4.6), or a response captured for one request could
    be replayed for another URI. This helper compares the strings exactly, which is what
    compliant clients produce (RFC 3261 §22.4 copies the Request-URI); a caller with parsed
    URIs may use SIP URI equivalence (RFC 3261 §19.1.4) instead.
    """
    return digest_uri is not None and digest_uri == request_uri


# --------------------------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------------------------


class AuthStatus(enum.Enum):
    OK = "ok"  # authenticated as ``AuthResult.username``
    STALE = "stale"  # right password, expired nonce: re-challenge with stale=true
    BAD = "bad"  # anything wrong: re-challenge (or 403 after too many tries)
    REPLAY = "replay"  # right password, nonce-count not increasing: a replay


@dataclass(frozen=True)
class AuthResult:
    """Outcome of :meth:`DigestServer.verify`.

    ``username`` is set only for OK. ``reason`` is for logs, never for a peer; it does not tell
    an unknown user from a wrong password.
    """

    status: AuthStatus
    username: str | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status is AuthStatus.OK


#: Where verify finds a user's HA1: a callable ``(username, hash) -> hex or None`` where hash is
#: the base algorithm in canonical spelling (``"MD5"``, ``"SHA-256"``; ``-sess`` shares the base
#: HA1), or an HA1 already looked up by the caller, or ``None`` for an unknown user.
Ha1Source = Callable[[str, str], str | None] | str | None

_NONCE_DOMAIN = b"edgepbx sip digest nonce v1\x00"
_NONCE_RANDOM = 12
_NONCE_MAC = 16
_NONCE_RAW = 8 + _NONCE_RANDOM + _NONCE_MAC


# base64.urlsafe_b64encode/decode, without their Python-level wrapping (twice per nonce).
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


def _b64(data: bytes) -> str:
    encoded = binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE)
    return encoded.rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes | None:
    # Nonces we issue are unpadded url-safe base64 of a fixed length; reject anything else.
    if len(text) != (_NONCE_RAW * 4 + 2) // 3 or not text.isascii():
        return None
    try:
        padded = (text + "=" * (-len(text) % 4)).encode("ascii")
        raw = binascii.a2b_base64(padded.translate(_FROM_URLSAFE))
    except ValueError:  # binascii.Error is a ValueError
        return None
    return raw if _b64(raw) == text else None


class DigestServer:
    """Digest challenges and verification with stateless nonces.

    A nonce is ``base64url(issued_ms || random || HMAC-SHA256(key, realm, issued_ms, random))``:
    any nonce can be checked without storing it, and it expires ``nonce_ttl`` seconds after
    issue. The only state is a bounded table of the highest nonce-count seen per nonce, for
    replay protection; it is filled only by correct responses, so guessing cannot poison it.

    Retransmissions of the same request (same nc) must be absorbed by the transaction layer
    before reaching :meth:`verify`, which reports them as REPLAY.
    """

    def __init__(
        self,
        realm: str,
        key: bytes,
        nonce_ttl: float = 300,
        algorithms: Sequence[str] = ("SHA-256", "MD5"),
        qop: str | Sequence[str] = "auth",
        *,
        allow_rfc2069: bool = False,
        max_nonces: int = 10_000,
        random_bytes: Callable[[int], bytes] = pooled_random,
    ) -> None:
        """``qop``: offered options (``"auth"``, ``"auth-int"``, both, or empty to offer none,
        which needs ``allow_rfc2069``). ``allow_rfc2069`` accepts answers without qop (no
        replay protection; for legacy phones only). ``max_nonces`` bounds the replay table.
        """
        if len(key) < 16:
            raise LocalProtocolError("nonce key must be at least 16 bytes")
        if nonce_ttl <= 0 or max_nonces < 1:
            raise LocalProtocolError("nonce_ttl and max_nonces must be positive")
        canon = [_canonical(a) for a in algorithms]
        if not canon or len(set(canon)) != len(canon):
            raise LocalProtocolError("algorithms must be a non-empty list without repeats")
        options = tuple(o.strip() for o in qop.split(",")) if isinstance(qop, str) else tuple(qop)
        options = tuple(o for o in options if o)
        if any(o not in ("auth", "auth-int") for o in options):
            raise LocalProtocolError(f"unsupported qop {qop!r}")
        if not options and not allow_rfc2069:
            raise LocalProtocolError("offering no qop requires allow_rfc2069=True")
        self.realm = realm
        self.nonce_ttl = nonce_ttl
        # RFC 8760 §2.4: challenges in order of preference, strongest first.
        self.algorithms: tuple[str, ...] = tuple(
            sorted(canon, key=lambda a: -_STRENGTH[a.removesuffix("-sess")])
        )
        self.qop = options
        self.allow_rfc2069 = allow_rfc2069
        self.max_nonces = max_nonces
        self._key = key
        self._mac_template = hmac.new(
            key, _NONCE_DOMAIN + realm.encode("utf-8") + b"\x00", "sha256"
        )
        self._random_bytes = random_bytes
        # nonce -> (issued_ms, highest nc accepted); insertion order is first-use order.
        # An OrderedDict: evicting the oldest of a dict again and again leaves dead slots
        # that every next(iter()) walks; popitem(last=False) is O(1).
        self._seen: OrderedDict[str, tuple[int, int]] = OrderedDict()
        # Nonces issued at or before this time and absent from _seen may have been evicted
        # while still live: their nc history is lost, so they are treated as stale.
        self._forgotten_ms = -(2**63)
        # Used for unknown users so they cost the same hashing as known ones.
        self._dummy_ha1 = {
            name: _h(name, random_bytes(32)) for name in {a.removesuffix("-sess") for a in canon}
        }

    # --- nonces ---

    def _mac(self, head: bytes) -> bytes:
        # A copy of an HMAC keyed and fed the prefix once: a third of hmac.digest's cost
        # (which sets up OpenSSL's HMAC anew each time), twice per call.
        mac = self._mac_template.copy()
        mac.update(head)
        return mac.digest()[:_NONCE_MAC]

    def make_nonce(self, now: float) -> str:
        head = struct.pack(">q", int(now * 1000)) + self._random_bytes(_NONCE_RANDOM)
        if len(head) != 8 + _NONCE_RANDOM:
            raise LocalProtocolError("random_bytes returned the wrong number of bytes")
        return _b64(head + self._mac(head))

    def _nonce_issued_ms(self, nonce: str) -> int | None:
        """Issue time of a nonce we made, or None if it is not ours (forged, other realm)."""
        raw = _unb64(nonce)
        if raw is None or len(raw) != _NONCE_RAW:
            return None
        head, mac = raw[:-_NONCE_MAC], raw[-_NONCE_MAC:]
        if not hmac.compare_digest(mac, self._mac(head)):
            return None
        issued_ms: int = struct.unpack(">q", head[:8])[0]
        return issued_ms

    def _expired(self, issued_ms: int, now: float) -> bool:
        # A nonce "from the future" means our clock went back; treat it as expired too.
        age = now - issued_ms / 1000
        return not 0 <= age <= self.nonce_ttl

    def challenges(self, now: float, stale: bool = False) -> list[Challenge]:
        """One challenge per algorithm, strongest first, each with a fresh nonce."""
        return [
            Challenge(
                realm=self.realm,
                nonce=self.make_nonce(now),
                algorithm=algorithm,
                qop=self.qop,
                stale=stale,
            )
            for algorithm in self.algorithms
        ]

    # --- verification ---

    def verify(
        self,
        creds: Credentials,
        method: str,
        ha1_lookup: Ha1Source,
        now: float,
        body: bytes = b"",
    ) -> AuthResult:
        """Check credentials for a request with this method (and body, for ``auth-int``).

        The caller must also check ``creds.uri`` against the Request-URI (see
        :func:`uri_matches`). An OK result records the nonce-count, so call this once per
        request.
        """
        bad = self._check_shape(creds)
        if bad is not None:
            return AuthResult(AuthStatus.BAD, reason=bad)
        # _check_shape guarantees these; the asserts only inform the type checker.
        assert creds.username is not None and creds.nonce is not None
        assert creds.uri is not None and creds.response is not None
        split = _split_algorithm(creds.algorithm)
        assert split is not None
        base = split[0]

        issued_ms = self._nonce_issued_ms(creds.nonce)
        if issued_ms is None:
            return AuthResult(AuthStatus.BAD, reason="nonce not issued by us")

        known = ha1_lookup(creds.username, base) if callable(ha1_lookup) else ha1_lookup
        # Unknown user: compute against a dummy HA1 anyway, so timing does not tell.
        secret = self._dummy_ha1[base] if known is None else known
        expected = compute_response(
            ha1=secret,
            algorithm=creds.algorithm,
            nonce=creds.nonce,
            method=method,
            uri=creds.uri,
            qop=creds.qop,
            nc=creds.nc,
            cnonce=creds.cnonce,
            body=body,
        )
        matches = hmac.compare_digest(
            expected.encode("ascii"), creds.response.lower().encode("utf-8", "surrogatepass")
        )
        if not matches or known is None:
            return AuthResult(AuthStatus.BAD, reason="wrong credentials")

        if self._expired(issued_ms, now):
            return AuthResult(AuthStatus.STALE, reason="nonce expired")
        if creds.nc is None:
            return AuthResult(AuthStatus.OK, username=creds.username)  # RFC 2069: no nc
        return self._record_nc(creds.nonce, issued_ms, int(creds.nc, 16), creds.username, now)

    def _check_shape(self, creds: Credentials) -> str | None:
        """Why the credentials cannot be right whatever the password, or None."""
        # Spelled out, not a getattr loop: this runs for every authenticated request.
        if creds.username is None:
            return "missing username"
        if creds.realm is None:
            return "missing realm"
        if creds.nonce is None:
            return "missing nonce"
        if creds.uri is None:
            return "missing uri"
        if creds.response is None:
            return "missing response"
        if creds.realm != self.realm:
            return "wrong realm"
        if creds.params and any(
            name.lower() == "userhash" and v.lower() == "true" for name, v in creds.params
        ):
            return "userhash not supported"
        split = _split_algorithm(creds.algorithm)
        if split is None or split[0] + ("-sess" if split[1] else "") not in self.algorithms:
            return "algorithm not offered"
        if creds.qop is None:
            if not self.allow_rfc2069:
                return "qop missing"
            if split[1] and creds.cnonce is None:
                return "missing cnonce"
            if creds.nc is not None:
                return "nc without qop"
            return None
        if creds.qop not in self.qop:
            return "qop not offered"
        if creds.cnonce is None or creds.nc is None:
            return "missing cnonce or nc"
        nc = creds.nc
        if len(nc) != 8 or any(c not in "0123456789abcdefABCDEF" for c in nc):
            return "malformed nc"
        if int(nc, 16) == 0:
            return "nc must start at 1"
        return None

    def _record_nc(
        self, nonce: str, issued_ms: int, nc: int, username: str, now: float
    ) -> AuthResult:
        entry = self._seen.get(nonce)
        if entry is not None:
            if nc <= entry[1]:
                return AuthResult(AuthStatus.REPLAY, reason="nonce-count not increasing")
            self._seen[nonce] = (issued_ms, nc)
            return AuthResult(AuthStatus.OK, username=username)
        if issued_ms <= self._forgotten_ms:
            return AuthResult(AuthStatus.STALE, reason="nonce evicted from replay table")
        self._evict(now)
        self._seen[nonce] = (issued_ms, nc)
        return AuthResult(AuthStatus.OK, username=username)

    def _evict(self, now: float) -> None:
        # Cheap pass: drop expired entries at the front (oldest first use).
        seen = self._seen
        while seen:
            _, (issued_ms, _) = next(iter(seen.items()))
            if not self._expired(issued_ms, now):
                break
            seen.popitem(last=False)
        if len(self._seen) < self.max_nonces:
            return
        # Full: sweep every expired entry, then if still full forget the oldest live ones,
        # down to 90% so that the O(n) sweep is not paid again on every insert under load.
        for nonce in [n for n, (ms, _) in self._seen.items() if self._expired(ms, now)]:
            del self._seen[nonce]
        target = self.max_nonces - max(1, self.max_nonces // 10)
        while len(self._seen) > target:
            _, (issued_ms, _) = self._seen.popitem(last=False)
            self._forgotten_ms = max(self._forgotten_ms, issued_ms)


# --------------------------------------------------------------------------------------------
# Client
# --------------------------------------------------------------------------------------------


def best_challenge(challenges: Iterable[Challenge]) -> Challenge | None:
    """The challenge with the strongest algorithm this module supports and a usable qop
    (SHA-512-256 > SHA-256 > MD5; plain before ``-sess`` on a tie; else the first offered).
    None if none can be answered."""
    best: Challenge | None = None
    best_rank = -1
    for challenge in challenges:
        split = _split_algorithm(challenge.algorithm)
        if split is None or not _qop_usable(challenge):
            continue
        rank = _STRENGTH[split[0]] * 2 + (0 if split[1] else 1)
        if rank > best_rank:
            best, best_rank = challenge, rank
    return best


def _pick_qop(challenge: Challenge) -> str | None:
    """``auth`` if offered, else ``auth-int``; None for RFC 2069 (no qop offered)."""
    if not challenge.qop:
        return None
    return "auth" if "auth" in challenge.qop else "auth-int"


def _qop_usable(challenge: Challenge) -> bool:
    return not challenge.qop or "auth" in challenge.qop or "auth-int" in challenge.qop


class DigestClient:
    """Answers Digest challenges for one account, tracking the nonce-count per nonce."""

    def __init__(
        self,
        username: str,
        password: str,
        random_bytes: Callable[[int], bytes] = pooled_random,
        *,
        max_nonces: int = 64,
    ) -> None:
        self.username = username
        self._password = password
        self._random_bytes = random_bytes
        self._max_nonces = max_nonces
        self._nc: OrderedDict[str, int] = OrderedDict()  # nonce -> last nc; order = age

    def authorize(
        self,
        challenge: Challenge | Sequence[Challenge],
        method: str,
        uri: str,
        body: bytes = b"",
    ) -> Credentials:
        """Credentials answering the best of the challenges for a request.

        ``uri`` is the Request-URI of the request being sent. Challenges of different realms
        (from forked proxies) must each be answered by their own call.
        Raises :class:`UnsupportedChallengeError` if nothing offered can be answered.
        """
        chosen = challenge if isinstance(challenge, Challenge) else best_challenge(challenge)
        split = None if chosen is None else _split_algorithm(chosen.algorithm)
        if chosen is None or split is None:
            raise UnsupportedChallengeError("no Digest challenge with a supported algorithm")
        if not _qop_usable(chosen):
            raise UnsupportedChallengeError(f"no supported qop in {chosen.qop!r}")
        qop = _pick_qop(chosen)

        base, sess = split
        nc: str | None = None
        cnonce: str | None = None
        if qop is not None or sess:
            cnonce = self._random_bytes(16).hex()
        if qop is not None:
            nc = f"{self._next_nc(chosen.nonce):08x}"
        secret = ha1(self.username, chosen.realm, self._password, base)
        response = compute_response(
            ha1=secret,
            algorithm=chosen.algorithm,
            nonce=chosen.nonce,
            method=method,
            uri=uri,
            qop=qop,
            nc=nc,
            cnonce=cnonce,
            body=body,
        )
        return Credentials(
            username=self.username,
            realm=chosen.realm,
            nonce=chosen.nonce,
            uri=uri,
            response=response,
            algorithm=chosen.algorithm,
            cnonce=cnonce,
            opaque=chosen.opaque,
            qop=qop,
            nc=nc,
        )

    def _next_nc(self, nonce: str) -> int:
        count = self._nc.pop(nonce, 0) + 1
        if count > 0xFFFFFFFF:
            raise LocalProtocolError("nonce-count exhausted; a fresh challenge is needed")
        self._nc[nonce] = count  # re-inserted: most recently used last
        while len(self._nc) > self._max_nonces:
            self._nc.popitem(last=False)
        return count
