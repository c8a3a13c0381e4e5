"""Recording on the box: building the recorder from the data folder, and the
``edgepbx recordings list | export | verify | recover | prune`` commands.

Layout under the data folder: ``recordings/<yyyy>/<mm>/<id>.wav.age`` (never replicated),
``keys/`` the keyring (:mod:`pbx.recording.keys`); the key journal of recordings in progress
lives in RAM (``/run/edgepbx/recording-keys``, else ``/dev/shm``), see
:mod:`pbx.recording.journal`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import getpass
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from appliance.store import SqliteStore, open_store
from appliance.store.recordings import SqliteAlarmLog, SqliteRecordingCatalog
from pbx.recording.age import AgeError, Identity, X25519Recipient
from pbx.recording.journal import KeyJournal, KeyJournalError, filesystem_type
from pbx.recording.keys import Keyring, KeyringError, parse_identity_file, unlock_identity
from pbx.recording.service import (
    CallRecorder,
    FolderBusy,
    FolderLock,
    Recordings,
    RecordingSettings,
)

log = logging.getLogger(__name__)

__all__ = ["BoxRecording", "add_commands", "default_journal_dir", "open_recordings", "run_command"]

RECORDINGS = "recordings"
KEYS = "keys"
SETUP_IDENTITY = "site-identity.txt"  # appliance.setup.service.IDENTITY_FILE
_VOLATILE = ("tmpfs", "ramfs")


def default_journal_dir() -> Path | None:
    """A RAM-backed folder for the key journal: /run if it is tmpfs, else /dev/shm."""
    uid = os.geteuid()
    for base, name in ((Path("/run"), "edgepbx"), (Path("/dev/shm"), f"edgepbx-{uid}")):
        if base.is_dir() and filesystem_type(base) in _VOLATILE:
            return base / name / "recording-keys"
    return None


def open_recordings(
    store: SqliteStore,
    data: Path,
    settings: RecordingSettings | None = None,
    *,
    journal_dir: Path | None = None,
) -> Recordings:
    journal: KeyJournal | None = None
    where = journal_dir or default_journal_dir()
    if where is not None:
        try:
            journal = KeyJournal(where)
        except (KeyJournalError, OSError) as exc:
            log.warning("no key journal (%s): recovery after a crash will need the identity", exc)
    return Recordings(
        data / RECORDINGS,
        SqliteRecordingCatalog(store.metadata),
        store.cdr,
        store.audit,
        SqliteAlarmLog(store.metadata),
        directory=store.directory,
        settings=settings,
        journal=journal,
    )


def site_recipients(data: Path, extra: Sequence[str] = ()) -> list[X25519Recipient]:
    """What new recordings are encrypted to: the keyring's current site key and escrow keys
    (``edgepbx keys``), else the setup console's site identity's recipient, then ``extra``
    (``age1...`` strings). Public keys only: recording needs no secret."""
    recipients: list[X25519Recipient] = []
    if (data / KEYS / "keyring.json").exists():
        keyring = Keyring(data / KEYS)
        if keyring.current is not None:
            recipients += keyring.recording_recipients()
    # The setup console's first-boot identity names its recipient in a comment line.
    console = data / SETUP_IDENTITY
    if not recipients and console.exists():
        for line in console.read_text().splitlines():
            if line.startswith("# recipient: "):
                recipients.append(X25519Recipient.from_string(line.split(": ", 1)[1].strip()))
    for text in extra:
        recipient = X25519Recipient.from_string(text)
        if recipient not in recipients:
            recipients.append(recipient)
    return recipients


@dataclass
class BoxRecording:
    """What ``edgepbx run`` holds for recording: the lock on the folder and the recorder."""

    lock: FolderLock
    recordings: Recordings
    recorder: CallRecorder

    def close(self) -> None:
        self.lock.release()

    async def run_retention(self, interval: float = 3600.0) -> None:
        """Apply the retention policy now and every ``interval`` seconds (until cancelled).
        Shredding and unlinking run in a thread: the loop keeps relaying media meanwhile."""
        settings = self.recordings.settings
        if settings.retention_days is None and not settings.retention_by_extension:
            return
        while True:
            try:
                gone = await asyncio.to_thread(self.recordings.prune)
            except Exception:  # a failed pass is retried at the next interval
                log.exception("retention pass failed")
            else:
                if gone:
                    log.info("retention deleted %d recordings", len(gone))
            await asyncio.sleep(interval)


def start_box_recording(
    store: SqliteStore,
    data: Path,
    settings: RecordingSettings,
    *,
    recipients: Sequence[str] = (),
    journal_dir: Path | None = None,
) -> BoxRecording:
    """Lock the folder, finalize what a crash left unfinished, and build the recorder."""
    for text in recipients:
        X25519Recipient.from_string(text)  # refuse a bad key now, not at the first call
    recordings = open_recordings(store, data, settings, journal_dir=journal_dir)
    lock = FolderLock(recordings.folder)
    try:
        for info in recordings.recover():
            log.warning("recording %s recovered after a crash: %s", info.id, info.state.value)
    except BaseException:
        lock.release()
        raise
    recorder = CallRecorder(recordings, lambda: site_recipients(data, recipients))
    return BoxRecording(lock, recordings, recorder)


# ------------------------------------------------------------------------------ commands


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("recordings", help="list, export, verify, recover, prune recordings")
    group.add_argument("--data", type=Path, default=Path("var"), help="the box's data folder")
    group.add_argument("--journal", type=Path, default=None, help="the key journal folder")
    ops = group.add_subparsers(dest="operation", required=True)
    ops.add_parser("list", help="the recordings and their states")
    export = ops.add_parser("export", help="decrypt a recording to a WAV file (audited)")
    export.add_argument("id", help="the recording id")
    export.add_argument("output", type=Path, help="the WAV file to write (must not exist)")
    _identity_options(export)
    ops.add_parser("verify", help="check files against their SHA-256 and the audit chain")
    recover = ops.add_parser("recover", help="finalize recordings cut short by a crash")
    _identity_options(recover)
    prune = ops.add_parser("prune", help="delete recordings past their retention")
    prune.add_argument("--days", type=float, default=None, help="keep recordings this long")
    prune.add_argument(
        "--extension-days",
        action="append",
        default=[],
        metavar="NUMBER=DAYS",
        help="retention for one extension's calls (repeatable)",
    )
    group.add_argument("--actor", default=getpass.getuser(), help="who runs this (audit log)")


def _identity_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--identity",
        type=Path,
        action="append",
        default=[],
        help="an age identity file (age-keygen format); default: the keyring, with a "
        "passphrase prompt",
    )


def _identities(args: argparse.Namespace, *, required: bool) -> list[Identity]:
    identities: list[Identity] = []
    for path in args.identity:
        text = path.read_bytes()
        if text.startswith(b"age-encryption.org/v1"):  # passphrase-protected (age -p)
            phrase = getpass.getpass(f"Passphrase for {path}: ")
            identities += unlock_identity(text, phrase)
        else:
            identities += parse_identity_file(text.decode())
    if identities or not required:  # recover uses the key journal unless given an identity
        return identities
    keyring = Keyring(args.data / KEYS)
    phrase = getpass.getpass("Passphrase of the site identity: ")
    return list(keyring.unlock(phrase))


def run_command(args: argparse.Namespace) -> int:
    """``edgepbx recordings ...``; returns the exit code."""
    if not (args.data / "metadata.db").exists():
        print(f"edgepbx: no box data in {args.data}", file=sys.stderr)
        return 2
    store = open_store(args.data)
    try:
        settings = RecordingSettings()
        if args.operation == "prune":
            by_ext = {}
            for item in args.extension_days:
                number, _, days = item.partition("=")
                by_ext[number] = float(days)
            settings = RecordingSettings(retention_days=args.days, retention_by_extension=by_ext)
        recordings = open_recordings(store, args.data, settings, journal_dir=args.journal)
        return _operation(args, recordings)
    except (AgeError, KeyringError, KeyError, ValueError, OSError) as exc:
        print(f"edgepbx recordings {args.operation}: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()


def _operation(args: argparse.Namespace, recordings: Recordings) -> int:
    op = args.operation
    if op == "list":
        for info in recordings.catalog.list(limit=1_000_000):
            when = dt.datetime.fromtimestamp(info.started_at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
            print(
                f"{info.id}  {when}  {info.state.value:<10}  {info.duration:8.1f} s  "
                f"{info.size:>10} B  {info.caller_number or '-'} -> {info.callee_number or '-'}"
                f"  {info.codec_note}"
            )
        return 0
    if op == "export":
        identities = _identities(args, required=True)
        size = recordings.export(
            args.id, identities, args.output, actor=args.actor, origin="console"
        )
        print(f"wrote {args.output} ({size} bytes)")
        return 0
    if op == "verify":
        report = recordings.verify()
        for problem in report.problems:
            print(f"PROBLEM {problem}")
        if not report.audit_ok:
            print(f"PROBLEM audit log: {report.audit_problem}")
        chain = "ok" if report.audit_ok else "BROKEN"
        print(f"{report.checked} recordings checked; audit chain {chain}")
        return 0 if report.ok else 1
    if op == "recover":
        try:
            lock = FolderLock(recordings.folder)
        except FolderBusy as exc:
            print(f"edgepbx recordings recover: {exc}; it recovers at start", file=sys.stderr)
            return 1
        try:
            identities = _identities(args, required=False)
            done = recordings.recover(identities)
        finally:
            lock.release()
        for info in done:
            print(f"{info.id}  {info.state.value}  {info.duration:.1f} s  {info.codec_note}")
        print(f"{len(done)} recordings recovered")
        return 0
    if op == "prune":
        gone = recordings.prune(actor=args.actor, origin="console")
        for info in gone:
            print(f"deleted {info.id} ({info.path})")
        print(f"{len(gone)} recordings deleted")
        return 0
    raise ValueError(f"unknown operation {op}")
