"""``edgepbx keys``: the recording keys from the command line (setup, backup, rotation, escrow).

Passphrases are read from the terminal (twice when a new one is set), or from the first line
of ``--passphrase-file`` for scripted setups; they are never echoed or logged.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import os
import sys
from pathlib import Path

from pbx.recording.age import AgeError
from pbx.recording.keys import DEFAULT_WORK_FACTOR, KeyInfo, Keyring, KeyringError

__all__ = ["add_parser", "run"]

BACKUP_WARNING = """\
IMPORTANT: recordings can only be decrypted with this site identity and its passphrase.
If both the box and every backup of the identity are lost, or the passphrase is forgotten,
the recordings are gone for good; nobody can recover them. Back it up now:
    edgepbx keys export -o /media/usb/site-identity.age
and keep the passphrase somewhere safe, apart from the file."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="recording keys: init, status, export, import, rotate")
    keys.add_argument("--data", type=Path, default=Path("var"), help="the box's data folder")
    keys.add_argument("--passphrase-file", type=Path, help="read passphrases from this file")
    keys.add_argument("--work-factor", type=int, default=DEFAULT_WORK_FACTOR, help="scrypt log2 N")
    actions = keys.add_subparsers(dest="keys_command", required=True)
    actions.add_parser("init", help="create the site identity (setup)")
    actions.add_parser("status", help="list keys and which are not backed up")
    actions.add_parser("rotate", help="new site identity for new recordings")
    export = actions.add_parser("export", help="write the protected identity, for backup")
    export.add_argument("-o", "--output", type=Path, required=True)
    export.add_argument("fingerprint", nargs="?", help="default: the current site key")
    restore = actions.add_parser("import", help="restore a protected identity from a backup")
    restore.add_argument("file", type=Path)
    restore.add_argument("--current", action="store_true", help="use it for new recordings")
    escrow = actions.add_parser("escrow", help="add or remove an escrow recipient")
    escrow.add_argument("action", choices=["add", "remove"])
    escrow.add_argument("key", help="age1... to add, or the fingerprint to remove")
    escrow.add_argument("--label", default="")
    actions.add_parser("passwd", help="change the passphrase of the site identities")


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except (KeyringError, AgeError, ValueError, OSError) as exc:
        print(f"edgepbx keys: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    keyring = Keyring(args.data / "keys", work_factor=args.work_factor)
    secrets = _Passphrases(args.passphrase_file)
    command = args.keys_command
    if command == "status":
        _status(keyring)
    elif command == "init":
        key = keyring.initialize(secrets.new("Passphrase for the new site identity"))
        print(f"site key {key.fingerprint}\nrecipient {key.recipient}\n\n{BACKUP_WARNING}")
    elif command == "rotate":
        key = keyring.rotate(secrets.new("Passphrase for the new site identity"))
        print(f"new site key {key.fingerprint}: new recordings use it; old ones keep theirs")
        print(f"\n{BACKUP_WARNING}")
    elif command == "export":
        current = keyring.current
        fingerprint = args.fingerprint or (current.fingerprint if current else "")
        if not fingerprint:
            raise KeyringError("no site key yet: run `edgepbx keys init`")
        data = keyring.export_identity(fingerprint)
        fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        print(f"wrote {args.output} (passphrase-protected); decrypt a recording with:")
        print(f"    age -d -i {args.output} -o call.wav call.wav.age")
    elif command == "import":
        key = keyring.import_identity(
            args.file.read_bytes(), secrets.existing("Passphrase"), make_current=args.current
        )
        print(f"imported site key {key.fingerprint}")
    elif command == "escrow" and args.action == "add":
        key = keyring.add_escrow(args.key, label=args.label)
        print(f"escrow key {key.fingerprint}: every new recording is also encrypted to it")
    elif command == "escrow":
        keyring.remove_escrow(args.key)
        print(f"removed escrow key {args.key} (existing recordings keep their stanza)")
    elif command == "passwd":
        old = secrets.existing("Current passphrase")
        keyring.change_passphrase(old, secrets.new("New passphrase"))
        print("passphrase changed; export the identity again, the old backup has the old one")
    return 0


def _status(keyring: Keyring) -> None:
    keys = keyring.keys()
    if not keys:
        print("no keys yet: run `edgepbx keys init`")
        return
    current = keyring.current
    for key in keys:
        print(f"{key.fingerprint}  {key.role:6}  {_state(key, current)}  {key.recipient}")
    if keyring.backup_status():
        print(f"\n{len(keyring.backup_status())} site identities are NOT backed up.")
        print(BACKUP_WARNING)


def _state(key: KeyInfo, current: KeyInfo | None) -> str:
    if key.role == "escrow":
        return f"escrow {key.label}".strip()
    parts = ["current" if current and key.fingerprint == current.fingerprint else "retired"]
    if key.exported_at is None:
        parts.append("NOT BACKED UP")
    else:
        stamp = dt.datetime.fromtimestamp(key.exported_at, dt.UTC).strftime("%Y-%m-%d")
        parts.append(f"exported {stamp}")
    return ", ".join(parts)


class _Passphrases:
    """Passphrases from a file (first line, then the next for a second one) or the terminal."""

    def __init__(self, path: Path | None) -> None:
        self._lines = path.read_text().splitlines() if path is not None else None

    def existing(self, prompt: str) -> str:
        if self._lines is not None:
            if not self._lines:
                raise KeyringError("--passphrase-file: not enough lines")
            return self._lines.pop(0)
        return getpass.getpass(f"{prompt}: ")

    def new(self, prompt: str) -> str:
        if self._lines is not None:
            passphrase = self.existing(prompt)
        else:
            passphrase = getpass.getpass(f"{prompt}: ")
            if passphrase != getpass.getpass("Again: "):
                raise KeyringError("the two passphrases differ")
        if len(passphrase) < 12:
            raise KeyringError("passphrase: use at least 12 characters")
        return passphrase
