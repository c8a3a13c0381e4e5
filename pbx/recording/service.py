"""Recording calls on the box: policy, the live recorder per call, and the admin's operations
(recover, prune, verify, export, play).

Composition: :class:`CallRecorder` is given to :class:`pbx.service.SipCore`, which hooks it to
the call manager. When a call is answered and the policy says so, it taps the call's media,
streams the stereo WAV into ``recordings/<yyyy>/<mm>/<id>.wav.age`` under the data folder
(age, to the site recipients; plaintext never touches the disk), and keeps the recording's
row in the metadata database, its call record's ``recording_ref``/``recording_state`` and the
audit log up to date.

Policy (:func:`wants_recording`): the box-wide setting, or the extensions' ``record_calls``:
a call is *outbound* for the extension that placed it and *inbound* for the one that answered.

States: ``recording`` while written; ``complete`` when closed at the end of the call;
``incomplete`` when finalized with what it holds after a crash (recovery) or a full disk
(the recorder stops, the call goes on, an alarm is raised); ``failed`` when there is no usable
file (no recording key, the file could not be created); ``deleted`` after retention.

Every lifecycle event is an audit event (``recording.started``, ``.finished``, ``.failed``,
``.recovered``, ``.played``, ``.exported``, ``.deleted``).

Only one process may record into a folder and recover it: the box takes an exclusive lock on
``recordings/.lock`` for as long as it runs (:class:`FolderLock`), and the command line's
``recover`` refuses to touch files while the box holds it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import fcntl
import hashlib
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from pbx.audit import AuditLog, Origin
from pbx.recording.age import (
    AgeError,
    AgeReader,
    AgeWriter,
    Identity,
    NothingToRecoverError,
    StorageError,
    StorageFullError,
    X25519Recipient,
    recover,
    shred,
)
from pbx.recording.catalog import AlarmLog, RecordingCatalog, RecordingInfo, RecordingState
from pbx.recording.journal import KeyJournal
from pbx.recording.recorder import RecorderCore, TapLike, record_tap
from pbx.recording.wav import (
    BYTES_PER_FRAME,
    HEADER_SIZE,
    SAMPLE_RATE,
    header_for_plaintext,
    parse_header,
    wav_header,
)
from pbx.store import (
    CallRecord,
    CdrSink,
    Directory,
    Disposition,
    HangupSide,
    RecordPolicy,
)
from pbx.store import Direction as CallDirection

if TYPE_CHECKING:
    from pbx.b2bua import Call

log = logging.getLogger(__name__)

__all__ = [
    "CallRecorder",
    "FolderBusy",
    "FolderLock",
    "RecordingSettings",
    "Recordings",
    "VerifyReport",
    "wants_recording",
]

ACTOR = "recorder"
SUFFIX = ".wav.age"
BYTES_PER_SECOND = SAMPLE_RATE * BYTES_PER_FRAME


class RecordingSettings(BaseModel):
    """Recording settings of the box. ``policy``: box-wide, on top of each extension's
    ``record_calls``. ``retention_days``: delete recordings older than this (None: keep);
    ``retention_by_extension``: days per extension number, overriding the box-wide value
    for that extension's calls (a call involving two extensions is kept for the longer)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    policy: Literal["none", "inbound", "outbound", "both"] = "none"
    retention_days: float | None = Field(None, gt=0)
    retention_by_extension: dict[str, float] = Field(default_factory=dict)
    window: float = Field(0.2, gt=0, le=2.0)  # jitter window of the aligner, seconds
    interval: float = Field(0.1, gt=0, le=1.0)  # how often the tap is drained, seconds
    tap_size: int = Field(2000, ge=10)  # packets queued per call before the tap drops


def wants_recording(box: str, caller: RecordPolicy | None, callee: RecordPolicy | None) -> bool:
    """Whether a call between these extensions (None: not an extension) is recorded."""
    outbound = {"outbound", "both"}
    inbound = {"inbound", "both"}
    return (
        box == "both"
        or (caller is not None and caller.value in outbound)
        or (callee is not None and callee.value in inbound)
    )


def relative_path(recording_id: str, when: float) -> str:
    day = dt.datetime.fromtimestamp(when, dt.UTC)
    return f"{day:%Y}/{day:%m}/{recording_id}{SUFFIX}"


def _duration(plaintext_size: int) -> float:
    return max(plaintext_size - HEADER_SIZE, 0) // BYTES_PER_FRAME / SAMPLE_RATE


class FolderBusy(Exception):
    """Another process (the running box) holds the recordings folder."""


class FolderLock:
    """An exclusive ``flock`` on ``<folder>/.lock``: one recorder per folder."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True, mode=0o750)
        self._fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise FolderBusy(f"{folder} is in use by a running box") from None

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


@dataclass
class VerifyReport:
    checked: int = 0
    problems: list[str] = field(default_factory=list)
    audit_ok: bool = True
    audit_problem: str = ""

    @property
    def ok(self) -> bool:
        return self.audit_ok and not self.problems


class Recordings:
    """The recordings folder with its catalog: the operations that need no live call."""

    def __init__(
        self,
        folder: Path,
        catalog: RecordingCatalog,
        cdr: CdrSink,
        audit: AuditLog,
        alarms: AlarmLog,
        *,
        directory: Directory | None = None,
        settings: RecordingSettings | None = None,
        journal: KeyJournal | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.folder = folder
        self.catalog = catalog
        self.cdr = cdr
        self.audit = audit
        self.alarms = alarms
        self.directory = directory
        self.settings = settings or RecordingSettings()
        self.journal = journal
        self.clock = clock

    def path(self, info: RecordingInfo) -> Path:
        return self.folder / info.path

    # -------------------------------------------------------------- call records

    def audited(
        self,
        action: str,
        info: RecordingInfo,
        *,
        actor: str = ACTOR,
        origin: Origin = "box",
        **detail: object,
    ) -> None:
        """One audit event about ``info``; its detail always names the call."""
        self.audit.append(
            action,
            actor=actor,
            origin=origin,
            target=info.id,
            detail={"call_id": info.call_id, **detail},
        )

    def mark_call(self, info: RecordingInfo) -> None:
        """Put the recording's id and state on its call record. After a crash the call never
        got one: a minimal record is written from what the recording knows."""
        record = self.cdr.get(info.call_id)
        if record is None:
            if info.state is RecordingState.RECORDING:
                return  # the call is still going: its record gets the state when it ends
            end = max(info.ended_at or info.started_at, info.started_at + info.duration)
            record = CallRecord(
                call_id=info.call_id,
                sip_call_id="",
                caller_number=info.caller_number,
                dialed=info.callee_number,
                callee_number=info.callee_number or None,
                direction=CallDirection.INTERNAL,
                start_time=info.started_at,
                answer_time=info.started_at,
                end_time=end,
                disposition=Disposition.ANSWERED,
                hangup_side=HangupSide.SYSTEM,
                hangup_cause="the box stopped during the call",
            )
        self.cdr.write(replace(record, recording_ref=info.id, recording_state=info.state.value))

    # -------------------------------------------------------------- recovery

    def recover(self, identities: Sequence[Identity] = ()) -> list[RecordingInfo]:
        """Finalize every recording of this folder left unfinished by a crash (rows still
        ``recording``): with the file key from the key journal (after ``kill -9``), or with
        ``identities`` (after a power loss emptied the journal). Each becomes ``incomplete``,
        with its call record, and is audited; one without any audio becomes ``failed``.
        Journal entries of other folders are left alone. Call it only while no recorder runs
        on the folder (hold its :class:`FolderLock`)."""
        done: list[RecordingInfo] = []
        for info in self.catalog.list(state=RecordingState.RECORDING, limit=100_000):
            path = self.path(info)
            try:
                report = recover(
                    path, journal=self.journal, identities=identities, head=header_for_plaintext
                )
            except (FileNotFoundError, NothingToRecoverError) as exc:
                self._forget_key(path)
                why = "the file is gone" if isinstance(exc, FileNotFoundError) else str(exc)
                done.append(self._recovery_failed(info, why, final=True))
                continue
            except (AgeError, OSError) as exc:
                done.append(self._recovery_failed(info, str(exc), final=False))
                continue
            done.append(
                self._recovered(
                    info,
                    report.ciphertext_size,
                    report.sha256,
                    report.plaintext_size,
                    report.discarded_bytes,
                )
            )
        return done

    def _forget_key(self, path: Path) -> None:
        if self.journal is None:
            return
        for entry in self.journal.pending():
            if Path(entry.path) == path.resolve():
                self.journal.remove(entry.header_id)

    def _recovered(
        self, info: RecordingInfo, size: int, sha256: str, plaintext: int, discarded: int
    ) -> RecordingInfo:
        now = self.clock()
        info = replace(
            info,
            state=RecordingState.INCOMPLETE,
            ended_at=max(now, info.started_at),
            duration=_duration(plaintext),
            size=size,
            sha256=sha256,
        )
        self.catalog.put(info)
        self.mark_call(info)
        self.audited(
            "recording.recovered",
            info,
            duration=info.duration,
            size=size,
            sha256=sha256,
            discarded_bytes=discarded,
        )
        return info

    def _recovery_failed(self, info: RecordingInfo, why: str, *, final: bool) -> RecordingInfo:
        """``final``: there is no audio to recover (mark it failed); otherwise the file stays
        ``recording`` for a later attempt with the site identity, and an alarm says so."""
        now = self.clock()
        if not final:
            log.error("recording %s not recovered: %s", info.id, why)
            self.alarms.raise_alarm(ACTOR, "recording.recovery-failed", f"{info.id}: {why}", now)
            return info
        note = f"{info.codec_note}; {why}" if info.codec_note else why
        info = replace(
            info, state=RecordingState.FAILED, ended_at=max(now, info.started_at), codec_note=note
        )
        self.catalog.put(info)
        self.mark_call(info)
        self.audited("recording.failed", info, reason=why)
        return info

    # -------------------------------------------------------------- retention

    def retention_days(self, info: RecordingInfo) -> float | None:
        """How long this recording is kept (None: forever)."""
        by_ext = self.settings.retention_by_extension
        days = [by_ext[n] for n in (info.caller_number, info.callee_number) if n in by_ext]
        if days:
            return max(days)
        return self.settings.retention_days

    def prune(
        self, now: float | None = None, *, actor: str = "system", origin: Origin = "box"
    ) -> list[RecordingInfo]:
        """Delete the recordings past their retention: shred the key stanzas (no identity can
        open what is left on the disk), unlink, mark the row and the call record, audit."""
        now = self.clock() if now is None else now
        deleted = []
        for state in (RecordingState.COMPLETE, RecordingState.INCOMPLETE, RecordingState.FAILED):
            for info in self.catalog.list(state=state, limit=100_000):
                days = self.retention_days(info)
                if days is None or info.started_at + days * 86400 > now:
                    continue
                deleted.append(self.delete(info, reason="retention", actor=actor, origin=origin))
        return deleted

    def delete(
        self,
        info: RecordingInfo,
        *,
        reason: str,
        actor: str,
        origin: Origin,
        audit: bool = True,
    ) -> RecordingInfo:
        """Shred and delete one recording; ``audit`` False when the caller audits it."""
        existed = shred(self.path(info))  # key stanzas first, then the file; gone is success
        info = replace(info, state=RecordingState.DELETED, deleted_at=self.clock())
        self.catalog.put(info)
        self.mark_call(info)
        if not audit:
            return info
        self.audited(
            "recording.deleted",
            info,
            actor=actor,
            origin=origin,
            reason=reason,
            file_existed=existed,
        )
        return info

    # -------------------------------------------------------------- verify

    def verify(self) -> VerifyReport:
        """Every finalized file against its size and SHA-256, deleted ones gone, and the
        audit chain."""
        report = VerifyReport()
        for info in self.catalog.list(limit=1_000_000):
            path = self.path(info)
            if info.state is RecordingState.DELETED:
                if path.exists():
                    report.problems.append(f"{info.id}: deleted, but {info.path} still exists")
                continue
            if info.state not in (RecordingState.COMPLETE, RecordingState.INCOMPLETE):
                continue
            report.checked += 1
            try:
                size, digest = _size_and_sha256(path)
            except FileNotFoundError:
                report.problems.append(f"{info.id}: file {info.path} is missing")
                continue
            if size != info.size:
                report.problems.append(f"{info.id}: size {size}, the catalog says {info.size}")
            elif digest != info.sha256:
                report.problems.append(f"{info.id}: SHA-256 does not match: the file was altered")
        chain = self.audit.verify()
        report.audit_ok = chain.ok
        if not chain.ok:
            report.audit_problem = f"audit event {chain.bad_seq}: {chain.problem}"
        return report

    # -------------------------------------------------------------- playback, export

    def open(
        self,
        recording_id: str,
        identities: Sequence[Identity],
        *,
        actor: str,
        origin: Origin,
        action: str = "recording.played",
    ) -> AgeReader:
        """A random-access reader over the recording's WAV (for playback); audited."""
        info = self._readable(recording_id)
        reader = self.reader(recording_id, identities)
        self.audited(action, info, actor=actor, origin=origin)
        return reader

    def reader(self, recording_id: str, identities: Sequence[Identity]) -> AgeReader:
        """A random-access reader over the recording's WAV, not audited (for a caller that
        audits the request itself, like the management API)."""
        return AgeReader.open(self.path(self._readable(recording_id)), identities)

    def export(
        self,
        recording_id: str,
        identities: Sequence[Identity],
        destination: Path,
        *,
        actor: str,
        origin: Origin,
    ) -> int:
        """Decrypt to a WAV file at ``destination`` (created, mode 0600); audited. The WAV
        header's sizes are made exact. Returns the bytes written."""
        info = self._readable(recording_id)
        with AgeReader.open(self.path(info), identities) as reader:
            fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                first = reader.read(1 << 20)
                out.write(_exact_wav_header(first, reader.size))
                written = len(first)
                while block := reader.read(1 << 20):
                    out.write(block)
                    written += len(block)
        self.audited("recording.exported", info, actor=actor, origin=origin, to=str(destination))
        return written

    def _readable(self, recording_id: str) -> RecordingInfo:
        info = self.catalog.get(recording_id)
        if info is None:
            raise KeyError(f"recording: no recording {recording_id!r}")
        if info.state not in (RecordingState.COMPLETE, RecordingState.INCOMPLETE):
            raise KeyError(f"recording {recording_id} is {info.state.value}: nothing to read")
        return info


def _exact_wav_header(first: bytes, total: int) -> bytes:
    """``first`` (the file's first bytes) with a streaming WAV header made exact, for files
    finalized without the recorder's own header rewrite."""
    try:
        channels, rate, size = parse_header(first)
    except ValueError:
        return first
    if size is not None:
        return first
    audio = total - HEADER_SIZE
    return wav_header(audio - audio % (2 * channels), rate=rate) + first[HEADER_SIZE:]


def _size_and_sha256(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


# ---------------------------------------------------------------------------- live recorder


@dataclass
class _Live:
    info: RecordingInfo
    task: asyncio.Task[None] | None = None


class CallRecorder:
    """Records answered calls (see the module docstring). ``recipients`` gives the keys new
    recordings are encrypted to (the keyring's current site key and escrow keys); it is
    asked per call, so a key rotation applies to the next call."""

    def __init__(
        self,
        recordings: Recordings,
        recipients: Callable[[], Sequence[X25519Recipient]],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.recordings = recordings
        self.settings = recordings.settings
        self.recipients = recipients
        self.clock = clock
        self.live: dict[str, _Live] = {}  # call id -> its recording
        self.finished: dict[str, RecordingInfo] = {}  # call id -> recording, until its CDR

    def wants(self, call: Call) -> bool:
        directory = self.recordings.directory
        caller = directory.get(call.caller) if directory else None
        callee = directory.get(call.callee or call.dialed) if directory else None
        return wants_recording(
            self.settings.policy,
            caller.record_calls if caller else None,
            callee.record_calls if callee else None,
        )

    # The call manager's hooks -------------------------------------------------------

    def call_answered(self, call: Call) -> None:
        """Start recording ``call`` if the policy wants it (the tap starts at once, so no
        packet after the answer is missed)."""
        if call.media is None or call.id in self.live or not self.wants(call):
            return
        now = self.clock()
        recording_id = uuid.uuid4().hex
        info = RecordingInfo(
            id=recording_id,
            call_id=call.id,
            path=relative_path(recording_id, now),
            started_at=now,
            caller_number=call.caller,
            callee_number=call.callee or call.dialed,
        )
        try:
            recipients = list(self.recipients())
            if not recipients:
                raise ValueError("no recipients configured")
        except Exception as exc:
            self._failed(info, "recording.no-key", f"no recording key: {exc}")
            return
        info = replace(info, recipients=tuple(r.fingerprint for r in recipients))
        payload_types, events = _payload_types(call)
        core = RecorderCore(
            window=self.settings.window, payload_types=payload_types, event_types=events
        )
        tap = call.media.tap(self.settings.tap_size)
        clock = call.media.relay.clock
        live = _Live(info)
        self.live[call.id] = live
        live.task = asyncio.ensure_future(self._record(live, tap, core, recipients, clock))

    def call_record(self, record: CallRecord) -> CallRecord:
        """The call manager's last word on a call: add the recording's id and state."""
        live = self.live.get(record.call_id)
        info = live.info if live else self.finished.pop(record.call_id, None)
        if info is None:
            return record
        return replace(record, recording_ref=info.id, recording_state=info.state.value)

    # The recording -----------------------------------------------------------------

    async def _record(
        self,
        live: _Live,
        tap: TapLike,
        core: RecorderCore,
        recipients: list[X25519Recipient],
        clock: Callable[[], float],
    ) -> None:
        try:
            await self._run_recording(live, tap, core, recipients, clock)
        except Exception:  # a bug here must not linger as a silent task failure
            log.exception("recording %s of call %s failed", live.info.id, live.info.call_id)
            tap.close()
        finally:
            self.live.pop(live.info.call_id, None)

    async def _run_recording(
        self,
        live: _Live,
        tap: TapLike,
        core: RecorderCore,
        recipients: list[X25519Recipient],
        clock: Callable[[], float],
    ) -> None:
        recordings = self.recordings
        info = live.info
        path = recordings.path(info)
        recordings.catalog.put(info)  # first: a crash from here on leaves a row to recover
        try:
            writer = await asyncio.to_thread(self._create, path, recipients)
        except (StorageError, OSError) as exc:
            tap.close()
            full = isinstance(exc, StorageFullError) or getattr(exc, "errno", 0) == errno.ENOSPC
            code = "recording.disk-full" if full else "recording.storage-error"
            self._failed(info, code, f"cannot create the recording: {exc}")
            return
        recordings.audited(
            "recording.started", info, path=info.path, recipients=list(info.recipients)
        )
        outcome = await record_tap(tap, core, writer, clock=clock, interval=self.settings.interval)
        state = RecordingState.COMPLETE
        note = "; ".join(p for p in (core.codec, core.note) if p)
        error = outcome.error
        result: tuple[int, str, int] | None = None  # size, sha256, plaintext size
        if error is None:
            try:
                done = await asyncio.to_thread(writer.close, wav_header(outcome.frames * 4))
                result = (done.ciphertext_size, done.sha256, done.plaintext_size)
            except StorageError as exc:
                error = exc
        if error is not None:
            state = RecordingState.INCOMPLETE
            full = isinstance(error, StorageFullError) or getattr(error, "errno", 0) == errno.ENOSPC
            code = "recording.disk-full" if full else "recording.storage-error"
            message = f"recording {info.id} of call {info.call_id} stopped: {error}"
            log.error("%s", message)
            recordings.alarms.raise_alarm(ACTOR, code, message, self.clock())
            note = "; ".join(p for p in (note, "stopped early: " + code) if p)
            try:
                salvaged = await asyncio.to_thread(writer.salvage, header_for_plaintext)
                result = (salvaged.ciphertext_size, salvaged.sha256, salvaged.plaintext_size)
            except (StorageError, ValueError) as exc:
                log.error("recording %s could not be finalized: %s", info.id, exc)
                writer.abort()  # the journal keeps its key: recovery at the next start
                state = RecordingState.RECORDING
        if outcome.tap_dropped:
            note = "; ".join((note, f"{outcome.tap_dropped} packets dropped by the tap"))
        info = replace(
            info, state=state, codec_note=note, ended_at=max(self.clock(), info.started_at)
        )
        if result is not None:
            size, sha256, plaintext = result
            info = replace(info, size=size, sha256=sha256, duration=_duration(plaintext))
        recordings.catalog.put(info)
        recordings.audited(
            "recording.finished",
            info,
            state=info.state.value,
            duration=info.duration,
            size=info.size,
            sha256=info.sha256,
        )
        self._settle(info)

    def _settle(self, info: RecordingInfo) -> None:
        """Give the call record the recording's final state: now if the call has ended, else
        when the call manager writes its record (:meth:`call_record`)."""
        self.live.pop(info.call_id, None)
        if self.recordings.cdr.get(info.call_id) is not None:
            self.recordings.mark_call(info)
        else:
            self.finished[info.call_id] = info

    def _create(self, path: Path, recipients: list[X25519Recipient]) -> AgeWriter:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        writer = AgeWriter.create(path, recipients, journal=self.recordings.journal, keep_head=True)
        try:
            writer.write(wav_header(None))
        except BaseException:
            writer.abort()
            raise
        return writer

    def _failed(self, info: RecordingInfo, code: str, message: str) -> None:
        recordings = self.recordings
        info = replace(
            info, state=RecordingState.FAILED, codec_note=message, ended_at=info.started_at
        )
        log.error("recording of call %s failed: %s", info.call_id, message)
        recordings.alarms.raise_alarm(ACTOR, code, message, self.clock())
        recordings.catalog.put(info)
        recordings.audited("recording.failed", info, reason=code)
        self._settle(info)

    async def close(self, timeout: float = 10.0) -> None:
        """Wait for the recordings still finishing (their taps close with the calls)."""
        tasks = [live.task for live in self.live.values() if live.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)


def _payload_types(call: Call) -> tuple[dict[int, str], list[int]]:
    """Payload type names from both phones' SDP, and the telephone-event types."""
    from pbx.sdp.offer_answer import media_targets  # noqa: PLC0415

    names: dict[int, str] = {}
    events: list[int] = []
    for sdp in call.phone_sdp.values():
        for target in media_targets(sdp):
            if target.kind != "audio":
                continue
            for codec in target.codecs:
                names.setdefault(codec.payload_type, codec.name)
            if target.telephone_event is not None:
                events.append(target.telephone_event)
    if call.media is not None:
        events += [pt for leg in call.media.legs if (pt := leg.dtmf_payload_type) is not None]
    return names, events
