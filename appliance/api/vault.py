"""Site identities unlocked for playback, held in memory only, for a limited time.

The site identity that opens recordings is stored passphrase-protected
(:mod:`pbx.recording.keys`); the box records without it. To play recordings a supervisor
unlocks it with the passphrase (``POST /recordings/unlock``, LAN only); the identities stay
in this process's memory until ``ttl`` seconds pass or someone locks them again. The
recordings library asks :meth:`IdentityVault.identities` at each playback.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from pbx.recording.age import Identity
from pbx.store import Clock

__all__ = ["IdentityVault", "VaultRefused"]


class VaultRefused(Exception):
    """The passphrase opened nothing (or there is no identity to open)."""


class IdentityVault:
    def __init__(
        self,
        unlock: Callable[[str], Sequence[Identity]],
        *,
        ttl: float = 900.0,
        clock: Clock,
    ) -> None:
        """``unlock``: passphrase -> identities (e.g. ``Keyring.unlock``); it raises when the
        passphrase opens none."""
        self._unlock = unlock
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._held: list[Identity] = []
        self._until = 0.0

    def unlock(self, passphrase: str) -> float:
        """Unlock and hold the identities; returns until when. Raises :class:`VaultRefused`."""
        try:
            identities = list(self._unlock(passphrase))
        except Exception as exc:  # the keyring's own errors: wrong passphrase, no key yet
            raise VaultRefused(str(exc) or type(exc).__name__) from None
        if not identities:
            raise VaultRefused("the passphrase opens none of the site identities")
        with self._lock:
            self._held = identities
            self._until = self._clock() + self.ttl
            return self._until

    def lock(self) -> None:
        with self._lock:
            self._held = []
            self._until = 0.0

    def unlocked_until(self) -> float | None:
        with self._lock:
            if self._held and self._clock() < self._until:
                return self._until
            self._held = []  # expired: drop the secrets now, not at the next unlock
            return None

    def identities(self) -> list[Identity]:
        with self._lock:
            if self._clock() >= self._until:
                self._held = []
            return list(self._held)
