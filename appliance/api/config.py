"""The configuration document: the box's desired state, versioned, applied atomically.

What it holds is what the box can apply today: the SIP core's settings (read by the SIP core
when it starts: a change reports ``restart_required``) and the extensions with their
recording policy (live at once). Passwords are never part of it: they are set per extension
and live in local.db only.

Applying (:meth:`ConfigService.apply`) happens in one metadata.db transaction (``BEGIN
IMMEDIATE``, which also serializes concurrent writers): the version is checked under the
lock, the extension rows are reconciled, the new document row is written, and then the
runtime steps (:class:`~appliance.api.context.ConfigApplier`) run. If any of that fails,
the steps already applied are undone newest first and the transaction rolls back, so the
running configuration and the stored state are the old ones. Every attempt, applied or not,
leaves a row in ``config_applies`` (the status the cabinet reads) and an audit event.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from appliance.api.context import BoxContext, ConfigApplier
from appliance.api.errors import FieldError
from appliance.config_doc import SipConfig, StrictModel, applied_sip
from pbx.audit import Origin
from pbx.store import Extension, RecordPolicy

__all__ = [
    "BoxConfig",
    "ConfigConflict",
    "ConfigDocument",
    "ConfigRejected",
    "ConfigService",
    "ConfigStatus",
    "ExtensionConfig",
    "SipConfig",
]

log = logging.getLogger(__name__)

PRINTABLE = r"^[^\x00-\x1f\x7f]*$"  # no control characters (they would break SIP headers)
MAX_EXTENSIONS = 10000


class ExtensionConfig(StrictModel):
    """An extension's settings (no password: see ``POST /extensions/{number}/password``)."""

    number: str = Field(pattern=r"^[0-9]{1,16}$", description="1-16 digits")
    display_name: str = Field("", max_length=64, pattern=PRINTABLE)
    enabled: bool = True
    call_limit: int = Field(2, ge=1, le=1000)
    ring_timeout: int = Field(30, ge=1, le=3600, description="seconds")
    record_calls: Literal["none", "inbound", "outbound", "both"] = "none"

    @classmethod
    def of(cls, e: Extension) -> ExtensionConfig:
        return cls(
            number=e.number,
            display_name=e.display_name,
            enabled=e.enabled,
            call_limit=e.call_limit,
            ring_timeout=e.ring_timeout,
            record_calls=e.record_calls.value,
        )

    def to_extension(self) -> Extension:
        return Extension(
            number=self.number,
            display_name=self.display_name,
            enabled=self.enabled,
            call_limit=self.call_limit,
            ring_timeout=self.ring_timeout,
            record_calls=RecordPolicy(self.record_calls),
        )


class BoxConfig(StrictModel):
    sip: SipConfig = Field(default_factory=SipConfig)
    extensions: list[ExtensionConfig] = Field([], max_length=MAX_EXTENSIONS)


class ConfigDocument(BoxConfig):
    """The document as GET returns it and PUT takes it. In a PUT, ``version`` is the
    version the edit started from: a PUT against an older version than the box's is
    refused with 409, so two editors cannot overwrite each other unseen."""

    version: int = Field(ge=0, le=2**62, description="0 before anything was applied")


class ConfigStatus(BaseModel):
    """The result of the latest apply attempt."""

    version: int = Field(description="the version running after the attempt")
    base_version: int = Field(description="the version the attempt was based on")
    result: Literal["applied", "rejected", "conflict", "rolled_back", "none"]
    submitted_at: float | None
    applied_at: float | None = Field(description="when the running version was applied")
    errors: list[FieldError]
    restart_required: bool = Field(
        False, description="the SIP settings changed; they take effect when the SIP core restarts"
    )
    actor: str | None
    origin: str | None


class ConfigConflict(Exception):
    def __init__(self, current: int, given: int) -> None:
        super().__init__(f"the document is based on version {given}, the box is at {current}")
        self.current, self.given = current, given


class ConfigRejected(Exception):
    def __init__(self, errors: list[FieldError], *, rolled_back: bool = False) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in errors))
        self.errors = errors
        self.rolled_back = rolled_back


@dataclass(frozen=True, slots=True)
class _Plan:
    create: list[ExtensionConfig]
    update: list[ExtensionConfig]
    delete: list[str]


def _plan(old: BoxConfig, new: BoxConfig) -> _Plan:
    before = {e.number: e for e in old.extensions}
    after = {e.number: e for e in new.extensions}
    return _Plan(
        create=[e for n, e in after.items() if n not in before],
        update=[e for n, e in after.items() if n in before and before[n] != e],
        delete=[n for n in before if n not in after],
    )


def _loc(*parts: str | int) -> list[str | int]:
    return ["body", *parts]


class ConfigService:
    def __init__(self, box: BoxContext) -> None:
        self._box = box
        self._db = box.store.metadata

    # ------------------------------------------------------------------ reading

    def version(self) -> int:
        row = self._db.one("SELECT coalesce(max(version), 0) FROM config_documents")
        n: int = row[0]
        return n

    def _stored_sip(self, conn: sqlite3.Connection | None = None) -> SipConfig:
        stored = applied_sip(self._db if conn is None else conn)
        return SipConfig.from_settings(self._box.sip) if stored is None else stored

    def current(self) -> ConfigDocument:
        with self._db.lock:  # one consistent view: version, sip, extensions
            extensions = [ExtensionConfig.of(e) for e in self._box.store.directory.list()]
            return ConfigDocument(
                version=self.version(), sip=self._stored_sip(), extensions=extensions
            )

    def status(self) -> ConfigStatus:
        row = self._db.one(
            "SELECT base_version, version, submitted_at, result, errors, actor, origin"
            " FROM config_applies ORDER BY id DESC LIMIT 1"
        )
        running = self.version()
        applied = self._db.one(
            "SELECT applied_at FROM config_documents WHERE version = ?", (running,)
        )
        applied_at = None if applied is None else applied[0]
        if row is None:
            return ConfigStatus(
                version=running,
                base_version=running,
                result="none",
                submitted_at=None,
                applied_at=applied_at,
                errors=[],
                actor=None,
                origin=None,
            )
        base, _version, submitted, result, errors, actor, origin = row
        data = json.loads(errors)
        return ConfigStatus(
            version=running,
            base_version=base,
            result=result,
            submitted_at=submitted,
            applied_at=applied_at,
            errors=[FieldError.model_validate(e) for e in data.get("errors", [])],
            restart_required=bool(data.get("restart_required", False)),
            actor=actor,
            origin=origin,
        )

    # ------------------------------------------------------------------ checking

    def semantic_errors(self, old: BoxConfig, new: BoxConfig) -> list[FieldError]:
        """Rules across fields and against the box's state (pydantic checked the rest)."""
        errors: list[FieldError] = []
        seen: dict[str, int] = {}
        for i, e in enumerate(new.extensions):
            if e.number in seen:
                errors.append(
                    FieldError(
                        loc=_loc("extensions", i, "number"),
                        msg=f"extension {e.number} is listed twice (also at {seen[e.number]})",
                        type="duplicate",
                    )
                )
            seen.setdefault(e.number, i)
        sip = new.sip
        if sip.rtp_port_max - sip.rtp_port_min < 3:
            errors.append(
                FieldError(
                    loc=_loc("sip", "rtp_port_max"),
                    msg="must be at least rtp_port_min + 3 (two RTP/RTCP port pairs)",
                    type="value_error",
                )
            )
        if sip.rtp_port_min <= sip.port <= sip.rtp_port_max:
            errors.append(
                FieldError(
                    loc=_loc("sip", "port"),
                    msg="lies inside the RTP port range",
                    type="value_error",
                )
            )
        if sip.domain != old.sip.domain:
            # HA1 = H(number:realm:password): passwords set for the old realm stop working.
            keep = {e.number for e in new.extensions}
            stale = [
                e.number
                for e in old.extensions
                if e.number in keep
                and (s := self._box.store.directory.secret(e.number)) is not None
                and s.realm != sip.domain
            ]
            if stale:
                errors.append(
                    FieldError(
                        loc=_loc("sip", "domain"),
                        msg=(
                            "the domain is the digest realm: the passwords of extensions "
                            f"{', '.join(stale[:10])} were set for {old.sip.domain!r} and would "
                            "stop working; remove them or set their passwords again first"
                        ),
                        type="realm_change",
                    )
                )
        return errors

    # ------------------------------------------------------------------ applying

    def apply(self, doc: ConfigDocument, *, actor: str, origin: Origin) -> ConfigStatus:
        """Apply ``doc``; raises :class:`ConfigConflict` or :class:`ConfigRejected` (nothing
        changed, the attempt recorded) or returns the status of the applied version."""
        box = self._box
        now = box.clock()
        new = BoxConfig(sip=doc.sip, extensions=doc.extensions)
        restart = False
        deleted: list[str] = []
        try:
            with self._db.transaction() as conn:
                current = self._version_in(conn)
                if doc.version != current:
                    raise ConfigConflict(current, doc.version)
                old = BoxConfig(
                    sip=self._stored_sip(conn),
                    extensions=[ExtensionConfig.of(e) for e in box.store.directory.list()],
                )
                errors = self.semantic_errors(old, new)
                if errors:
                    raise ConfigRejected(errors)
                plan = _plan(old, new)
                self._write_extensions(conn, plan, now)
                version = current + 1
                conn.execute(
                    "INSERT INTO config_documents (version, document, applied_at, actor, origin)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (version, new.model_dump_json(), now, actor, origin),
                )
                self._run_appliers(box.config_appliers, old, new)
                restart = old.sip != new.sip
                deleted = plan.delete
        except ConfigConflict as exc:
            self._record(doc.version, None, now, "conflict", [], actor, origin)
            box.store.audit.append(
                "config.conflict",
                actor=actor,
                origin=origin,
                target="config",
                detail={"base_version": exc.given, "current_version": exc.current},
            )
            raise
        except ConfigRejected as exc:
            result = "rolled_back" if exc.rolled_back else "rejected"
            self._record(doc.version, None, now, result, exc.errors, actor, origin)
            box.store.audit.append(
                f"config.{result}",
                actor=actor,
                origin=origin,
                target="config",
                detail={
                    "base_version": doc.version,
                    "errors": [e.model_dump() for e in exc.errors[:20]],
                },
            )
            raise
        finally:
            _directory_changed(box)
        for number in deleted:
            # Committed already; this clears the secret in local.db and any copy in memory.
            box.store.directory.delete(number)
        self._record(doc.version, version, now, "applied", [], actor, origin, restart)
        box.store.audit.append(
            "config.applied",
            actor=actor,
            origin=origin,
            target="config",
            detail={
                "version": version,
                "created": [e.number for e in plan.create],
                "updated": [e.number for e in plan.update],
                "deleted": plan.delete,
                "restart_required": restart,
            },
        )
        return self.status()

    def snapshot(self, *, actor: str, origin: Origin) -> int:
        """Record the live state as a new version (after an extension was changed through
        its own endpoint), so an editor holding an older document gets 409 instead of
        silently undoing that change."""
        with self._db.transaction() as conn:
            version = self._version_in(conn) + 1
            doc = BoxConfig(
                sip=self._stored_sip(conn),
                extensions=[ExtensionConfig.of(e) for e in self._box.store.directory.list()],
            )
            conn.execute(
                "INSERT INTO config_documents (version, document, applied_at, actor, origin)"
                " VALUES (?, ?, ?, ?, ?)",
                (version, doc.model_dump_json(), self._box.clock(), actor, origin),
            )
        return version

    def record_rejected(self, errors: list[FieldError], *, actor: str, origin: Origin) -> None:
        """Report a document refused before it reached :meth:`apply` (pydantic errors)."""
        now = self._box.clock()
        self._record(self.version(), None, now, "rejected", errors, actor, origin)
        self._box.store.audit.append(
            "config.rejected",
            actor=actor,
            origin=origin,
            target="config",
            detail={"errors": [e.model_dump() for e in errors[:20]]},
        )

    @staticmethod
    def _version_in(conn: sqlite3.Connection) -> int:
        n: int = conn.execute("SELECT coalesce(max(version), 0) FROM config_documents").fetchone()[
            0
        ]
        return n

    def _write_extensions(self, conn: sqlite3.Connection, plan: _Plan, now: float) -> None:
        try:
            for e in plan.create:
                x = e.to_extension()
                conn.execute(
                    "INSERT INTO extensions (number, display_name, enabled, call_limit,"
                    " ring_timeout, record_calls, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (x.number, x.display_name, int(x.enabled), x.call_limit, x.ring_timeout,
                     x.record_calls.value, now, now),
                )  # fmt: skip
            for e in plan.update:
                conn.execute(
                    "UPDATE extensions SET display_name = ?, enabled = ?, call_limit = ?,"
                    " ring_timeout = ?, record_calls = ?, updated_at = ? WHERE number = ?",
                    (e.display_name, int(e.enabled), e.call_limit, e.ring_timeout,
                     e.record_calls, now, e.number),
                )  # fmt: skip
            for number in plan.delete:
                conn.execute("DELETE FROM extensions WHERE number = ?", (number,))
        except sqlite3.IntegrityError as exc:
            raise ConfigRejected(
                [FieldError(loc=_loc("extensions"), msg=str(exc), type="integrity")],
                rolled_back=True,
            ) from exc

    @staticmethod
    def _run_appliers(appliers: Sequence[ConfigApplier], old: BoxConfig, new: BoxConfig) -> None:
        done: list[ConfigApplier] = []
        for step in appliers:
            try:
                step.apply(old, new)
            except Exception as exc:
                log.warning(
                    "config step %s failed (%s); undoing %d steps", step.name, exc, len(done)
                )
                for applied in reversed(done):
                    try:
                        applied.undo(old, new)
                    except Exception:
                        log.exception("undoing config step %s failed", applied.name)
                raise ConfigRejected(
                    [FieldError(loc=["apply", step.name], msg=str(exc) or type(exc).__name__,
                                type="apply_failed")],
                    rolled_back=True,
                ) from exc  # fmt: skip
            done.append(step)

    def _record(  # noqa: PLR0917
        self,
        base: int,
        version: int | None,
        submitted: float,
        result: str,
        errors: list[FieldError],
        actor: str,
        origin: str,
        restart: bool = False,
    ) -> None:
        detail: dict[str, Any] = {
            "errors": [e.model_dump() for e in errors],
            "restart_required": restart,
        }
        self._db.execute(
            "INSERT INTO config_applies (base_version, version, submitted_at, finished_at,"
            " result, errors, actor, origin) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                base,
                version,
                submitted,
                self._box.clock(),
                result,
                json.dumps(detail),
                actor,
                origin,
            ),
        )


def _directory_changed(box: BoxContext) -> None:
    """The config writes extension rows in its own transaction; a directory that keeps an
    in-memory copy must drop it (the SQLite directory grows ``invalidate`` for that)."""
    invalidate = getattr(box.store.directory, "invalidate", None)
    if callable(invalidate):
        invalidate()
