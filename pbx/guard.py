"""The SIP door guard (sans-IO): rate limits and bans against scanners and password guessers.

A box on a network with remote workers sees SIP scanners within hours: floods of REGISTER,
INVITE and OPTIONS walking through extension numbers and passwords. The guard is asked about
every datagram's source address before anything is parsed (:meth:`Guard.allows`) and told
about every failed authentication (:meth:`Guard.failed`, a 403 to a REGISTER or INVITE,
wherever it was answered: the core or a registrar worker). A source is banned (its packets
are dropped unanswered, so a scanner learns nothing) for ``ban_seconds`` when it

* fails authentication ``max_failures`` times within ``failure_window`` seconds, or
* sends more than ``max_rate`` requests per second, beyond a burst of twice that
  (a token bucket per address).

Trusted networks (loopback by default: the box's own tools and tests) are never limited. The
tables are bounded (``max_sources``, least recently seen forgotten first), so a spoofed flood
from many addresses costs memory up to that bound, not more.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["Guard", "GuardSettings"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GuardSettings:
    max_failures: int = 10
    failure_window: float = 60.0
    max_rate: float = 200.0  # requests per second per address; bursts of twice that
    ban_seconds: float = 600.0
    trusted: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    max_sources: int = 10_000

    def __post_init__(self) -> None:
        if self.max_failures < 1 or self.max_rate <= 0 or self.max_sources < 1:
            raise ValueError("max_failures, max_rate and max_sources must be positive")
        if self.failure_window <= 0 or self.ban_seconds <= 0:
            raise ValueError("failure_window and ban_seconds must be positive")
        for network in self.trusted:
            ipaddress.ip_network(network)  # refused here, with the network named


@dataclass(slots=True)
class _Source:
    tokens: float
    refilled: float
    failures: list[float]


class Guard:
    """Decisions per source address; times are the caller's monotonic seconds."""

    def __init__(self, settings: GuardSettings | None = None) -> None:
        self.settings = s = settings or GuardSettings()
        self._trusted = [ipaddress.ip_network(n) for n in s.trusted]
        self._trust_cache: dict[str, bool] = {}
        self._sources: OrderedDict[str, _Source] = OrderedDict()
        self._banned: OrderedDict[str, float] = OrderedDict()  # address -> banned until
        self.dropped = 0  # datagrams refused
        self.bans = 0  # bans so far

    def trusted(self, host: str) -> bool:
        known = self._trust_cache.get(host)
        if known is None:
            try:
                address = ipaddress.ip_address(host)
                known = any(address in network for network in self._trusted)
            except ValueError:
                known = False
            if len(self._trust_cache) >= self.settings.max_sources:
                self._trust_cache.clear()
            self._trust_cache[host] = known
        return known

    def allows(self, host: str, now: float) -> bool:
        """Whether a request from ``host`` may be looked at; counts it against the rate."""
        if self.trusted(host):
            return True
        until = self._banned.get(host)
        if until is not None:
            if now < until:
                self.dropped += 1
                return False
            del self._banned[host]
        source = self._source(host, now)
        rate = self.settings.max_rate
        source.tokens = min(2 * rate, source.tokens + (now - source.refilled) * rate)
        source.refilled = now
        if source.tokens < 1:
            self._ban(host, now, f"more than {rate:g} requests/s")
            self.dropped += 1
            return False
        source.tokens -= 1
        return True

    def failed(self, host: str, now: float) -> None:
        """``host`` failed an authentication."""
        if self.trusted(host) or host in self._banned:
            return
        source = self._source(host, now)
        window = now - self.settings.failure_window
        source.failures = [t for t in source.failures if t > window]
        source.failures.append(now)
        if len(source.failures) >= self.settings.max_failures:
            self._ban(host, now, f"{len(source.failures)} failed authentications")

    def banned(self, now: float) -> list[tuple[str, float]]:
        """The banned addresses with the seconds left."""
        return [(host, until - now) for host, until in self._banned.items() if until > now]

    def unban(self, host: str) -> bool:
        """Lift ``host``'s ban (and forget its history); False if it was not banned."""
        self._sources.pop(host, None)
        return self._banned.pop(host, None) is not None

    def _source(self, host: str, now: float) -> _Source:
        source = self._sources.get(host)
        if source is None:
            if len(self._sources) >= self.settings.max_sources:
                self._sources.popitem(last=False)
            source = self._sources[host] = _Source(2 * self.settings.max_rate, now, [])
        else:
            self._sources.move_to_end(host)
        return source

    def _ban(self, host: str, now: float, why: str) -> None:
        if len(self._banned) >= self.settings.max_sources:
            self._banned.popitem(last=False)
        self._banned[host] = now + self.settings.ban_seconds
        self._sources.pop(host, None)
        self.bans += 1
        log.warning(
            "sip source banned: host=%s reason=%r seconds=%g",
            host,
            why,
            self.settings.ban_seconds,
        )
