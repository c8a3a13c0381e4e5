"""The first-boot setup state and its actions, behind the setup/keys/pairing endpoints.

State without secrets lives in ``setup.json`` in the data folder. Secrets live beside it in
files of mode 0600 (the admin's password hash, the site identity) and are never returned.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from appliance.api.schemas.setup import (
    CreatedExtension,
    ExportInfo,
    ExtensionRangeResult,
    FinishResult,
    IdentityInfo,
    Language,
    PairingState,
    SetupState,
)
from appliance.files import write_private
from pbx.recording.keys import DEFAULT_WORK_FACTOR, Keyring
from pbx.store import AlreadyExists, Extension, Store

STATE_FILE = "setup.json"
MAX_RANGE = 500
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_PASSWORD_ALPHABET = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/l/I


class SetupError(ValueError):
    """Refused input; `field` names it the way the request body spells it."""

    def __init__(self, field: str, message: str, status: int = 422) -> None:
        self.field = field
        self.status = status
        super().__init__(message)


class CloudPairing(Protocol):
    """The cloud link's pairing (issue 6's link implements it)."""

    def pair(self, code: str) -> PairingState: ...
    def state(self) -> PairingState: ...


class NoCloudLink:
    """Until a cloud link is configured: the code is kept and pairing waits for the link."""

    def __init__(self) -> None:
        self._code: str | None = None

    def pair(self, code: str) -> PairingState:
        self._code = code
        return self.state()

    def state(self) -> PairingState:
        if self._code is None:
            return PairingState()
        return PairingState(
            state="pending", message="code kept; waiting for the cloud link to start"
        )


def check_hostname(name: str) -> str | None:
    if len(name) > 253:
        return "at most 253 characters"
    for label in name.rstrip(".").split("."):
        if not _LABEL.match(label):
            return f"{label!r} is not a valid label (letters, digits, '-', at most 63)"
    return None


def generate_password(length: int = 12) -> str:
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(length))


@dataclass
class SetupService:
    data_dir: Path
    store: Store
    pairing: CloudPairing
    export_roots: tuple[Path, ...] = ()  # where an identity may be exported (plus data/exports)
    key_work_factor: int = DEFAULT_WORK_FACTOR  # scrypt log2 N of the protected identity

    def __post_init__(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)

    # -- state -------------------------------------------------------------------------

    def state(self) -> SetupState:
        path = self.data_dir / STATE_FILE
        state = SetupState.model_validate_json(path.read_text()) if path.exists() else SetupState()
        return state.model_copy(update={"pairing": self.pairing.state()})

    def _save(self, state: SetupState) -> SetupState:
        path = self.data_dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(state.model_dump_json(indent=2) + "\n")
        os.replace(tmp, path)
        return state

    def _update(self, **changes: object) -> SetupState:
        return self._save(self.state().model_copy(update=changes))

    def set_language(self, language: Language) -> SetupState:
        return self._update(language=language)

    def set_system(self, hostname: str, timezone: str, ntp_servers: list[str]) -> SetupState:
        problem = check_hostname(hostname)
        if problem:
            raise SetupError("hostname", problem)
        if timezone not in zoneinfo.available_timezones():
            raise SetupError("timezone", f"unknown time zone {timezone!r} (e.g. Europe/Moscow)")
        for i, server in enumerate(ntp_servers):
            if check_hostname(server) and not _is_ip(server):
                raise SetupError(f"ntp_servers.{i}", f"{server!r} is not a host name or address")
        return self._update(hostname=hostname, timezone=timezone, ntp_servers=ntp_servers)

    def set_network_confirmed(self) -> SetupState:
        return self._update(network_confirmed=True)

    # -- the site key for recordings ---------------------------------------------------

    def keyring(self) -> Keyring:
        return Keyring(self.data_dir / "keys", work_factor=self.key_work_factor)

    def create_identity(self, passphrase: str) -> IdentityInfo:
        """The site key recordings are encrypted to (pbx.recording.keys), created once and
        kept only protected by the passphrase; a second call returns the existing one."""
        keyring = self.keyring()
        current = keyring.current
        if current is not None:
            self._update(recipient=current.recipient)
            return IdentityInfo(recipient=current.recipient, created=False)
        key = keyring.initialize(passphrase)
        self._update(recipient=key.recipient, backup_confirmed=False, identity_exported_to=None)
        return IdentityInfo(recipient=key.recipient, created=True)

    def export_identity(self, directory: str) -> ExportInfo:
        keyring = self.keyring()
        current = keyring.current
        if current is None:
            raise SetupError("identity", "create the site key first", status=409)
        target_dir = Path(directory).resolve()
        roots = (self.data_dir.resolve() / "exports", *(r.resolve() for r in self.export_roots))
        if not any(target_dir == r or target_dir.is_relative_to(r) for r in roots):
            allowed = ", ".join(map(str, roots))
            raise SetupError("directory", f"export only to a removable disk or {allowed}")
        target_dir.mkdir(parents=True, exist_ok=True)
        short = current.fingerprint.removeprefix("sha256:")[:12]
        target = target_dir / f"{self.state().hostname or 'edgepbx'}-site-{short}.age"
        data = keyring.export_identity(current.fingerprint)  # still passphrase-protected
        write_private(target, data)
        self._update(identity_exported_to=str(target))
        return ExportInfo(path=str(target), size=len(data))

    def confirm_backup(self) -> SetupState:
        if self.state().identity_exported_to is None:
            raise SetupError("identity", "export the identity before confirming its backup", 409)
        return self._update(backup_confirmed=True)

    # -- pairing -----------------------------------------------------------------------

    def pair(self, code: str) -> PairingState:
        raw = code.strip().upper().replace("-", "")
        return self.pairing.pair(f"{raw[:4]}-{raw[4:]}")  # the cabinet's spelling: ABCD-1234

    # -- extensions --------------------------------------------------------------------

    def create_extension_range(self, first: int, last: int, realm: str) -> ExtensionRangeResult:
        if last < first:
            raise SetupError("last", f"{last} is below the first number {first}")
        if last - first + 1 > MAX_RANGE:
            raise SetupError("last", f"at most {MAX_RANGE} extensions at once")
        numbers = [str(n) for n in range(first, last + 1)]
        taken = [n for n in numbers if self.store.directory.get(n) is not None]
        if taken:
            raise SetupError("first", f"already exist: {', '.join(taken[:10])}", status=409)
        created = []
        for number in numbers:
            try:
                self.store.directory.create(Extension(number=number, display_name=number))
            except AlreadyExists:  # created meanwhile by another admin: keep going
                continue
            password = generate_password()
            self.store.directory.set_password(number, password, realm)
            created.append(CreatedExtension(number=number, password=password))
        sheet = self._sheet(created, realm)
        exports = self.data_dir / "exports"
        exports.mkdir(exist_ok=True)
        sheet_path = exports / f"extensions-{first}-{last}.txt"
        write_private(sheet_path, sheet.encode())  # it holds passwords
        self._update(extensions=sorted({*self.state().extensions, *numbers}, key=int))
        return ExtensionRangeResult(extensions=created, sheet_path=str(sheet_path), sheet=sheet)

    def _sheet(self, created: list[CreatedExtension], realm: str) -> str:
        state = self.state()
        host = state.hostname or "edgepbx"
        lines = [
            f"edgepbx phone accounts - {host}",
            f"SIP server: {host}   domain/realm: {realm}",
            "",
            f"{'extension':<12}{'user':<12}password",
            "-" * 40,
        ]
        lines += [f"{c.number:<12}{c.number:<12}{c.password}" for c in created]
        lines += ["", "Keep this sheet safe: the box stores only digests of these passwords."]
        return "\n".join(lines) + "\n"

    # -- finish ------------------------------------------------------------------------

    def finish(self, has_admin: bool) -> FinishResult:
        state = self.state()
        missing = []
        if not has_admin:
            missing.append("admin account")
        if not state.hostname:
            missing.append("host name and time zone")
        if not state.recipient:
            missing.append("recording key")
        elif not state.backup_confirmed:
            missing.append("recording key backup")
        if missing:
            return FinishResult(completed=False, missing=missing)
        self._update(completed=True)
        return FinishResult(completed=True)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
