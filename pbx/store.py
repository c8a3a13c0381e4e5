"""The box's persistent state as the SIP core sees it: the extension directory (with digest
secrets), the registrar's bindings and the call records.

This module holds the interfaces (Protocols), the values that cross them (frozen dataclasses)
and the in-memory twins. The SQLite implementation is :mod:`appliance.store`; one contract test
(``tests/store/test_contract.py``) runs against both, so the twins behave like it where a
caller can tell. The methods are synchronous and short: the core calls them from its loop.

Times are unix seconds as floats. The directory stamps ``created_at``/``updated_at`` from its
own clock (bookkeeping for the admin); bindings and call records carry the times the core
passes in, since the core owns ``now``.

Passwords are never stored: :meth:`Directory.set_password` keeps only the RFC 7616 HA1 values
``H(number:realm:password)`` for MD5 and SHA-256, which is what digest verification needs.
"""

from __future__ import annotations

import builtins
import enum
import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

from pbx.sip.auth import ha1 as compute_ha1

if TYPE_CHECKING:
    from pbx.audit import AuditLog, MemoryAuditLog

__all__ = [
    "AlreadyExists",
    "Binding",
    "BindingIndex",
    "BindingStore",
    "CallRecord",
    "CdrQuery",
    "CdrSink",
    "Clock",
    "Direction",
    "Directory",
    "Disposition",
    "Extension",
    "ExtensionSecret",
    "HangupSide",
    "InvalidValue",
    "MediaStats",
    "MemoryBindingStore",
    "MemoryCdr",
    "MemoryDirectory",
    "MemoryStore",
    "NotFound",
    "RecordPolicy",
    "Store",
    "StoreError",
    "check_page",
    "make_secret",
]

Clock = Callable[[], float]

# ------------------------------------------------------------------------------ errors


class StoreError(Exception):
    """Base of everything the store raises."""


class NotFound(StoreError):
    """The extension (or the AOR of a binding) does not exist."""


class AlreadyExists(StoreError):
    """An extension with that number exists already."""


class InvalidValue(StoreError, ValueError):
    """A value breaks a rule of the store (the caller's mistake, not the disk's)."""


# ------------------------------------------------------------------------------ extensions

# Extensions are dialed from keypads and are the digest username: digits only.
_NUMBER = re.compile(r"[0-9]{1,16}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # would break a From header's display name
MAX_DISPLAY_NAME = 64


class RecordPolicy(enum.Enum):
    """Which calls of an extension are recorded."""

    NONE = "none"
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    BOTH = "both"


def _check_number(number: str) -> None:
    if not _NUMBER.fullmatch(number):
        raise InvalidValue(f"extension number must be 1-16 digits, not {number!r}")


@dataclass(frozen=True, slots=True)
class Extension:
    """A phone extension. ``call_limit``: concurrent calls; ``ring_timeout``: seconds.

    ``created_at``/``updated_at`` are set by the directory; what a caller puts there is ignored.
    """

    number: str
    display_name: str = ""
    enabled: bool = True
    call_limit: int = 2
    ring_timeout: int = 30
    record_calls: RecordPolicy = RecordPolicy.NONE
    created_at: float = 0.0
    updated_at: float = 0.0

    def __post_init__(self) -> None:
        _check_number(self.number)
        if len(self.display_name) > MAX_DISPLAY_NAME or _CONTROL.search(self.display_name):
            raise InvalidValue(f"display name too long or with control characters: {self!r}")
        if not 1 <= self.call_limit <= 1000:
            raise InvalidValue(f"call_limit must be 1-1000, not {self.call_limit}")
        if not 1 <= self.ring_timeout <= 3600:
            raise InvalidValue(f"ring_timeout must be 1-3600 s, not {self.ring_timeout}")


@dataclass(frozen=True, slots=True)
class ExtensionSecret:
    """The digest secrets of an extension: HA1 = H(number:realm:password), lower-case hex."""

    number: str
    realm: str
    ha1_md5: str
    ha1_sha256: str

    def ha1(self, algorithm: str) -> str | None:
        """The HA1 for a digest algorithm token (``-sess`` variants share their base's)."""
        base = algorithm.upper().removesuffix("-SESS")
        if base == "MD5":
            return self.ha1_md5
        if base == "SHA-256":
            return self.ha1_sha256
        return None


def make_secret(number: str, password: str, realm: str) -> ExtensionSecret:
    """Both HA1 values for a password; the password itself goes no further."""
    _check_number(number)
    if not password:
        raise InvalidValue("empty password")
    if not realm or _CONTROL.search(realm):
        raise InvalidValue(f"bad realm {realm!r}")
    return ExtensionSecret(
        number=number,
        realm=realm,
        ha1_md5=compute_ha1(number, realm, password, "MD5"),
        ha1_sha256=compute_ha1(number, realm, password, "SHA-256"),
    )


class Directory(Protocol):
    """The extensions and their secrets.

    Deleting an extension deletes its secret and its bindings; creating one never inherits
    a secret left from an earlier extension with the same number.
    """

    def get(self, number: str) -> Extension | None: ...

    def list(self) -> builtins.list[Extension]:
        """All extensions in numeric order ("99" before "100")."""
        ...

    def create(self, extension: Extension) -> Extension:
        """Store a new extension (without a password); returns it with its timestamps.
        Raises :class:`AlreadyExists`."""
        ...

    def update(self, extension: Extension) -> Extension:
        """Replace an extension's settings, keeping ``created_at``. Raises :class:`NotFound`."""
        ...

    def delete(self, number: str) -> bool:
        """Remove an extension, its secret and its bindings. False if it was already gone."""
        ...

    def set_password(self, number: str, password: str, realm: str) -> None:
        """Store the HA1 values for this password. Raises :class:`NotFound`."""
        ...

    def secret(self, number: str) -> ExtensionSecret | None: ...

    def ha1(self, number: str, algorithm: str) -> str | None:
        """The HA1 to verify a digest response with, or None when the extension is unknown,
        disabled or has no password. Fits :data:`pbx.sip.auth.Ha1Source`."""
        ...


# ------------------------------------------------------------------------------ bindings


@dataclass(frozen=True, slots=True)
class Binding:
    """One registered contact of an AOR (RFC 3261 §10), keyed by ``(aor, contact)``.

    ``contact`` is compared as text: the registrar normalizes URIs before storing.
    ``source_*`` is where the REGISTER came from (the NAT-facing address to send requests
    to); ``instance_id``/``reg_id`` are RFC 5626's ``+sip.instance`` and ``reg-id``;
    ``path`` the RFC 3327 Path header values, in order.
    """

    aor: str
    contact: str
    expires_at: float
    call_id: str
    cseq: int
    source_transport: str
    source_host: str
    source_port: int
    updated_at: float
    q: float | None = None
    user_agent: str | None = None
    instance_id: str | None = None
    reg_id: int | None = None
    path: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.contact:
            raise InvalidValue("empty contact")
        if self.q is not None and not 0.0 <= self.q <= 1.0:
            raise InvalidValue(f"q must be 0-1, not {self.q}")
        if not 0 <= self.source_port <= 65535:
            raise InvalidValue(f"bad source port {self.source_port}")
        if not math.isfinite(self.expires_at):
            raise InvalidValue("expires_at must be finite")

    def active(self, now: float) -> bool:
        return self.expires_at > now


class BindingStore(Protocol):
    """The registrar's location service. Survives restarts."""

    def put(self, binding: Binding) -> None:
        """Insert or replace the binding with the same ``(aor, contact)``.
        Raises :class:`NotFound` when the AOR is not an extension."""
        ...

    def remove(self, aor: str, contact: str) -> bool: ...

    def remove_all(self, aor: str) -> int: ...

    def list(self, aor: str, now: float | None = None) -> builtins.list[Binding]:
        """The AOR's bindings by contact; with ``now``, only those still active."""
        ...

    def all_active(self, now: float) -> builtins.list[Binding]:
        """Every binding with ``expires_at > now``, by (aor, contact)."""
        ...

    def expire(self, now: float) -> builtins.list[Binding]:
        """Remove and return the bindings with ``expires_at <= now``, by (aor, contact)."""
        ...


# ------------------------------------------------------------------------------ call records


class Direction(enum.Enum):
    INTERNAL = "internal"
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class Disposition(enum.Enum):
    """How the call ended, in CDR words. Exactly the ANSWERED calls have an answer time."""

    ANSWERED = "ANSWERED"
    NO_ANSWER = "NO ANSWER"
    BUSY = "BUSY"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    CONGESTION = "CONGESTION"


class HangupSide(enum.Enum):
    CALLER = "caller"
    CALLEE = "callee"
    SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class MediaStats:
    """RTP received by the box from one side of the call (what it relayed to the other)."""

    packets: int = 0
    bytes: int = 0
    lost: int = 0
    jitter_ms: float = 0.0

    def __post_init__(self) -> None:
        if min(self.packets, self.bytes, self.lost) < 0 or not self.jitter_ms >= 0:
            raise InvalidValue(f"negative media counters: {self!r}")


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One row per call. ``call_id`` is the box's own id (a uuid); ``sip_call_id`` the
    Call-ID of leg A. ``dialed`` is what the caller dialed, ``callee_number`` the extension
    that answered (None when nobody did)."""

    call_id: str
    sip_call_id: str
    caller_number: str
    dialed: str
    direction: Direction
    start_time: float
    end_time: float
    disposition: Disposition
    hangup_side: HangupSide
    caller_name: str = ""
    callee_number: str | None = None
    answer_time: float | None = None
    hangup_cause: str = ""
    sip_code: int | None = None
    codec: str | None = None
    media_from_caller: MediaStats = field(default_factory=MediaStats)
    media_from_callee: MediaStats = field(default_factory=MediaStats)
    recording_ref: str | None = None
    recording_state: str | None = None

    def __post_init__(self) -> None:
        if not self.call_id:
            raise InvalidValue("empty call_id")
        if not self.start_time <= self.end_time:
            raise InvalidValue(f"end_time before start_time in {self.call_id}")
        answered = self.disposition is Disposition.ANSWERED
        if answered != (self.answer_time is not None):
            raise InvalidValue(f"answer_time must be set exactly for ANSWERED: {self.call_id}")
        if self.answer_time is not None and not (
            self.start_time <= self.answer_time <= self.end_time
        ):
            raise InvalidValue(f"answer_time outside the call in {self.call_id}")
        if self.sip_code is not None and not 100 <= self.sip_code <= 699:
            raise InvalidValue(f"bad SIP code {self.sip_code}")

    @property
    def duration(self) -> float:
        """Seconds from start (INVITE received) to end."""
        return self.end_time - self.start_time

    @property
    def billable(self) -> float:
        """Seconds from answer to end; 0 for calls never answered."""
        return 0.0 if self.answer_time is None else self.end_time - self.answer_time


@dataclass(frozen=True, slots=True)
class CdrQuery:
    """Search filters, all optional and combined with AND. ``since <= start_time < until``;
    ``number`` matches the caller, the dialed number or the answering extension."""

    since: float | None = None
    until: float | None = None
    number: str | None = None
    disposition: Disposition | None = None

    def matches(self, record: CallRecord) -> bool:
        return (
            (self.since is None or record.start_time >= self.since)
            and (self.until is None or record.start_time < self.until)
            and (
                self.number is None
                or self.number in (record.caller_number, record.dialed, record.callee_number)
            )
            and (self.disposition is None or record.disposition is self.disposition)
        )


MAX_PAGE = 1000


def check_page(limit: int, offset: int) -> None:
    """The paging rule every :class:`CdrSink` applies."""
    if not 0 <= limit <= MAX_PAGE or offset < 0:
        raise InvalidValue(f"limit must be 0-{MAX_PAGE} and offset >= 0")


class CdrSink(Protocol):
    """Where finished calls go, and where the admin reads them back."""

    def write(self, record: CallRecord) -> None:
        """Store a record; writing the same ``call_id`` again replaces it (retries are safe,
        and a recording's final state can be filled in later)."""
        ...

    def get(self, call_id: str) -> CallRecord | None: ...

    def search(
        self, query: CdrQuery | None = None, limit: int = 100, offset: int = 0
    ) -> list[CallRecord]:
        """Matching records, newest first (start_time, then call_id, descending)."""
        ...


class Store(Protocol):
    """The stores, opened together."""

    @property
    def directory(self) -> Directory: ...

    @property
    def bindings(self) -> BindingStore: ...

    @property
    def cdr(self) -> CdrSink: ...

    @property
    def audit(self) -> AuditLog: ...

    def close(self) -> None: ...


# ------------------------------------------------------------------------------ in-memory twins


def _numeric(number: str) -> tuple[int, str]:
    return (len(number), number)  # digits only, so this is numeric order


class MemoryDirectory:
    """In-memory :class:`Directory`."""

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._extensions: dict[str, Extension] = {}
        self._secrets: dict[str, ExtensionSecret] = {}
        # Called with the number of a deleted extension (the binding store's cascade).
        self.on_delete: builtins.list[Callable[[str], object]] = []

    def get(self, number: str) -> Extension | None:
        return self._extensions.get(number)

    def list(self) -> builtins.list[Extension]:
        return [self._extensions[n] for n in sorted(self._extensions, key=_numeric)]

    def create(self, extension: Extension) -> Extension:
        if extension.number in self._extensions:
            raise AlreadyExists(extension.number)
        now = self._clock()
        stored = replace(extension, created_at=now, updated_at=now)
        self._secrets.pop(extension.number, None)
        self._extensions[extension.number] = stored
        return stored

    def update(self, extension: Extension) -> Extension:
        old = self._extensions.get(extension.number)
        if old is None:
            raise NotFound(extension.number)
        stored = replace(extension, created_at=old.created_at, updated_at=self._clock())
        self._extensions[extension.number] = stored
        return stored

    def delete(self, number: str) -> bool:
        self._secrets.pop(number, None)
        if self._extensions.pop(number, None) is None:
            return False
        for hook in self.on_delete:
            hook(number)
        return True

    def set_password(self, number: str, password: str, realm: str) -> None:
        secret = make_secret(number, password, realm)
        if number not in self._extensions:
            raise NotFound(number)
        self._secrets[number] = secret

    def secret(self, number: str) -> ExtensionSecret | None:
        return self._secrets.get(number)

    def ha1(self, number: str, algorithm: str) -> str | None:
        extension = self._extensions.get(number)
        secret = self._secrets.get(number)
        if extension is None or not extension.enabled or secret is None:
            return None
        return secret.ha1(algorithm)


class BindingIndex:
    """Bindings in memory by AoR then contact, in the orders :class:`BindingStore` promises
    (str order is code point order, as SQLite's BINARY collation of UTF-8 text). No checks:
    the stores built on it (:class:`MemoryBindingStore`, the SQLite write-behind, a
    registrar worker's copy) add theirs."""

    def __init__(self, bindings: Iterable[Binding] = ()) -> None:
        self._index: dict[str, dict[str, Binding]] = {}  # aor -> contact -> binding
        self._soonest = math.inf  # no binding expires before this: expire() skips its scan
        for b in bindings:
            self.put(b)

    def has(self, aor: str, contact: str | None = None) -> bool:
        contacts = self._index.get(aor)
        return contacts is not None and (contact is None or contact in contacts)

    def contacts(self, aor: str) -> builtins.list[str]:
        return builtins.list(self._index.get(aor, ()))

    def put(self, binding: Binding) -> None:
        self._index.setdefault(binding.aor, {})[binding.contact] = binding
        self._soonest = min(self._soonest, binding.expires_at)

    def remove(self, aor: str, contact: str) -> bool:
        contacts = self._index.get(aor)
        if contacts is None or contact not in contacts:
            return False
        del contacts[contact]
        if not contacts:
            del self._index[aor]
        return True

    def remove_all(self, aor: str) -> builtins.list[str]:
        """The contacts removed."""
        return builtins.list(self._index.pop(aor, {}))

    def list(self, aor: str, now: float | None = None) -> builtins.list[Binding]:
        contacts = self._index.get(aor)
        if not contacts:
            return []
        found = [contacts[c] for c in sorted(contacts)]
        return found if now is None else [b for b in found if b.expires_at > now]

    def all_active(self, now: float) -> builtins.list[Binding]:
        return [
            b
            for aor in sorted(self._index)
            for b in (self._index[aor][c] for c in sorted(self._index[aor]))
            if b.expires_at > now
        ]

    def expired(self, now: float) -> builtins.list[Binding]:
        """The bindings with ``expires_at <= now`` (left in place: see :meth:`drop`)."""
        if now < self._soonest:
            return []
        return [b for b in self.all_active(-math.inf) if b.expires_at <= now]

    def drop(self, bindings: Iterable[Binding]) -> None:
        for b in bindings:
            self.remove(b.aor, b.contact)
        self._soonest = min(
            (b.expires_at for c in self._index.values() for b in c.values()), default=math.inf
        )

    def expire(self, now: float) -> builtins.list[Binding]:
        gone = self.expired(now)
        if gone:
            self.drop(gone)
        return gone


class MemoryBindingStore:
    """In-memory :class:`BindingStore`. With a directory, AORs must be its extensions and
    deleting an extension drops its bindings, as the SQLite store's foreign key does."""

    def __init__(self, directory: MemoryDirectory | None = None) -> None:
        self._directory = directory
        self._index = BindingIndex()
        if directory is not None:
            directory.on_delete.append(self.remove_all)

    def put(self, binding: Binding) -> None:
        if self._directory is not None and self._directory.get(binding.aor) is None:
            raise NotFound(binding.aor)
        self._index.put(binding)

    def remove(self, aor: str, contact: str) -> bool:
        return self._index.remove(aor, contact)

    def remove_all(self, aor: str) -> int:
        return len(self._index.remove_all(aor))

    def list(self, aor: str, now: float | None = None) -> builtins.list[Binding]:
        return self._index.list(aor, now)

    def all_active(self, now: float) -> builtins.list[Binding]:
        return self._index.all_active(now)

    def expire(self, now: float) -> builtins.list[Binding]:
        return self._index.expire(now)


class MemoryCdr:
    """In-memory :class:`CdrSink`."""

    def __init__(self) -> None:
        self._records: dict[str, CallRecord] = {}

    def write(self, record: CallRecord) -> None:
        self._records[record.call_id] = record

    def get(self, call_id: str) -> CallRecord | None:
        return self._records.get(call_id)

    def search(
        self, query: CdrQuery | None = None, limit: int = 100, offset: int = 0
    ) -> list[CallRecord]:
        check_page(limit, offset)
        query = query or CdrQuery()
        found = [r for r in self._records.values() if query.matches(r)]
        found.sort(key=lambda r: (r.start_time, r.call_id), reverse=True)
        return found[offset : offset + limit]


class MemoryStore:
    """In-memory :class:`Store`: the twins wired like the SQLite ones."""

    def __init__(self, clock: Clock = time.time) -> None:
        from pbx.audit import MemoryAuditLog  # noqa: PLC0415 (pbx.audit imports this module)

        self.directory = MemoryDirectory(clock)
        self.bindings = MemoryBindingStore(self.directory)
        self.cdr = MemoryCdr()
        self.audit: MemoryAuditLog = MemoryAuditLog(clock)

    def close(self) -> None:
        pass
