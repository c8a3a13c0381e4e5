"""Site keys for recordings: the passphrase-protected site identity, rotation, escrow, backup.

The box records with public recipients only: recording needs no secret. The site identity (the
X25519 secret that opens recordings) is created at setup and stored only as an age file
encrypted with a passphrase (scrypt stanza), holding the identity in ``age-keygen`` format. Stock
``age`` opens such a file directly: ``age -d -i site-<fp>.age recording.age`` asks for the
passphrase and decrypts. The box unlocks it into memory only for playback and recovery.

LOSING THE IDENTITY (or its passphrase) MEANS LOSING EVERY RECORDING MADE FOR IT. Nobody, not
us, can decrypt them. Backup is therefore a first-class step: :meth:`Keyring.export_identity`
gives the protected file (safe to copy to a USB stick or a password manager: it is useless
without the passphrase), :meth:`Keyring.import_identity` restores it on a replacement box, and
:meth:`Keyring.backup_status` tells the setup wizard and the health checks which identities
were never exported. A company escrow key (a public recipient whose identity the company
keeps elsewhere) can be added so every recording is also readable with it.

Rotation: :meth:`Keyring.rotate` creates a new site identity that new recordings use; old ones
stay readable with the old identity, which remains in the keyring (retired). Each recording's
metadata lists the fingerprints of its recipients (:attr:`KeyInfo.fingerprint`), so playback
knows which identity to unlock.

The keyring is a folder (default ``/var/lib/edgepbx/keys``, mode 0700, files 0600), local to
the box and never replicated: ``keyring.json`` (public keys and bookkeeping) and one
``site-<fingerprint>.age`` per site identity. Writes are atomic (temp file, fsync, rename).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from pbx.recording.age import (
    AgeError,
    NoIdentityError,
    ScryptIdentity,
    ScryptRecipient,
    X25519Identity,
    X25519Recipient,
    decrypt_bytes,
    encrypt_bytes,
)

__all__ = [
    "DEFAULT_KEYRING_DIR",
    "KeyInfo",
    "Keyring",
    "KeyringError",
    "WrongPassphraseError",
    "format_identity_file",
    "parse_identity_file",
    "parse_recipients_file",
    "protect_identity",
    "unlock_identity",
]

DEFAULT_KEYRING_DIR = Path("/var/lib/edgepbx/keys")
DEFAULT_WORK_FACTOR = 18  # what `age -p` uses: about 1 s and 256 MiB on the box
_DOCUMENT = "keyring.json"


class KeyringError(Exception):
    """A keyring operation cannot be done (no site key yet, unknown fingerprint, bad file)."""


class WrongPassphraseError(KeyringError):
    """The passphrase does not open the protected identity."""


# ---------------------------------------------------------------------------------------------
# age-keygen text formats


def format_identity_file(identity: X25519Identity, created: dt.datetime) -> str:
    """The identity in ``age-keygen`` format (what ``age -i`` reads)."""
    stamp = created.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return f"# created: {stamp}\n# public key: {identity.recipient()}\n{identity.secret_string()}\n"


def parse_identity_file(text: str) -> list[X25519Identity]:
    """Identities from ``age-keygen`` format: one per line, ``#`` comments and blanks skipped."""
    identities = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            identities.append(X25519Identity.from_string(line))
        except ValueError:
            raise KeyringError(f"identity file line {number}: not an age identity") from None
    if not identities:
        raise KeyringError("identity file holds no identity")
    return identities


def parse_recipients_file(text: str) -> list[X25519Recipient]:
    """Recipients from an ``age -R`` file: one ``age1...`` per line, comments and blanks skipped."""
    recipients = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            recipients.append(X25519Recipient.from_string(line))
        except ValueError as exc:
            raise KeyringError(f"recipients file line {number}: {exc}") from None
    return recipients


def protect_identity(
    identity: X25519Identity,
    passphrase: str,
    *,
    created: dt.datetime,
    work_factor: int = DEFAULT_WORK_FACTOR,
) -> bytes:
    """The identity file encrypted to a passphrase: an age file ``age -d`` opens."""
    if not passphrase:
        raise KeyringError("passphrase: must not be empty")
    text = format_identity_file(identity, created).encode()
    return encrypt_bytes(text, [ScryptRecipient(passphrase, work_factor)])


def unlock_identity(
    protected: bytes, passphrase: str, *, max_work_factor: int = 22
) -> list[X25519Identity]:
    """Decrypt a protected identity file into memory."""
    try:
        text = decrypt_bytes(protected, [ScryptIdentity(passphrase, max_work_factor)])
    except NoIdentityError:
        raise WrongPassphraseError("the passphrase does not open this identity file") from None
    except AgeError as exc:
        raise KeyringError(f"protected identity file is damaged: {exc}") from exc
    try:
        return parse_identity_file(text.decode())
    except UnicodeDecodeError:
        raise KeyringError("protected identity file holds no identity text") from None


# ---------------------------------------------------------------------------------------------
# The keyring


class KeyInfo(BaseModel):
    """One recipient the box knows: a site key (identity held here) or an escrow key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fingerprint: str
    recipient: str
    role: Literal["site", "escrow"]
    label: str = ""
    created_at: float
    retired_at: float | None = None  # site keys: when a rotation replaced it
    exported_at: float | None = None  # site keys: last backup export of the protected identity


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    current: str | None = None  # fingerprint of the site key new recordings use
    keys: list[KeyInfo] = []


_FINGERPRINT_RE = re.compile(r"sha256:[0-9a-f]{32}")


class Keyring:
    """The box's recording keys, in a local folder. Methods take ``now`` (unix seconds)."""

    def __init__(
        self,
        directory: str | os.PathLike[str] = DEFAULT_KEYRING_DIR,
        *,
        work_factor: int = DEFAULT_WORK_FACTOR,
    ) -> None:
        self.directory = Path(directory)
        self.work_factor = work_factor
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        self._stamp: tuple[int, int] | None = None
        self._doc = self._load()

    # -- reading ------------------------------------------------------------------------------

    def keys(self) -> list[KeyInfo]:
        return list(self._doc.keys)

    def get(self, fingerprint: str) -> KeyInfo:
        for key in self._doc.keys:
            if key.fingerprint == fingerprint:
                return key
        raise KeyringError(f"fingerprint: no key {fingerprint!r} in the keyring")

    @property
    def current(self) -> KeyInfo | None:
        return self.get(self._doc.current) if self._doc.current else None

    def recording_recipients(self) -> list[X25519Recipient]:
        """What a new recording is encrypted to: the current site key, then every escrow key.

        Re-reads the keyring if another process (``edgepbx keys rotate``) changed it.
        """
        self.refresh()
        current = self.current
        if current is None:
            raise KeyringError("no site key yet: create one at setup (Keyring.initialize)")
        escrow = [k for k in self._doc.keys if k.role == "escrow"]
        return [X25519Recipient.from_string(k.recipient) for k in [current, *escrow]]

    def recording_fingerprints(self) -> list[str]:
        """The fingerprints of :meth:`recording_recipients`, for the metadata database."""
        return [r.fingerprint for r in self.recording_recipients()]

    def backup_status(self) -> list[KeyInfo]:
        """Site keys whose protected identity was never exported: back these up."""
        return [k for k in self._doc.keys if k.role == "site" and k.exported_at is None]

    # -- site identities ----------------------------------------------------------------------

    def initialize(self, passphrase: str, *, now: float | None = None) -> KeyInfo:
        """Create the first site identity (setup). Refused if one exists."""
        if self._doc.current is not None:
            raise KeyringError("the keyring already has a site key: use rotate")
        return self._new_site_key(passphrase, now)

    def rotate(self, passphrase: str, *, now: float | None = None) -> KeyInfo:
        """Create a new site identity for new recordings; the old one is kept, retired."""
        if self._doc.current is None:
            raise KeyringError("no site key to rotate: use initialize")
        return self._new_site_key(passphrase, now)

    def unlock(self, passphrase: str, fingerprints: Sequence[str] = ()) -> list[X25519Identity]:
        """Unlock site identities into memory (all of them, or those named).

        Identities protected by another passphrase are skipped; if none opens, the error says so.
        """
        wanted = list(fingerprints) or [k.fingerprint for k in self._doc.keys if k.role == "site"]
        identities = []
        for fingerprint in wanted:
            if self.get(fingerprint).role != "site":
                raise KeyringError(f"{fingerprint} is an escrow key: its identity is not here")
            try:
                identities += unlock_identity(
                    self._identity_path(fingerprint).read_bytes(), passphrase
                )
            except WrongPassphraseError:
                continue
        if not identities:
            raise WrongPassphraseError("the passphrase opens none of the site identities")
        return identities

    def export_identity(self, fingerprint: str, *, now: float | None = None) -> bytes:
        """The protected identity file, for backup (still passphrase-protected)."""
        key = self.get(fingerprint)
        if key.role != "site":
            raise KeyringError(f"{fingerprint} is an escrow key: its identity is not here")
        data = self._identity_path(fingerprint).read_bytes()
        self._replace(key, key.model_copy(update={"exported_at": _now(now)}))
        return data

    def import_identity(
        self,
        protected: bytes,
        passphrase: str,
        *,
        make_current: bool = False,
        now: float | None = None,
    ) -> KeyInfo:
        """Restore a backed-up protected identity (e.g. onto a replacement box)."""
        identity = unlock_identity(protected, passphrase)[0]
        recipient = identity.recipient()
        existing = [k for k in self._doc.keys if k.fingerprint == recipient.fingerprint]
        if existing and existing[0].role == "escrow":
            raise KeyringError(f"{recipient.fingerprint} is an escrow key: remove it first")
        key = existing[0] if existing else self._site_info(recipient, now, exported=True)
        _write_atomic(self._identity_path(key.fingerprint), protected)
        if not existing:
            self._doc.keys.append(key)
        if make_current:
            self._make_current(key, now)
        self._save()
        return self.get(key.fingerprint)

    def change_passphrase(self, old: str, new: str, *, now: float | None = None) -> None:
        """Re-protect every site identity that ``old`` opens with ``new``."""
        changed = 0
        for key in [k for k in self._doc.keys if k.role == "site"]:
            path = self._identity_path(key.fingerprint)
            try:
                identity = unlock_identity(path.read_bytes(), old)[0]
            except WrongPassphraseError:
                continue
            created = dt.datetime.fromtimestamp(key.created_at, dt.UTC)
            data = protect_identity(identity, new, created=created, work_factor=self.work_factor)
            _write_atomic(path, data)
            # The old backup still opens with the old passphrase only: ask for a new export.
            self._replace(key, key.model_copy(update={"exported_at": None}))
            changed += 1
        if not changed:
            raise WrongPassphraseError("the old passphrase opens none of the site identities")

    # -- escrow -------------------------------------------------------------------------------

    def add_escrow(self, recipient: str, *, label: str = "", now: float | None = None) -> KeyInfo:
        """Add a public escrow recipient (``age1...``) that every new recording also uses."""
        parsed = X25519Recipient.from_string(recipient)
        if any(k.fingerprint == parsed.fingerprint for k in self._doc.keys):
            raise KeyringError(f"recipient: {parsed} is already in the keyring")
        key = KeyInfo(
            fingerprint=parsed.fingerprint,
            recipient=str(parsed),
            role="escrow",
            label=label,
            created_at=_now(now),
        )
        self._doc.keys.append(key)
        self._save()
        return key

    def remove_escrow(self, fingerprint: str) -> None:
        """Stop encrypting new recordings to an escrow key (old ones keep their stanza)."""
        key = self.get(fingerprint)
        if key.role != "escrow":
            raise KeyringError(f"{fingerprint} is a site key; site keys are never removed")
        self._doc.keys.remove(key)
        self._save()

    # -- internals ----------------------------------------------------------------------------

    def _new_site_key(self, passphrase: str, now: float | None) -> KeyInfo:
        identity = X25519Identity.generate()
        key = self._site_info(identity.recipient(), now, exported=False)
        created = dt.datetime.fromtimestamp(key.created_at, dt.UTC)
        data = protect_identity(identity, passphrase, created=created, work_factor=self.work_factor)
        _write_atomic(self._identity_path(key.fingerprint), data)
        self._doc.keys.append(key)
        self._make_current(key, now)
        self._save()
        return key

    def _site_info(self, recipient: X25519Recipient, now: float | None, exported: bool) -> KeyInfo:
        stamp = _now(now)
        return KeyInfo(
            fingerprint=recipient.fingerprint,
            recipient=str(recipient),
            role="site",
            created_at=stamp,
            exported_at=stamp if exported else None,
        )

    def _make_current(self, key: KeyInfo, now: float | None) -> None:
        previous = self._doc.current
        if previous is not None and previous != key.fingerprint:
            old = self.get(previous)
            self._replace(old, old.model_copy(update={"retired_at": _now(now)}), save=False)
        self._replace(key, key.model_copy(update={"retired_at": None}), save=False)
        self._doc.current = key.fingerprint

    def _replace(self, old: KeyInfo, new: KeyInfo, *, save: bool = True) -> None:
        index = next(i for i, k in enumerate(self._doc.keys) if k.fingerprint == old.fingerprint)
        self._doc.keys[index] = new
        if save:
            self._save()

    def _identity_path(self, fingerprint: str) -> Path:
        if not _FINGERPRINT_RE.fullmatch(fingerprint):
            raise KeyringError(f"fingerprint: {fingerprint!r} is not sha256:<32 hex>")
        return self.directory / f"site-{fingerprint.removeprefix('sha256:')}.age"

    def refresh(self) -> None:
        """Reload ``keyring.json`` if it changed on disk since this object last read it."""
        if self._disk_stamp() != self._stamp:
            self._doc = self._load()

    def _disk_stamp(self) -> tuple[int, int] | None:
        try:
            info = (self.directory / _DOCUMENT).stat()
        except FileNotFoundError:
            return None
        return info.st_mtime_ns, info.st_ino

    def _load(self) -> _Document:
        path = self.directory / _DOCUMENT
        self._stamp = self._disk_stamp()
        try:
            return _Document.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            return _Document()
        except ValidationError as exc:
            raise KeyringError(f"{path} is damaged: {exc}") from exc

    def _save(self) -> None:
        _write_atomic(self.directory / _DOCUMENT, self._doc.model_dump_json(indent=2).encode())
        self._stamp = self._disk_stamp()


def _now(now: float | None) -> float:
    return time.time() if now is None else now


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
