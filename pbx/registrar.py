"""The registrar of the box: RFC 3261 §10.3 over the extension directory and the binding store.

Three parts, in rings:

* :class:`Authenticator` (sans-IO): digest authentication (RFC 3261 §22, RFC 7616) of any
  request against the extension directory; it answers 401/407 challenges and 403 refusals.
* :class:`Registrar` (sans-IO): REGISTER processing in the order of §10.3, ``lookup`` for the
  B2BUA. Times are unix seconds passed in as ``now``: bindings outlive the process.
* :class:`RegistrarJobs` (the asyncio part, thin): sweeps expired bindings and keeps the NAT
  pinholes of UDP phones open with OPTIONS pings, scheduled by the sans-IO
  :class:`KeepaliveSchedule`. ``asyncio`` is imported inside its methods only, so importing
  the registrar loads no event loop machinery (checked by a test).

Choices where the RFCs leave room:

* The digest ``uri`` must name the Request-URI (RFC 7616 §3.4.6): equal text or §19.1.4
  equivalence, else 403.
* A nonce this server did not issue (another process's key, a forgery) gets a fresh challenge,
  not a 403: phones that reuse a cached nonce across a box restart must be able to recover.
* §10.3 step 7: an out-of-order REGISTER (same Call-ID, CSeq not higher than a binding's)
  aborts the whole update and "the request fails"; the only failure code §10.3 names is 500,
  so that is the answer. A REGISTER either applies all its changes or none.
* A contact is stored as the phone spelled its URI (some phones look for their own Contact
  textually in the 200); an equivalent spelling (§19.1.4) updates the same binding.
* A contact without ``q`` ranks as ``q=1.0`` in :meth:`Registrar.lookup`.
* RFC 5626 ``+sip.instance``/``reg-id`` and RFC 3327 Path are stored, not acted upon: bindings
  are keyed by Contact URI (no outbound flow tokens).
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol

from pbx.sip import auth
from pbx.sip.dialog import new_call_id, new_tag
from pbx.sip.errors import ParseError, RemoteProtocolError
from pbx.sip.events import Peer
from pbx.sip.message import Request, Response, build_request, make_response
from pbx.sip.params import Params
from pbx.sip.randomness import random_bytes as pooled_random
from pbx.sip.uri import SipUri, Uri, parse_uri
from pbx.store import Binding, BindingStore, Directory, StoreError

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "Authenticator",
    "KeepaliveSchedule",
    "Pinger",
    "Registrar",
    "RegistrarJobs",
    "behind_nat",
    "options_ping",
    "sip_date",
]

log = logging.getLogger(__name__)

# DigestServer.verify's reason for a nonce that fails its HMAC (see Authenticator.check).
_FOREIGN_NONCE = "nonce not issued by us"
# RFC 3261 §20.10 qvalue, read leniently: digits with an optional fraction, range checked.
_QVALUE = re.compile(r"[0-9]{1,3}(?:\.[0-9]{0,3})?")
_MAX_USER_AGENT = 256  # stored per binding; a phone's product string, not an essay


# --------------------------------------------------------------------------- authentication


class Authenticator:
    """Digest authentication of requests against the extension directory.

    The digest username is the extension number; the directory's HA1 values must have been
    made with the same ``realm``. ``key`` signs the stateless nonces (keep it across restarts
    so phones' cached nonces stay valid; a foreign nonce only costs a new challenge).

    ``algorithms`` is the order the challenges are sent in, one per algorithm, and the order
    matters for interop: RFC 8760 asks for the strongest first, but SIPp 3.6.1 and many
    phones answer only the *first* challenge and know only MD5. For such a fleet pass
    ``("MD5", "SHA-256")`` (phones that do SHA-256 still pick it) or ``("MD5",)``.
    """

    def __init__(
        self,
        directory: Directory,
        realm: str,
        key: bytes,
        algorithms: Sequence[str] = ("SHA-256", "MD5"),
        nonce_ttl: float = 300,
        *,
        random_bytes: Callable[[int], bytes] = pooled_random,
    ) -> None:
        self.directory = directory
        self.realm = realm
        self.server = auth.DigestServer(
            realm, key, nonce_ttl, algorithms, random_bytes=random_bytes
        )
        # DigestServer sorts its challenges strongest first; we send them in the given order.
        self._rank = {name.upper(): i for i, name in enumerate(algorithms)}
        # stale -> the challenge header values in sending order, each split around its nonce
        # (see _challenge_values): only the nonce changes from one challenge to the next.
        self._templates: dict[bool, list[tuple[str, str]]] = {}

    def check(self, request: Request, now: float, *, proxy: bool = False) -> str | Response:
        """The authenticated extension number, or the response to send instead.

        ``proxy``: read ``Proxy-Authorization`` and answer 407 (for requests the box relays,
        such as INVITE) instead of ``Authorization`` and 401.
        """
        name = "Proxy-Authorization" if proxy else "Authorization"
        creds: auth.Credentials | None = None
        for line in request.headers.lines(name):
            try:
                parsed = auth.parse_credentials(line)
            except auth.UnsupportedSchemeError:
                continue  # Basic and friends: our challenge says what we take
            except ParseError:
                return make_response(request, 400, "Malformed credentials", to_tag=new_tag())
            if parsed.realm == self.realm:  # others are for other hops (§22.3)
                creds = parsed
                break
        if creds is None:
            return self.challenge(request, now, proxy=proxy)
        if not _uri_matches(creds.uri, request.uri):
            log.info("digest uri does not match the Request-URI (user %r)", creds.username)
            return make_response(request, 403, "Digest uri mismatch", to_tag=new_tag())
        result = self.server.verify(creds, request.method, self.directory.ha1, now, request.body)
        if result.status is auth.AuthStatus.OK:
            assert result.username is not None
            return result.username
        if result.status is auth.AuthStatus.STALE:
            return self.challenge(request, now, stale=True, proxy=proxy)
        if result.reason == _FOREIGN_NONCE:
            return self.challenge(request, now, proxy=proxy)
        # reason never holds a secret, and does not tell unknown users from bad passwords
        log.info("digest auth refused for %r: %s", creds.username, result.reason)
        return make_response(request, 403, to_tag=new_tag())

    def challenge(
        self, request: Request, now: float, *, stale: bool = False, proxy: bool = False
    ) -> Response:
        """A 401 (407 with ``proxy``) with one challenge per algorithm, in the given order."""
        header = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        return make_response(
            request,
            407 if proxy else 401,
            to_tag=new_tag(),
            extra=[(header, value) for value in self._challenge_values(now, stale)],
        )

    def _challenge_values(self, now: float, stale: bool) -> list[str]:
        """``Challenge.to_header()`` of each of ``server.challenges(now, stale)``, in the given
        order. Rendered once per ``stale`` and cut around the nonce; each call then only
        draws fresh nonces (base64url text: quoting leaves it as is)."""
        templates = self._templates.get(stale)
        if templates is None:
            challenges = sorted(
                self.server.challenges(now, stale),
                key=lambda c: self._rank.get((c.algorithm or "MD5").upper(), len(self._rank)),
            )
            templates = []
            for c in challenges:
                before, nonce, after = c.to_header().partition(f'nonce="{c.nonce}"')
                assert nonce, "the nonce is quoted verbatim"
                templates.append((before + 'nonce="', '"' + after))
            self._templates[stale] = templates
        make_nonce = self.server.make_nonce
        return [before + make_nonce(now) + after for before, after in templates]


def _uri_matches(digest_uri: str | None, request_uri: Uri) -> bool:
    if digest_uri is None:
        return False
    if digest_uri == str(request_uri):
        return True
    try:
        return parse_uri(digest_uri).equivalent(request_uri)
    except ParseError:
        return False


# ------------------------------------------------------------------------------- registrar


class Registrar:
    """REGISTER processing (RFC 3261 §10.3) and the location service lookup.

    ``domain``: the domain the box is registrar for; ``None`` accepts any Request-URI host.
    ``aliases``: other hosts meaning the box (its IP literals, host names). Expiry bounds are
    seconds: requests below ``min_expires`` (but not 0) get 423, above ``max_expires`` are
    clamped, and contacts without any expiry get ``default_expires``.

    The §8.2 checks (method, URI scheme, Require) are the transaction user's, before
    :meth:`handle`; so is answering retransmissions (the transaction layer's).
    """

    def __init__(
        self,
        directory: Directory,
        bindings: BindingStore,
        authenticator: Authenticator,
        *,
        domain: str | None = None,
        aliases: Iterable[str] = (),
        min_expires: int = 60,
        max_expires: int = 3600,
        default_expires: int = 3600,
    ) -> None:
        if not 0 < min_expires <= default_expires <= max_expires:
            raise ValueError("need 0 < min_expires <= default_expires <= max_expires")
        self.directory = directory
        self.bindings = bindings
        self.authenticator = authenticator
        self.domain = domain
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.default_expires = default_expires
        names = [domain, *aliases] if domain is not None else []
        self._hosts = frozenset(_bare_host(name) for name in names)

    # ---------------------------------------------------------------------------- REGISTER

    def handle(self, request: Request, source: Peer, now: float) -> Response:
        """Answer a REGISTER that arrived from ``source``: 200 with the AoR's bindings, or
        the error. Never raises for a peer's mistake."""
        try:
            return self._register(request, source, now)
        except RemoteProtocolError as exc:
            # A header the peer got wrong (Contact, Expires, To, ...): its error has the answer.
            reason = "".join(c for c in exc.reason if " " <= c <= "~")[:80] or None
            return make_response(request, exc.status or 400, reason, to_tag=new_tag())
        except StoreError:
            log.exception("registrar store failure")
            return _error(request, 500, "Store unavailable")

    def _register(self, request: Request, source: Peer, now: float) -> Response:
        # Step 1: is this registrar responsible for the Request-URI's domain?
        uri = request.uri
        if not isinstance(uri, SipUri):
            return _error(request, 416)
        if not self._serves(uri.host):
            return _error(request, 404, "Domain not served here")
        # Steps 2-3 (Require was checked by the TU): who is asking?
        who = self.authenticator.check(request, now)
        if isinstance(who, Response):
            return who
        # Steps 4-5: the AoR must be a SIP URI of our domain naming the user's own extension.
        to_uri = request.to.uri
        if not isinstance(to_uri, SipUri):
            return _error(request, 400, "To is not a SIP URI")  # RFC 4475 §3.3.4
        if not self._serves(to_uri.host):
            return _error(request, 404, "Domain not served here")
        number = to_uri.user_unescaped
        if number != who:
            # The authenticated user exists, so only other numbers need the lookup.
            if number is None or self.directory.get(number) is None:
                return _error(request, 404)
            log.info("extension %s may not register %s", who, number)
            return _error(request, 403, "Not your address-of-record")
        # Steps 6-7: what the Contact headers ask for, checked in full before any write.
        stored = self.bindings.list(number, now)
        changes = self._changes(request, source, now, number, stored)
        if isinstance(changes, Response):
            return changes
        if changes and not self._commit(number, changes, stored):
            return _error(request, 500, "Binding update failed")
        # Step 8: every current binding, the ones just written included.
        current = {b.contact: b for b in stored}
        for contact, binding in changes.items():
            if binding is None:
                current.pop(contact, None)
            else:
                current[contact] = binding
        return self._ok(request, now, _by_preference(current.values()))

    def _changes(
        self, request: Request, source: Peer, now: float, aor: str, stored: list[Binding]
    ) -> dict[str, Binding | None] | Response:
        """The writes the request asks for, by contact (``None`` removes), or the error that
        rejects it whole. Unchanged bindings are not in the result: no write for them."""
        call_id = request.call_id
        cseq = request.cseq.seq
        changes: dict[str, Binding | None] = {}
        # Parsed and cached by the parser already; "*" among other contacts fails there (400).
        contacts = request.contacts
        if not contacts:
            if not request.contact_star:
                return changes  # a query (§10.2.3)
            if request.expires != 0:
                return _error(request, 400, "Contact * needs Expires: 0")
            for bound in stored:
                if bound.call_id == call_id and cseq <= bound.cseq:
                    return _error(request, 500, "Out of order REGISTER")
                changes[bound.contact] = None
            return changes
        header_expires = request.expires
        by_text = {b.contact: b for b in stored}
        user_agent = request.headers.get("User-Agent")
        if user_agent is not None:
            user_agent = user_agent[:_MAX_USER_AGENT]
        path = tuple(request.headers.values("Path"))
        for address in contacts:
            params = address.params
            expires = _expires(params.get("expires"), header_expires, self.default_expires)
            if 0 < expires < self.min_expires:
                extra = [("Min-Expires", str(self.min_expires))]
                return make_response(request, 423, to_tag=new_tag(), extra=extra)
            expires = min(expires, self.max_expires)
            q = _qvalue(params.get("q"))
            contact = str(address.uri)
            old = by_text.get(contact) or _equivalent(address.uri, stored)
            if old is not None:
                # Step 7: a REGISTER older than what made the binding changes nothing at all.
                if old.call_id == call_id and cseq <= old.cseq:
                    return _error(request, 500, "Out of order REGISTER")
                if old.contact != contact or expires == 0:
                    changes[old.contact] = None  # removed, or moved to the new spelling
            if expires == 0:
                continue
            changes[contact] = Binding(
                aor=aor,
                contact=contact,
                expires_at=now + expires,
                call_id=call_id,
                cseq=cseq,
                source_transport=source.transport,
                source_host=source.host,
                source_port=source.port,
                updated_at=now,
                q=q,
                user_agent=user_agent,
                instance_id=params.get("+sip.instance"),
                reg_id=_reg_id(params),
                path=path,
            )
        # Removing a contact that was never bound is success without a write.
        return {k: v for k, v in changes.items() if v is not None or k in by_text}

    def _commit(self, aor: str, changes: dict[str, Binding | None], stored: list[Binding]) -> bool:
        """Apply every change or none (§10.3 step 7: all updates commit, or the request
        fails with 500 and the tentative ones are undone)."""
        done: list[str] = []
        try:
            for contact, binding in changes.items():
                if binding is None:
                    self.bindings.remove(aor, contact)
                else:
                    self.bindings.put(binding)
                done.append(contact)
        except StoreError:
            log.exception("binding update of %s failed; undoing %d writes", aor, len(done))
            before = {b.contact: b for b in stored}
            for contact in reversed(done):
                try:
                    old = before.get(contact)
                    if old is None:
                        self.bindings.remove(aor, contact)
                    else:
                        self.bindings.put(old)
                except StoreError:
                    log.exception("could not undo the update of %s %s", aor, contact)
            return False
        return True

    def _ok(self, request: Request, now: float, bindings: list[Binding]) -> Response:
        extra = [("Contact", _contact_value(b, now)) for b in bindings]
        path = request.headers.values("Path")
        if path and "path" in request.tokens("Supported"):
            extra.extend(("Path", p) for p in path)  # RFC 3327 §5.3
        extra.append(("Date", sip_date(now)))  # §10.3 step 8; phones set clocks
        return make_response(request, 200, to_tag=new_tag(), extra=extra)

    def _serves(self, host: str) -> bool:
        return self.domain is None or _bare_host(host) in self._hosts

    # ------------------------------------------------------------------------------ lookup

    def lookup(self, aor_number: str, now: float) -> list[Binding]:
        """The extension's active bindings in the order to ring them: highest ``q`` first
        (no ``q`` counts as 1.0), then the most recently registered."""
        return _by_preference(self.bindings.list(aor_number, now))


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def sip_date(now: float) -> str:
    """A Date header value (RFC 3261 §20.17: RFC 1123 form, always GMT). Not email.utils:
    it imports socket, and the sans-IO core loads none."""
    return _date_of(int(now))


@lru_cache(maxsize=2)  # one REGISTER after another mostly falls in the same second
def _date_of(second: int) -> str:
    t = time.gmtime(second)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


def _error(request: Request, status: int, reason: str | None = None) -> Response:
    return make_response(request, status, reason, to_tag=new_tag())


def _bare_host(host: str) -> str:
    return host.lower().removeprefix("[").removesuffix("]")


def _expires(param: str | None, header: int | None, default: int) -> int:
    """Seconds asked for one contact: its ``expires`` parameter, else the Expires header,
    else the registrar's default (§10.3 step 7)."""
    if param is None:
        return default if header is None else header
    if not param.isdigit() or not param.isascii():
        raise ParseError(f"invalid Contact expires {param!r}")
    return int(param) if len(param) <= 10 else 2**32 - 1  # clamped by the caller anyway


def _qvalue(text: str | None) -> float | None:
    if text is None:
        return None
    if _QVALUE.fullmatch(text) is None or not 0.0 <= float(text) <= 1.0:
        raise ParseError(f"invalid Contact q {text!r}")
    return float(text)


def _reg_id(params: Params) -> int | None:
    value = params.get("reg-id")
    if value is None:
        return None
    if not value.isdigit() or not value.isascii() or len(value) > 10:
        raise ParseError(f"invalid reg-id {value!r}")  # RFC 5626 §4.2: 1 to 2**31-1
    return int(value)


def _equivalent(uri: Uri, stored: list[Binding]) -> Binding | None:
    """The stored binding whose contact is the same URI spelled differently (§19.1.4)."""
    for binding in stored:
        try:
            if parse_uri(binding.contact).equivalent(uri):
                return binding
        except ParseError:
            continue
    return None


def _by_preference(bindings: Iterable[Binding]) -> list[Binding]:
    return sorted(bindings, key=lambda b: (-(1.0 if b.q is None else b.q), -b.updated_at))


def _contact_value(binding: Binding, now: float) -> str:
    parts = [f"<{binding.contact}>;expires={max(0, int(binding.expires_at - now + 0.5))}"]
    if binding.q is not None:
        parts.append(f";q={binding.q:.3g}")
    if binding.instance_id is not None:
        parts.append(f';+sip.instance="{binding.instance_id}"')
    if binding.reg_id is not None:
        parts.append(f";reg-id={binding.reg_id}")
    return "".join(parts)


# ------------------------------------------------------------------------- NAT keep-alive


def behind_nat(binding: Binding) -> bool:
    """Whether the binding is a UDP phone reached through a NAT: its REGISTER came from
    another address than its Contact names. Such pinholes close within minutes unless
    something passes through them (RFC 5626 §3.5 measures 30-60 s on some NATs)."""
    if binding.source_transport != "UDP" or binding.path:
        return False
    try:
        uri = parse_uri(binding.contact)
    except ParseError:
        return False
    if not isinstance(uri, SipUri) or (uri.transport or "udp") != "udp":
        return False
    default_port = 5061 if uri.secure else 5060
    return (uri.host_bare, uri.port or default_port) != (binding.source_host, binding.source_port)


@dataclass(slots=True)
class _Pinged:
    next_at: float
    updated_at: float  # of the binding the misses were counted against
    misses: int = 0
    busy: bool = False


_PingKey = tuple[str, str, str, int]  # aor, contact, source host, source port


class KeepaliveSchedule:
    """When to ping which NAT binding (sans-IO): fed the active bindings and the outcomes.

    Each binding behind a NAT is pinged every ``interval`` seconds, at most one ping in
    flight; new ones start at a random point of the first interval so a restart does not
    ping every phone at once. ``max_misses`` unanswered pings in a row, with no REGISTER
    refreshing the binding meanwhile, condemn it.
    """

    def __init__(
        self,
        interval: float = 25.0,
        max_misses: int = 3,
        *,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if interval <= 0 or max_misses < 1:
            raise ValueError("interval and max_misses must be positive")
        self.interval = interval
        self.max_misses = max_misses
        self._jitter = jitter
        self._entries: dict[_PingKey, _Pinged] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def due(self, active: Iterable[Binding], now: float) -> list[Binding]:
        """Sync with the active bindings and return those to ping now (marked in flight)."""
        seen: set[_PingKey] = set()
        out: list[Binding] = []
        for binding in active:
            if not behind_nat(binding):
                continue
            key = _key(binding)
            seen.add(key)
            entry = self._entries.get(key)
            if entry is None:
                first = now + self.interval * self._jitter()
                entry = self._entries[key] = _Pinged(first, binding.updated_at)
            elif binding.updated_at != entry.updated_at:
                entry.updated_at, entry.misses = binding.updated_at, 0  # it re-registered
            if not entry.busy and entry.next_at <= now:
                entry.busy = True
                entry.next_at = now + self.interval
                out.append(binding)
        for key in self._entries.keys() - seen:
            if not self._entries[key].busy:
                del self._entries[key]  # expired, removed or moved to another source
        return out

    def answered(self, binding: Binding) -> None:
        entry = self._entries.get(_key(binding))
        if entry is not None:
            entry.busy, entry.misses = False, 0

    def missed(self, binding: Binding) -> bool:
        """Record an unanswered ping; True when the binding should now be removed."""
        entry = self._entries.get(_key(binding))
        if entry is None:
            return False
        entry.busy = False
        if entry.updated_at != binding.updated_at:
            return False  # refreshed while the ping was out: count from the new one
        entry.misses += 1
        if entry.misses < self.max_misses:
            return False
        del self._entries[_key(binding)]
        return True


def _key(binding: Binding) -> _PingKey:
    return binding.aor, binding.contact, binding.source_host, binding.source_port


def options_ping(binding: Binding, via: str, local: tuple[str, int]) -> Request:
    """An out-of-dialog OPTIONS to a binding's contact (sent to its source address)."""
    host, port = local
    host = f"[{host}]" if ":" in host else host
    return build_request(
        "OPTIONS",
        parse_uri(binding.contact),
        [
            ("Via", via),
            ("Max-Forwards", "70"),
            ("From", f"<sip:keepalive@{host}:{port}>;tag={new_tag()}"),
            ("To", f"<{binding.contact}>"),
            ("Call-ID", new_call_id()),
            ("CSeq", "1 OPTIONS"),
        ],
    )


class Pinger(Protocol):
    """What :class:`RegistrarJobs` needs of the SIP endpoint (:class:`pbx.endpoint.SipEndpoint`
    fits): client transactions whose failures come back as local 408/503 responses."""

    def request(self, request: Request, target: Peer) -> Awaitable[Response]: ...

    def via(self, transport: str = ...) -> str: ...

    def local(self, transport: str = ...) -> tuple[str, int]: ...


class RegistrarJobs:
    """The registrar's background work on the event loop: every ``interval`` seconds, remove
    expired bindings and send the due keep-alive pings (see :class:`KeepaliveSchedule`).

    CRLF keep-alives on TCP are the transport's business; this only pings UDP phones.
    """

    def __init__(
        self,
        registrar: Registrar,
        endpoint: Pinger,
        interval: float = 5.0,
        *,
        keepalive_interval: float = 25.0,
        max_misses: int = 3,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.registrar = registrar
        self.endpoint = endpoint
        self.interval = interval
        self.schedule = KeepaliveSchedule(keepalive_interval, max_misses)
        self._clock = clock
        self._pings: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Run until cancelled; pings in flight are cancelled with it."""
        import asyncio  # noqa: PLC0415 - importing the sans-IO registrar loads no asyncio

        try:
            while True:
                for binding in self.tick(self._clock()):
                    task = asyncio.get_running_loop().create_task(self._ping(binding))
                    self._pings.add(task)
                    task.add_done_callback(self._pings.discard)
                await asyncio.sleep(self.interval)
        finally:
            for task in self._pings:
                task.cancel()
            await asyncio.gather(*self._pings, return_exceptions=True)

    def tick(self, now: float) -> list[Binding]:
        """One round: sweep expired bindings, return the bindings to ping now."""
        bindings = self.registrar.bindings
        try:
            for gone in bindings.expire(now):
                log.info("binding expired: %s -> %s", gone.aor, gone.contact)
            return self.schedule.due(bindings.all_active(now), now)
        except StoreError:
            log.exception("registrar sweep failed; trying again in %.0f s", self.interval)
            return []

    async def _ping(self, binding: Binding) -> None:
        target = Peer("UDP", binding.source_host, binding.source_port)
        try:
            local = self.endpoint.local("UDP")
            request = options_ping(binding, self.endpoint.via("UDP"), local)
            response = await self.endpoint.request(request, target)
        except Exception:  # a ping must never take the job down
            log.exception("keep-alive OPTIONS to %s failed", target)
            response = None
        if response is not None and _from_peer(response):
            self.schedule.answered(binding)
        elif self.schedule.missed(binding):
            self._drop(binding)

    def _drop(self, binding: Binding) -> None:
        bindings = self.registrar.bindings
        try:
            # Only if it is still the binding we pinged: a REGISTER may have moved it.
            for current in bindings.list(binding.aor):
                if _key(current) == _key(binding) and current.updated_at == binding.updated_at:
                    bindings.remove(binding.aor, binding.contact)
                    log.info(
                        "binding unreachable, removed: %s -> %s via %s:%d",
                        binding.aor,
                        binding.contact,
                        binding.source_host,
                        binding.source_port,
                    )
        except StoreError:
            log.exception("could not remove the unreachable binding of %s", binding.aor)


def _from_peer(response: Response) -> bool:
    """Whether a final response came from the phone, not from our own transaction layer:
    the endpoint makes up 408 (timeout) and 503 (transport failure) itself (§8.1.3.1), and
    those carry no To tag, which every response of a UAS has (§8.2.6.2). Any answer from
    the phone, even an error, shows the pinhole is open."""
    if response.status not in (408, 503):
        return True
    try:
        return response.to.tag is not None
    except ParseError:
        return True
