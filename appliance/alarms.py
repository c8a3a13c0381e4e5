"""Alarms: what the box wants a person to look at. A small value type shared by the parts
that raise alarms (sync, later gateways and storage) and the parts that show them (the
management API and the console), so those read one shape without importing the raisers."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Alarm", "Severity"]


class Severity(enum.Enum):
    WARNING = "warning"  # degraded, nothing lost yet (e.g. replication behind)
    CRITICAL = "critical"  # something stopped working (e.g. the replicator keeps dying)


@dataclass(frozen=True, slots=True)
class Alarm:
    """One active alarm. ``code`` is stable (for filters and translations), ``message``
    is for people and never holds secrets; ``since`` is unix seconds (UTC) when it was
    raised. An alarm is cleared by its source no longer reporting it."""

    code: str
    source: str
    severity: Severity
    message: str
    since: float

    def to_json(self) -> dict[str, object]:
        return {
            "code": self.code,
            "source": self.source,
            "severity": self.severity.value,
            "message": self.message,
            "since": self.since,
        }
