"""The audit log: every lifecycle event of a recording and every change an admin makes, in a
hash chain, so that a missing or altered event is detectable.

Each event's ``hash`` is SHA-256 over the previous event's hash and the event's own fields
(canonical JSON). Editing an event breaks its hash; deleting or reordering one breaks the
next event's ``prev_hash``; sequence numbers have no gaps. Deleting the newest events leaves
a valid shorter chain, so the log also keeps an *anchor* (the newest ``seq`` and hash)
somewhere the chain's readers cannot write: the SQLite log keeps it in ``local.db``, which is
never replicated.

Events are metadata: they name who did what to which object, never audio, keys or
secrets. :func:`check_detail` refuses detail keys that name a secret.

This module holds the value, the protocol, the chain check and the in-memory twin; the SQLite
log is :mod:`appliance.store.audit`.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

from pbx.store import Clock, InvalidValue, check_page

__all__ = [
    "GENESIS",
    "ORIGINS",
    "AuditEvent",
    "AuditLog",
    "ChainReport",
    "MemoryAuditLog",
    "Origin",
    "check_chain",
    "check_detail",
    "event_hash",
]

Origin = Literal["box", "lan", "cloud", "console"]
ORIGINS: tuple[Origin, ...] = ("box", "lan", "cloud", "console")

GENESIS = "0" * 64  # the prev_hash of the first event

# Detail keys that would put a secret into replicated metadata.
_SECRET_WORDS = ("password", "passphrase", "secret", "token", "ha1", "identity", "private")


@dataclass(frozen=True, slots=True)
class AuditEvent:
    seq: int
    time: float
    actor: str  # who: "system", "recorder", an admin's login, "cabinet"
    origin: Origin  # where the request came from
    action: str  # dotted verb, e.g. "recording.started", "extension.updated"
    target: str  # the object, e.g. a recording id or an extension number
    detail: Mapping[str, object] = field(default_factory=dict)
    prev_hash: str = GENESIS
    hash: str = ""


def event_hash(prev_hash: str, e: AuditEvent) -> str:
    """The chain hash of ``e`` (its ``prev_hash`` and ``hash`` fields are not read)."""
    body = json.dumps(
        [e.seq, e.time, e.actor, e.origin, e.action, e.target, e.detail],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return hashlib.sha256(f"{prev_hash}:{body}".encode()).hexdigest()


def check_detail(detail: Mapping[str, object]) -> None:
    """Refuse details that cannot go into the chain: not JSON, or a key naming a secret."""
    for key in detail:
        lowered = key.lower()
        if any(word in lowered for word in _SECRET_WORDS):
            raise InvalidValue(f"audit detail key {key!r} names a secret; events are metadata")
    try:
        json.dumps(detail, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidValue(f"audit detail is not plain JSON: {exc}") from None


def _check_fields(actor: str, origin: str, action: str, when: float) -> None:
    if origin not in ORIGINS:
        raise InvalidValue(f"audit origin must be one of {', '.join(ORIGINS)}, not {origin!r}")
    if not actor or not action:
        raise InvalidValue("audit actor and action must not be empty")
    if not math.isfinite(when):
        raise InvalidValue("audit time must be finite")


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The result of checking a chain: ``ok``, how many events were checked, and for a broken
    chain the first bad sequence number and what is wrong there."""

    ok: bool
    events: int
    head: str = GENESIS
    bad_seq: int | None = None
    problem: str = ""


def check_chain(events: Iterable[AuditEvent], anchor: tuple[int, str] | None) -> ChainReport:
    """Check a whole chain, oldest first, against the anchor (the newest seq and hash the
    log recorded, or None when it recorded none)."""
    prev, expected_seq, count = GENESIS, 1, 0
    anchored: str | None = None  # the hash of the event the anchor names
    for e in events:
        if e.seq != expected_seq:
            problem = f"event {expected_seq} is missing (found {e.seq})"
            return ChainReport(False, count, prev, expected_seq, problem)
        if e.prev_hash != prev:
            problem = "its prev_hash does not match the event before it"
            return ChainReport(False, count, prev, e.seq, problem)
        if event_hash(prev, e) != e.hash:
            return ChainReport(False, count, prev, e.seq, "its content does not match its hash")
        prev, expected_seq, count = e.hash, e.seq + 1, count + 1
        if anchor is not None and e.seq == anchor[0]:
            anchored = e.hash
    if anchor is not None:
        anchor_seq, anchor_hash = anchor
        if anchor_seq >= expected_seq:
            problem = f"events {expected_seq}-{anchor_seq} are missing (the anchor is ahead)"
            return ChainReport(False, count, prev, expected_seq, problem)
        # The anchor may trail the head by events written just before a crash.
        if anchor_seq > 0 and anchored != anchor_hash:
            return ChainReport(False, count, prev, anchor_seq, "the anchor's hash does not match")
    return ChainReport(True, count, prev)


class AuditLog(Protocol):
    def append(
        self,
        action: str,
        *,
        actor: str,
        origin: Origin,
        target: str = "",
        detail: Mapping[str, object] | None = None,
    ) -> AuditEvent:
        """Add an event at the head of the chain and return it, hashed."""
        ...

    def events(
        self,
        *,
        after: int = 0,
        limit: int = 100,
        action: str | None = None,
        target: str | None = None,
    ) -> list[AuditEvent]:
        """Events with ``seq > after``, oldest first; ``action`` matches a prefix
        ("recording." matches every recording event)."""
        ...

    def verify(self) -> ChainReport: ...


def matches(e: AuditEvent, action: str | None, target: str | None) -> bool:
    return (action is None or e.action.startswith(action)) and (
        target is None or e.target == target
    )


class MemoryAuditLog:
    """In-memory :class:`AuditLog`; ``chain`` and ``anchor`` are open so tests can tamper."""

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self.chain: list[AuditEvent] = []
        self.anchor: tuple[int, str] | None = None

    def append(
        self,
        action: str,
        *,
        actor: str,
        origin: Origin,
        target: str = "",
        detail: Mapping[str, object] | None = None,
    ) -> AuditEvent:
        prev = self.chain[-1] if self.chain else None
        head = (prev.seq, prev.hash) if prev else None
        event = new_event(head, self._clock(), action, actor, origin, target, detail)
        self.chain.append(event)
        self.anchor = (event.seq, event.hash)
        return event

    def events(
        self,
        *,
        after: int = 0,
        limit: int = 100,
        action: str | None = None,
        target: str | None = None,
    ) -> list[AuditEvent]:
        check_page(limit, 0)
        found = [e for e in self.chain if e.seq > after and matches(e, action, target)]
        return found[:limit]

    def verify(self) -> ChainReport:
        return check_chain(self.chain, self.anchor)


def new_event(  # noqa: PLR0917 (one call site per log, all fields named by position)
    head: tuple[int, str] | None,
    when: float,
    action: str,
    actor: str,
    origin: Origin,
    target: str,
    detail: Mapping[str, object] | None,
) -> AuditEvent:
    """The event after ``head`` (the newest seq and hash; None for the first), checked and
    hashed: the one place both logs build events."""
    detail = dict(detail or {})
    _check_fields(actor, origin, action, when)
    check_detail(detail)
    seq, prev_hash = (head[0] + 1, head[1]) if head else (1, GENESIS)
    event = AuditEvent(seq, when, actor, origin, action, target, detail, prev_hash)
    return replace(event, hash=event_hash(prev_hash, event))
