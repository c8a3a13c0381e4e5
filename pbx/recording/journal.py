"""The key journal: file keys of recordings still being written, kept in a RAM-backed folder.

Why it exists: an age file can only be finalized (its last chunk re-encrypted with the final
flag) by someone holding its 16-byte file key. The box records with public recipients only, so
after ``kill -9`` of the recorder nobody could finalize the partial file without unlocking the
site identity (a passphrase the box does not have). The writer therefore drops each in-progress
recording's file key here before it writes the header and removes it when the file is closed.

Where: a tmpfs folder (default ``/run/edgepbx/recording-keys``, mode 0700, entries 0600).
tmpfs survives a crash of the process, never reaches a disk, and is wiped by a power loss or a
reboot; after that, recovery needs the site identity instead
(see :func:`pbx.recording.age.recover`).
A file key opens exactly one recording, and only the recordings in progress have an entry, so
the window of exposure is the length of the call, to someone who is root on the box (who could
read the audio from the recorder's memory anyway). tmpfs pages can be swapped out: the box
runs without swap (or with encrypted swap) for this reason, as for the unlocked identity.

Entries are named by a hash of the recording's header (:func:`header_id`), so they follow the
file through a rename, and each names the path the writer used, so the recorder can find and
recover every unfinished recording at start-up (:meth:`KeyJournal.pending`).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_JOURNAL_DIR",
    "JournalEntry",
    "KeyJournal",
    "KeyJournalError",
    "filesystem_type",
    "header_id",
]

DEFAULT_JOURNAL_DIR = Path("/run/edgepbx/recording-keys")
_SUFFIX = ".key"


class KeyJournalError(Exception):
    """The journal folder is unusable (not RAM-backed, wrong owner, unreadable entry)."""


_VOLATILE = {"tmpfs", "ramfs"}


def filesystem_type(path: str | os.PathLike[str]) -> str:
    """The type of the filesystem holding ``path`` (from /proc/self/mountinfo), or ""."""
    target = os.path.realpath(path)
    best, kind = "", ""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return ""
    for line in lines:
        fields, _, rest = line.partition(" - ")
        parts = fields.split()
        if len(parts) < 5 or not rest:
            continue
        mount = parts[4].encode().decode("unicode_escape")  # octal escapes such as \040
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, kind = mount, rest.split()[0]
    return kind


def header_id(raw_header: bytes) -> str:
    """The journal name of a recording: SHA-256 of its header (including the MAC line), 32 hex."""
    return hashlib.sha256(raw_header).hexdigest()[:32]


@dataclass(frozen=True)
class JournalEntry:
    header_id: str
    path: str

    def __repr__(self) -> str:  # the file key is deliberately not part of this value
        return f"JournalEntry(header_id={self.header_id!r}, path={self.path!r})"


class KeyJournal:
    """A folder of ``<header_id>.key`` files, each holding one file key and its recording's path."""

    def __init__(
        self,
        directory: str | os.PathLike[str] = DEFAULT_JOURNAL_DIR,
        *,
        require_volatile: bool = True,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        kind = filesystem_type(self.directory)
        if require_volatile and kind not in _VOLATILE:
            raise KeyJournalError(
                f"key journal {self.directory} is on {kind or 'an unknown filesystem'}, not a "
                "RAM-backed one (tmpfs): file keys would reach the disk. Use a folder under "
                "/run, or require_volatile=False in tests"
            )
        info = self.directory.lstat()
        if not stat.S_ISDIR(info.st_mode):
            raise KeyJournalError(f"key journal {self.directory} is not a directory")
        if info.st_uid != os.geteuid():
            raise KeyJournalError(f"key journal {self.directory} is owned by uid {info.st_uid}")
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.chmod(self.directory, 0o700)

    def _entry(self, hid: str) -> Path:
        if len(hid) != 32 or any(c not in "0123456789abcdef" for c in hid):
            raise KeyJournalError(f"invalid header id {hid!r}")
        return self.directory / (hid + _SUFFIX)

    def put(self, hid: str, file_key: bytes, path: str) -> None:
        """Record the file key of a recording that is about to be written."""
        document = json.dumps({"path": path, "file_key": file_key.hex()}).encode()
        fd = os.open(self._entry(hid), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, document)
        finally:
            os.close(fd)

    def get(self, hid: str) -> bytes | None:
        """The file key recorded under ``hid``, or None."""
        try:
            document = json.loads(self._entry(hid).read_bytes())
            key = bytes.fromhex(document["file_key"])
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyJournalError(f"unreadable key journal entry {hid}") from exc
        if len(key) != 16:
            raise KeyJournalError(f"key journal entry {hid} holds no 16-byte file key")
        return key

    def remove(self, hid: str) -> None:
        """Forget a file key (removing what is already gone is success)."""
        try:
            os.unlink(self._entry(hid))
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise

    def pending(self) -> list[JournalEntry]:
        """Every recording whose writer has not closed it: the recorder recovers these at start."""
        entries = []
        for item in sorted(self.directory.glob("*" + _SUFFIX)):
            try:
                document = json.loads(item.read_bytes())
                entries.append(JournalEntry(item.name[: -len(_SUFFIX)], str(document["path"])))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a torn entry has no recording behind it worth recovering
        return entries
