"""The sync status and its alarms: a pure state machine fed what the supervisor sees
(process started/exited, positions read from Litestream's control socket, errors) and
``now``; it answers with a :class:`SyncStatus` and, on an exit, the restart delay.

Lag is the time since Litestream last completed a sync to the target (``last_sync_at`` of
its control socket's ``/list``). Litestream syncs every ``sync_interval`` also when nothing
changed, so a healthy replica shows at most a sync interval or two; while the target is
unreachable ``last_sync_at`` stands still and the lag grows. Whatever was committed more
than ``lag`` seconds ago is in the target. The last sync time seen is kept across restarts
of Litestream, so a crash loop shows a growing lag too.

Alarms:

* ``sync.down`` (critical): Litestream exited without being asked to; cleared when a
  restarted Litestream has completed a sync.
* ``sync.lag`` (warning): lag above ``alarm_after``; cleared when it is back under.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any

from appliance.alarms import Alarm, Severity

__all__ = ["ALARM_DOWN", "ALARM_LAG", "Backoff", "SyncMonitor", "SyncState", "SyncStatus"]

ALARM_DOWN = "sync.down"
ALARM_LAG = "sync.lag"
SOURCE = "sync"


class SyncState(enum.Enum):
    DISABLED = "disabled"  # no sync configured
    STOPPED = "stopped"  # the service is not running
    STARTING = "starting"  # Litestream started, no sync completed yet
    REPLICATING = "replicating"  # the target is at most ``behind_after`` behind
    BEHIND = "behind"  # the target is further behind (unreachable, slow, or Litestream stuck)
    RESTARTING = "restarting"  # Litestream exited; waiting for the restart backoff


@dataclass(frozen=True, slots=True)
class SyncStatus:
    """What the API, the console and ``edgepbx sync status`` show. Times are unix seconds."""

    state: SyncState
    target: str
    last_sync_at: float | None = None
    lag_seconds: float | None = None
    local_txid: int | None = None
    replicated_txid: int | None = None
    restarts: int = 0
    last_error: str | None = None
    alarms: tuple[Alarm, ...] = ()
    updated_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "target": self.target,
            "last_sync_at": self.last_sync_at,
            "lag_seconds": self.lag_seconds,
            "local_txid": self.local_txid,
            "replicated_txid": self.replicated_txid,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "alarms": [a.to_json() for a in self.alarms],
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SyncStatus:
        return cls(
            state=SyncState(data["state"]),
            target=str(data["target"]),
            last_sync_at=data.get("last_sync_at"),
            lag_seconds=data.get("lag_seconds"),
            local_txid=data.get("local_txid"),
            replicated_txid=data.get("replicated_txid"),
            restarts=int(data.get("restarts", 0)),
            last_error=data.get("last_error"),
            alarms=tuple(
                Alarm(
                    code=a["code"],
                    source=a["source"],
                    severity=Severity(a["severity"]),
                    message=a["message"],
                    since=a["since"],
                )
                for a in data.get("alarms", ())
            ),
            updated_at=float(data.get("updated_at", 0.0)),
        )


@dataclass(slots=True)
class Backoff:
    """Restart delays: ``minimum`` doubling up to ``maximum``; a run of at least
    ``stable_after`` seconds starts again from ``minimum``."""

    minimum: float
    maximum: float
    stable_after: float
    _next: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self._next = self.minimum

    def after_run(self, ran_for: float) -> float:
        if ran_for >= self.stable_after:
            self._next = self.minimum
        delay = self._next
        self._next = min(self.maximum, self._next * 2)
        return delay


class SyncMonitor:
    """The status core. ``behind_after``/``alarm_after`` in seconds of lag."""

    def __init__(
        self,
        target: str,
        *,
        behind_after: float,
        alarm_after: float,
        backoff: Backoff,
        enabled: bool = True,
    ) -> None:
        self.target = target
        self.behind_after = behind_after
        self.alarm_after = alarm_after
        self.backoff = backoff
        self.enabled = enabled
        self.running = False  # the service (not the process) is started
        self.process_up = False
        self.started_at: float | None = None  # this Litestream process
        self.first_started_at: float | None = None  # the service
        self.last_sync_at: float | None = None
        self.local_txid: int | None = None
        self.replicated_txid: int | None = None
        self.restarts = 0
        self.last_error: str | None = None
        self.log_error: str | None = None  # the last error Litestream itself reported
        self.down_since: float | None = None  # an unexpected exit not yet healed by a sync
        self.lag_since: float | None = None

    # ---------------------------------------------------------------- inputs

    def started(self, now: float) -> None:
        """A Litestream process was spawned."""
        if self.first_started_at is None:
            self.first_started_at = now
        self.running = True
        self.process_up = True
        self.started_at = now

    def exited(self, now: float, returncode: int | None) -> float:
        """Litestream exited without being asked to; returns the delay before restarting."""
        ran_for = now - self.started_at if self.started_at is not None else 0.0
        self.process_up = False
        self.restarts += 1
        detail = f": {self.log_error}" if self.log_error else ""
        self.last_error = f"litestream exited with code {returncode}{detail}"
        if self.down_since is None:
            self.down_since = now
        return self.backoff.after_run(ran_for)

    def observed(self, now: float, last_sync_at: float | None, local_txid: int | None) -> None:
        """A reading of Litestream's control socket."""
        if local_txid is not None:
            self.local_txid = local_txid
        if last_sync_at is None:
            return
        if self.last_sync_at is None or last_sync_at > self.last_sync_at:
            self.last_sync_at = last_sync_at
        started = self.started_at if self.started_at is not None else now
        if self.down_since is not None and last_sync_at >= started:
            self.down_since = None  # the restarted process has shipped: healed

    def synced(self, now: float, txid: int, replicated_txid: int) -> None:
        """A forced sync completed (``POST /sync`` with ``wait``)."""
        self.local_txid = txid
        self.replicated_txid = replicated_txid
        self.observed(now, now, txid)

    def error(self, message: str) -> None:
        """An error Litestream logged (no secrets)."""
        self.log_error = message
        self.last_error = message

    def stopped(self) -> None:
        self.running = False
        self.process_up = False
        self.down_since = None

    # ---------------------------------------------------------------- outputs

    def lag(self, now: float) -> float | None:
        reference = self.last_sync_at if self.last_sync_at is not None else self.first_started_at
        if reference is None:
            return None
        return max(0.0, now - reference)

    def state(self, now: float) -> SyncState:
        if not self.enabled:
            return SyncState.DISABLED
        if not self.running:
            return SyncState.STOPPED
        if not self.process_up:
            return SyncState.RESTARTING
        lag = self.lag(now)
        if lag is not None and lag > self.behind_after:
            return SyncState.BEHIND
        if self.last_sync_at is None or self.down_since is not None:
            return SyncState.STARTING
        return SyncState.REPLICATING

    def alarms(self, now: float) -> tuple[Alarm, ...]:
        if not self.running:
            return ()
        alarms = []
        if self.down_since is not None:
            alarms.append(
                Alarm(
                    code=ALARM_DOWN,
                    source=SOURCE,
                    severity=Severity.CRITICAL,
                    message=f"cloud sync stopped: {self.last_error or 'litestream exited'}; "
                    f"restarted {self.restarts} time(s)",
                    since=self.down_since,
                )
            )
        lag = self.lag(now)
        if lag is not None and lag > self.alarm_after:
            reference = self.last_sync_at or self.first_started_at or now
            alarms.append(
                Alarm(
                    code=ALARM_LAG,
                    source=SOURCE,
                    severity=Severity.WARNING,
                    message=f"cloud copy is {_human(lag)} behind ({self.target}); "
                    "calls are unaffected and it catches up when the target is back"
                    + (f"; last error: {self.log_error}" if self.log_error else ""),
                    since=reference + self.alarm_after,
                )
            )
        return tuple(alarms)

    def status(self, now: float) -> SyncStatus:
        lag = self.lag(now) if self.running else None
        return SyncStatus(
            state=self.state(now),
            target=self.target,
            last_sync_at=self.last_sync_at,
            lag_seconds=None if lag is None else round(lag, 3),
            local_txid=self.local_txid,
            replicated_txid=self.replicated_txid,
            restarts=self.restarts,
            last_error=self.last_error,
            alarms=self.alarms(now),
            updated_at=now,
        )


def _human(seconds: float) -> str:
    if seconds < 120:
        return f"{math.floor(seconds)} s"
    if seconds < 7200:
        return f"{math.floor(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"
