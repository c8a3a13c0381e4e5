"""The age v1 file format (age-encryption.org/v1), streaming, with crash recovery.

Format (what this module writes and reads)::

    age-encryption.org/v1
    -> X25519 <ephemeral share, base64>
    <wrapped file key, base64, 64 columns>
    --- <header MAC, base64>
    <16-byte payload nonce><STREAM chunks>

- A random 16-byte file key is wrapped once per recipient. X25519 stanza: wrap key =
  HKDF-SHA256(ikm=shared secret, salt=share || recipient, info "age-encryption.org/v1/X25519"),
  body = ChaCha20-Poly1305(wrap key, zero nonce, file key). scrypt stanza (passphrase files,
  alone in its header): key = scrypt(passphrase, salt="age-encryption.org/v1/scrypt" || salt,
  N=2^logN, r=8, p=1).
- Header MAC = HMAC-SHA256(HKDF(file key, info "header"), header bytes up to and including "---").
- Payload key = HKDF(file key, salt=payload nonce, info "payload"). The plaintext is cut in
  64 KiB chunks, each sealed with ChaCha20-Poly1305 under the nonce
  (11-byte big-endian chunk counter || final flag byte). Only the last chunk has the flag; it may
  be short, and is empty only when the whole plaintext is empty.
- Base64 is the standard alphabet without padding, canonical (decoders refuse stray bits).

Writing while the call runs (:class:`AgeWriter`). A chunk is sealed and handed to the OS as
soon as it is full and one more byte has arrived (the last chunk may be full, so a full chunk
cannot be sealed before we know it is not the last one; at 32 kB/s of stereo 8 kHz audio the
delay is one packet). Plaintext exists only in the writer's memory (at most one chunk).

fsync policy. Every write goes to the page cache at once, which survives ``kill -9`` of the
process. The file is fsynced when its header is written (together with its folder, so the
name survives a power loss) and when it is closed (so a finished recording is durable before
its SHA-256 goes into the metadata database). In between there is no fsync by default: a
chunk fills every ~2 s per call, and 500 calls each forcing a flash write every 2 s would cost
more than it saves; the kernel writes dirty pages back within ~30 s anyway
(``vm.dirty_expire_centisecs``). ``sync_every`` bounds the loss after a power cut to that
many chunks when an installation wants it.

Crash recovery (:func:`recover`). After ``kill -9`` the file holds the header and every chunk
written so far, the last possibly torn, and no final chunk. Finalizing it needs the file key,
which the box normally cannot obtain (it records with public recipients only). Design: each
in-progress recording's file key sits in a key journal in a RAM-backed folder
(:mod:`pbx.recording.journal`, default ``/run/edgepbx/recording-keys``), removed on close.
tmpfs survives a process crash, not a power loss or reboot; after those, ``recover`` takes the
site identity (unlocked with its passphrase) instead. Recovery keeps the longest run of chunks
that authenticate, cuts the rest, and re-encrypts the last kept chunk with the final flag: the
result is a valid age file that stock ``age -d`` opens. It truncates first and rewrites the
chunk second, so a crash during recovery leaves a file that recovery can still handle. A
writer holds an ``flock`` on its file until it closes or dies; recovery refuses a locked file,
so it can never finalize a recording that is still being written.

The head. A WAV header's lengths are known only at the end: ``close(head=...)`` re-seals
chunk 0 with the final header, and ``recover``/``salvage`` take ``head(size)`` so a recovered
file gets the lengths of what it kept.

Reading (:class:`AgeReader`) is random access by chunk: the chunk count and plaintext size
follow from the file size; opening authenticates the last chunk (so the size is proven), and a
read at offset N decrypts only the chunks covering it, so an HTTP Range request can start
mid-file. Failures raise one hierarchy rooted at :class:`AgeError`; a chunk that fails is
diagnosed (tampered, moved to another position, or cut at a chunk boundary).

Retention (:func:`destroy_key_stanzas`, :func:`shred`): overwriting the recipient stanzas in
place (then fsync) leaves no wrapped copy of the file key on disk, so the ciphertext that may
linger in free blocks is undecryptable even with the identity. Limit: flash translation layers
and copy-on-write or data-journalling filesystems may keep the old block for a while; on the
box's ext4 (data=ordered) the overwrite lands in place.
"""

from __future__ import annotations

import base64
import binascii
import errno
import fcntl
import hashlib
import hmac
import io
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from pbx.recording import bech32
from pbx.recording.journal import KeyJournal, header_id

__all__ = [
    "CHUNK_SIZE",
    "ENC_CHUNK_SIZE",
    "AgeError",
    "AgeFormatError",
    "AgeReader",
    "AgeWriter",
    "ChunkAuthError",
    "ChunkOrderError",
    "HeaderMacError",
    "Identity",
    "NoIdentityError",
    "NothingToRecoverError",
    "PayloadError",
    "PendingOutcome",
    "Recipient",
    "RecordingInProgressError",
    "RecoveryError",
    "RecoveryReport",
    "ScryptIdentity",
    "ScryptRecipient",
    "Stanza",
    "StorageError",
    "StorageFullError",
    "TrailingDataError",
    "TruncatedError",
    "WorkFactorError",
    "WriteResult",
    "X25519Identity",
    "X25519Recipient",
    "decrypt_bytes",
    "destroy_key_stanzas",
    "encrypt_bytes",
    "file_sha256",
    "read_header",
    "recover",
    "recover_pending",
    "shred",
]

VERSION_LINE = b"age-encryption.org/v1"
CHUNK_SIZE = 64 * 1024
TAG_SIZE = 16
ENC_CHUNK_SIZE = CHUNK_SIZE + TAG_SIZE
FILE_KEY_SIZE = 16
NONCE_SIZE = 16
_COLUMNS = 64
_MAX_HEADER = 1 << 20
_X25519_LABEL = b"age-encryption.org/v1/X25519"
_SCRYPT_LABEL = b"age-encryption.org/v1/scrypt"
_ZERO_NONCE = bytes(12)
_ARMOR_BEGIN = b"-----BEGIN AGE ENCRYPTED FILE-----"
_ARMOR_END = b"-----END AGE ENCRYPTED FILE-----"
# How far a failing chunk is compared with other positions to tell "moved" from "altered".
_REORDER_SEARCH_LIMIT = 4096


# ---------------------------------------------------------------------------------------------
# Errors: one hierarchy. Peer/file problems and local storage problems are different branches.


class AgeError(Exception):
    """Base of every error of this module."""


class AgeFormatError(AgeError):
    """Not an age v1 file, or its header is malformed."""


class WorkFactorError(AgeFormatError):
    """An scrypt stanza asks for more work than this reader allows."""


class NoIdentityError(AgeError):
    """None of the given identities opens any recipient stanza (wrong key or passphrase)."""


class HeaderMacError(AgeError):
    """The file key was unwrapped but the header MAC does not match: the header was altered."""


class PayloadError(AgeError):
    """A payload chunk is wrong; ``chunk`` is its index (0-based)."""

    def __init__(self, message: str, chunk: int) -> None:
        super().__init__(message)
        self.chunk = chunk


class ChunkAuthError(PayloadError):
    """A chunk fails authentication at its position: altered (or cut inside the last chunk)."""


class ChunkOrderError(PayloadError):
    """A chunk authenticates, but at another position: chunks were reordered or duplicated."""

    def __init__(self, message: str, chunk: int, belongs_at: int) -> None:
        super().__init__(message, chunk)
        self.belongs_at = belongs_at


class TruncatedError(PayloadError):
    """The file stops before its final chunk (a writer crash: see :func:`recover`)."""


class TrailingDataError(PayloadError):
    """Data follows the final chunk."""


class RecoveryError(AgeError):
    """A partial file cannot be recovered (no key for it, or damage that is not a torn tail)."""


class NothingToRecoverError(RecoveryError):
    """The file stops inside its header: it never held audio."""


class RecordingInProgressError(RecoveryError):
    """A live writer holds the file (its lock): it is not a crashed recording."""


class StorageError(AgeError):
    """Writing to the recording's file failed at the OS level; what was written is intact."""


class StorageFullError(StorageError):
    """The disk (or quota) is full: stop recording, keep the call, raise an alarm."""


# ---------------------------------------------------------------------------------------------
# Primitives


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt or None, info=info).derive(ikm)


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


_B64_RE = re.compile(rb"[A-Za-z0-9+/]*")


def _b64decode(text: bytes | str, what: str) -> bytes:
    """Strict unpadded base64: no padding, no stray bits, nothing outside the alphabet."""
    raw = text.encode() if isinstance(text, str) else text
    if not _B64_RE.fullmatch(raw) or len(raw) % 4 == 1:
        raise AgeFormatError(f"{what}: invalid base64")
    try:
        data = base64.b64decode(raw + b"=" * (-len(raw) % 4), validate=True)
    except binascii.Error as exc:
        raise AgeFormatError(f"{what}: invalid base64") from exc
    if _b64encode(data).encode() != raw:
        raise AgeFormatError(f"{what}: non-canonical base64")
    return data


def _chunk_nonce(counter: int, final: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


def _opens(aead: ChaCha20Poly1305, sealed: bytes, counter: int, final: bool) -> bool:
    try:
        aead.decrypt(_chunk_nonce(counter, final), sealed, None)
    except InvalidTag:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Stanzas, recipients and identities


@dataclass(frozen=True)
class Stanza:
    type: str
    args: tuple[str, ...]
    body: bytes


class Recipient(Protocol):
    """Wraps a file key into stanzas."""

    def wrap(self, file_key: bytes) -> list[Stanza]: ...


class Identity(Protocol):
    """Unwraps a file key from a header's stanzas; None when none of them is for it."""

    def unwrap(self, stanzas: Sequence[Stanza]) -> bytes | None: ...


class X25519Recipient:
    """A public key ``age1...``; recording needs only this."""

    __slots__ = ("public_key",)

    def __init__(self, public_key: bytes) -> None:
        if len(public_key) != 32:
            raise ValueError("an X25519 recipient is 32 bytes")
        self.public_key = public_key

    @classmethod
    def from_string(cls, text: str) -> X25519Recipient:
        try:
            hrp, data = bech32.decode(text.strip())
        except bech32.Bech32Error as exc:
            raise ValueError(f"recipient: {exc}") from None
        if hrp != "age" or len(data) != 32:
            raise ValueError("recipient: not an age X25519 recipient (age1...)")
        return cls(data)

    def __str__(self) -> str:
        return bech32.encode("age", self.public_key)

    def __repr__(self) -> str:
        return f"X25519Recipient({self})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, X25519Recipient) and other.public_key == self.public_key

    def __hash__(self) -> int:
        return hash(self.public_key)

    @property
    def fingerprint(self) -> str:
        """``sha256:`` + the first 16 bytes (hex) of SHA-256 over the ``age1...`` string."""
        return "sha256:" + hashlib.sha256(str(self).encode()).hexdigest()[:32]

    def wrap(self, file_key: bytes) -> list[Stanza]:
        ephemeral = X25519PrivateKey.generate()
        share = ephemeral.public_key().public_bytes_raw()
        shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(self.public_key))
        key = _hkdf(shared, share + self.public_key, _X25519_LABEL)
        body = ChaCha20Poly1305(key).encrypt(_ZERO_NONCE, file_key, None)
        return [Stanza("X25519", (_b64encode(share),), body)]


class X25519Identity:
    """A secret key ``AGE-SECRET-KEY-1...``. Its repr never shows the secret."""

    __slots__ = ("_key", "_public")

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 32:
            raise ValueError("an X25519 identity is 32 bytes")
        self._key = X25519PrivateKey.from_private_bytes(secret)
        self._public = self._key.public_key().public_bytes_raw()

    @classmethod
    def generate(cls) -> X25519Identity:
        return cls(X25519PrivateKey.generate().private_bytes_raw())

    @classmethod
    def from_string(cls, text: str) -> X25519Identity:
        text = text.strip()
        if text != text.upper():
            raise ValueError("identity: AGE-SECRET-KEY-1... must be upper case")
        try:
            hrp, data = bech32.decode(text)
        except bech32.Bech32Error as exc:
            raise ValueError(f"identity: {exc}") from None
        if hrp != "age-secret-key-" or len(data) != 32:
            raise ValueError("identity: not an age X25519 identity (AGE-SECRET-KEY-1...)")
        return cls(data)

    def secret_string(self) -> str:
        """The ``AGE-SECRET-KEY-1...`` text: handle as a secret."""
        return bech32.encode("age-secret-key-", self._key.private_bytes_raw()).upper()

    def recipient(self) -> X25519Recipient:
        return X25519Recipient(self._public)

    def __repr__(self) -> str:
        return f"X25519Identity(recipient={self.recipient()})"

    def unwrap(self, stanzas: Sequence[Stanza]) -> bytes | None:
        for stanza in stanzas:
            if stanza.type != "X25519":
                continue
            if len(stanza.args) != 1:
                raise AgeFormatError("X25519 stanza: expected one argument")
            share = _b64decode(stanza.args[0], "X25519 stanza share")
            if len(share) != 32 or len(stanza.body) != FILE_KEY_SIZE + TAG_SIZE:
                raise AgeFormatError("X25519 stanza: wrong share or body length")
            try:
                shared = self._key.exchange(X25519PublicKey.from_public_bytes(share))
            except ValueError as exc:  # low-order point: all-zero shared secret
                raise AgeFormatError("X25519 stanza: invalid share") from exc
            key = _hkdf(shared, share + self._public, _X25519_LABEL)
            try:
                return ChaCha20Poly1305(key).decrypt(_ZERO_NONCE, stanza.body, None)
            except InvalidTag:
                continue
        return None


def _scrypt_key(passphrase: bytes, salt: bytes, log_n: int) -> bytes:
    kdf = Scrypt(salt=_SCRYPT_LABEL + salt, length=32, n=1 << log_n, r=8, p=1)
    return kdf.derive(passphrase)


class ScryptRecipient:
    """A passphrase (``age -p``). Must be the only recipient of its file."""

    __slots__ = ("_passphrase", "work_factor")

    def __init__(self, passphrase: str | bytes, work_factor: int = 18) -> None:
        if not 1 <= work_factor <= 30:
            raise ValueError("scrypt work factor (log2 N) must be within 1..30")
        self._passphrase = passphrase.encode() if isinstance(passphrase, str) else passphrase
        self.work_factor = work_factor

    def __repr__(self) -> str:
        return f"ScryptRecipient(work_factor={self.work_factor})"

    def wrap(self, file_key: bytes) -> list[Stanza]:
        salt = os.urandom(16)
        key = _scrypt_key(self._passphrase, salt, self.work_factor)
        body = ChaCha20Poly1305(key).encrypt(_ZERO_NONCE, file_key, None)
        return [Stanza("scrypt", (_b64encode(salt), str(self.work_factor)), body)]


class ScryptIdentity:
    """A passphrase for decryption; refuses work factors above ``max_work_factor``."""

    __slots__ = ("_passphrase", "max_work_factor")

    def __init__(self, passphrase: str | bytes, max_work_factor: int = 22) -> None:
        self._passphrase = passphrase.encode() if isinstance(passphrase, str) else passphrase
        self.max_work_factor = max_work_factor

    def __repr__(self) -> str:
        return f"ScryptIdentity(max_work_factor={self.max_work_factor})"

    def unwrap(self, stanzas: Sequence[Stanza]) -> bytes | None:
        for stanza in stanzas:
            if stanza.type != "scrypt":
                continue
            if len(stanza.args) != 2 or not re.fullmatch(r"[1-9][0-9]?", stanza.args[1]):
                raise AgeFormatError("scrypt stanza: expected salt and work factor")
            salt = _b64decode(stanza.args[0], "scrypt stanza salt")
            log_n = int(stanza.args[1])
            if len(salt) != 16 or len(stanza.body) != FILE_KEY_SIZE + TAG_SIZE:
                raise AgeFormatError("scrypt stanza: wrong salt or body length")
            if log_n > self.max_work_factor:
                raise WorkFactorError(
                    f"scrypt work factor {log_n} is above the allowed {self.max_work_factor}"
                )
            key = _scrypt_key(self._passphrase, salt, log_n)
            try:
                return ChaCha20Poly1305(key).decrypt(_ZERO_NONCE, stanza.body, None)
            except InvalidTag:
                return None
        return None


# ---------------------------------------------------------------------------------------------
# Header


@dataclass(frozen=True)
class Header:
    stanzas: tuple[Stanza, ...]
    mac: bytes
    raw: bytes  # the header bytes as in the file, through the MAC line's newline
    # Byte range of the stanza lines inside ``raw`` (what retention overwrites).
    stanzas_start: int
    stanzas_end: int

    @property
    def mac_input(self) -> bytes:
        return self.raw[: self.stanzas_end + 3]

    @property
    def id(self) -> str:
        return header_id(self.raw)


def _header_mac(file_key: bytes, mac_input: bytes) -> bytes:
    return hmac.new(_hkdf(file_key, b"", b"header"), mac_input, hashlib.sha256).digest()


def _encode_header(stanzas: Sequence[Stanza], file_key: bytes) -> bytes:
    out = [VERSION_LINE, b"\n"]
    for stanza in stanzas:
        out.append(" ".join(("->", stanza.type, *stanza.args)).encode() + b"\n")
        body = _b64encode(stanza.body).encode()
        for i in range(0, len(body) + 1, _COLUMNS):  # always ends with a short (maybe empty) line
            out.append(body[i : i + _COLUMNS] + b"\n")
    mac_input = b"".join(out) + b"---"
    return mac_input + b" " + _b64encode(_header_mac(file_key, mac_input)).encode() + b"\n"


def _is_vchar_arg(arg: bytes) -> bool:
    return bool(arg) and all(0x21 <= b <= 0x7E for b in arg)


def _parse_header(raw: bytes) -> Header:
    """Parse ``raw``, which ends with the MAC line's newline."""
    lines = raw.split(b"\n")
    if lines[0] != VERSION_LINE:
        if lines[0].startswith(b"age-encryption.org/"):
            raise AgeFormatError(f"unsupported age version {lines[0][:40]!r}")
        raise AgeFormatError("not an age file (no age-encryption.org/v1 line)")
    stanzas: list[Stanza] = []
    i = 1
    stanzas_start = len(VERSION_LINE) + 1
    offset = stanzas_start
    while True:
        if i >= len(lines) - 1:
            raise AgeFormatError("header ends without a MAC line")
        line = lines[i]
        if line.startswith(b"--- "):
            break
        if not line.startswith(b"-> "):
            raise AgeFormatError(f"header line {i + 1}: expected a stanza or the MAC line")
        args = line[3:].split(b" ")
        if not all(_is_vchar_arg(a) for a in args):
            raise AgeFormatError(f"header line {i + 1}: malformed stanza arguments")
        offset += len(line) + 1
        i += 1
        body_lines = []
        while True:
            if i >= len(lines) - 1:
                raise AgeFormatError("header ends inside a stanza body")
            body_line = lines[i]
            if len(body_line) > _COLUMNS:
                raise AgeFormatError(f"header line {i + 1}: stanza body line over 64 columns")
            body_lines.append(body_line)
            offset += len(body_line) + 1
            i += 1
            if len(body_line) < _COLUMNS:
                break
        body = _b64decode(b"".join(body_lines), f"stanza {len(stanzas) + 1} body")
        decoded = [a.decode("ascii") for a in args]
        stanzas.append(Stanza(decoded[0], tuple(decoded[1:]), body))
    if not stanzas:
        raise AgeFormatError("header has no recipient stanza")
    if i != len(lines) - 2 or lines[-1] != b"":
        raise AgeFormatError("header does not end after the MAC line")
    mac = _b64decode(lines[i][4:], "header MAC")
    if len(mac) != 32:
        raise AgeFormatError("header MAC: wrong length")
    if any(s.type == "scrypt" for s in stanzas) and len(stanzas) != 1:
        raise AgeFormatError("an scrypt stanza must be the only stanza of its header")
    return Header(tuple(stanzas), mac, raw, stanzas_start, offset)


def _read_raw_header(source: BinaryIO) -> bytes:
    """Read from position 0 through the MAC line; leaves the position after it."""
    source.seek(0)
    buf = b""
    while True:
        at = buf.find(b"\n---")
        end = buf.find(b"\n", at + 1) if at >= 0 else -1
        if end >= 0:
            source.seek(end + 1)
            return buf[: end + 1]
        prefix = b"age-encryption.org/"
        if buf[: len(prefix)] != prefix[: len(buf)]:
            raise AgeFormatError("not an age file (no age-encryption.org/v1 line)")
        if len(buf) > _MAX_HEADER:
            raise AgeFormatError("header is larger than 1 MiB")
        block = source.read(4096)
        if not block:
            if not buf:
                raise AgeFormatError("empty file: not an age file")
            raise TruncatedError("file ends inside the header", 0)
        buf += block


def read_header(source: BinaryIO) -> Header:
    """Parse the header of an age file (position left at the payload nonce)."""
    return _parse_header(_read_raw_header(source))


def _unwrap(header: Header, identities: Sequence[Identity]) -> bytes:
    if not identities:
        raise NoIdentityError("no identity given")
    for identity in identities:
        file_key = identity.unwrap(header.stanzas)
        if file_key is not None:
            _check_mac(header, file_key)
            return file_key
    kinds = ", ".join(sorted({s.type for s in header.stanzas}))
    raise NoIdentityError(
        f"none of the {len(identities)} identities opens any of the file's "
        f"{len(header.stanzas)} recipient stanzas ({kinds}): wrong key or passphrase"
    )


def _check_mac(header: Header, file_key: bytes) -> None:
    if not hmac.compare_digest(_header_mac(file_key, header.mac_input), header.mac):
        raise HeaderMacError("header MAC mismatch: the header was altered")


def _dearmor(source: BinaryIO) -> BinaryIO | None:
    """If ``source`` is ASCII-armored (``age -a``), return the binary file in memory."""
    source.seek(0)
    start = source.read(len(_ARMOR_BEGIN))
    if start != _ARMOR_BEGIN:
        return None
    text = (start + source.read()).strip(b" \t\r\n")
    lines = text.replace(b"\r\n", b"\n").split(b"\n")
    if lines[0] != _ARMOR_BEGIN or lines[-1] != _ARMOR_END:
        raise AgeFormatError("armored file lacks its BEGIN/END lines")
    body = lines[1:-1]
    if any(len(line) > _COLUMNS for line in body) or any(
        len(line) != _COLUMNS for line in body[:-1]
    ):
        raise AgeFormatError("armored file: malformed base64 lines")
    try:
        return io.BytesIO(base64.b64decode(b"".join(body), validate=True))
    except binascii.Error as exc:
        raise AgeFormatError("armored file: invalid base64") from exc


# ---------------------------------------------------------------------------------------------
# Writer


@dataclass(frozen=True)
class WriteResult:
    """What a closed writer produced: what the metadata database stores."""

    ciphertext_size: int
    plaintext_size: int
    chunks: int
    sha256: str  # hex SHA-256 of the whole ciphertext file


class AgeWriter:
    """Streaming encryptor: ``write()`` as audio arrives, ``close()`` at the end of the call.

    ``sink`` is a binary file open for writing (and reading, for :meth:`salvage`), positioned at
    its start; :meth:`create` opens one properly. Several recipients are allowed (site key plus
    escrow); a passphrase recipient must be alone. With a ``journal``, the file key is kept
    there until close (see the module docstring); ``name`` is the path recorded with it.

    As a context manager it closes on success; on an exception it only aborts (the file stays
    as a crash would leave it, recoverable from the journal). Not thread-safe; ``write`` never
    waits for the disk, ``close`` fsyncs (run it off the event loop).
    """

    def __init__(
        self,
        sink: BinaryIO,
        recipients: Sequence[Recipient],
        *,
        journal: KeyJournal | None = None,
        name: str | None = None,
        sync_every: int = 0,
        close_sink: bool = False,
        keep_head: bool = False,
    ) -> None:
        if not recipients:
            raise ValueError("recipients: at least one is required")
        file_key = os.urandom(FILE_KEY_SIZE)
        stanzas = [s for r in recipients for s in r.wrap(file_key)]
        if any(s.type == "scrypt" for s in stanzas) and len(stanzas) != 1:
            raise ValueError("recipients: a passphrase recipient must be the only one")
        header = _encode_header(stanzas, file_key)
        nonce = os.urandom(NONCE_SIZE)
        self._sink = sink
        self._close_sink = close_sink
        self._aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
        self._buffer = bytearray()
        self._counter = 0
        self._offset = 0
        self._plaintext_size = 0
        self._sha = hashlib.sha256()
        self._sync_every = sync_every
        self._keep_head = keep_head
        self._head: bytes | None = None  # chunk 0's plaintext, when keep_head
        self._state = "open"
        self.header_id = header_id(header)
        self.payload_start = len(header) + NONCE_SIZE
        self._start = self.payload_start  # file offset of chunk 0 (the sink starts at 0)
        self._journal = journal
        if journal is not None:
            journal.put(self.header_id, file_key, name or str(getattr(sink, "name", "")))
        try:
            self._emit(header + nonce)
            self._fsync()
        except StorageError:
            if journal is not None:  # no header on disk: nothing to recover later
                journal.remove(self.header_id)
            raise

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        recipients: Sequence[Recipient],
        *,
        journal: KeyJournal | None = None,
        sync_every: int = 0,
        mode: int = 0o640,
        keep_head: bool = False,
    ) -> AgeWriter:
        """Create ``path`` (it must not exist) and start writing; its folder is fsynced."""
        path = Path(path)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        except OSError as exc:
            raise _storage_error(exc, f"cannot create {path}") from exc
        sink = os.fdopen(fd, "r+b", buffering=0)
        try:
            # Held until close or process death: recovery refuses a file a live writer holds.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            writer = cls(
                sink,
                recipients,
                journal=journal,
                name=str(path.resolve()),
                sync_every=sync_every,
                close_sink=True,
                keep_head=keep_head,
            )
            _fsync_dir(path.parent)
        except BaseException:
            sink.close()
            path.unlink(missing_ok=True)
            raise
        return writer

    @property
    def plaintext_size(self) -> int:
        return self._plaintext_size

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Encrypt ``data``; every chunk that fills (and is not the last) goes to the OS now."""
        if self._state != "open":
            raise ValueError(f"write on a {self._state} recording writer")
        pending = memoryview(data).cast("B")
        size = len(pending)
        self._plaintext_size += size
        # Seal a full chunk only once a byte beyond it exists: the last chunk may be full.
        while len(self._buffer) + len(pending) > CHUNK_SIZE:
            take = CHUNK_SIZE - len(self._buffer)
            if self._buffer:
                chunk: bytes | memoryview = bytes(self._buffer) + pending[:take]
                self._buffer.clear()
            else:
                chunk = pending[:take]
            pending = pending[take:]
            self._seal(chunk, final=False)
            if self._sync_every and self._counter % self._sync_every == 0:
                self._fsync()
        self._buffer += pending
        return size

    def close(self, head: bytes | None = None) -> WriteResult:
        """Write the final chunk, fsync, forget the journalled key; returns size and SHA-256.

        ``head`` replaces the first ``len(head)`` plaintext bytes (a WAV header whose lengths
        are known only now). Once chunk 0 is on disk this needs a seekable, readable sink (as
        :meth:`create` makes): chunk 0 is read back (or kept in memory with ``keep_head``),
        re-sealed in place, and the SHA-256 is computed by reading the file back.
        """
        if self._state != "open":
            raise ValueError(f"close of a {self._state} recording writer")
        if head is not None and len(head) > min(CHUNK_SIZE, self._plaintext_size):
            raise ValueError("head: longer than the first chunk or than what was written")
        if head is not None and self._counter == 0:
            self._buffer[: len(head)] = head
            head = None
        first = self._first_chunk() if head is not None else b""
        self._seal(bytes(self._buffer), final=True)
        self._buffer.clear()
        digest = self._sha.hexdigest()
        if head is not None:
            sealed = self._aead.encrypt(_chunk_nonce(0, False), head + first[len(head) :], None)
            try:
                self._sink.seek(self._start)
                self._write_all(sealed)
                digest = self._sink_sha256()
            except OSError as exc:
                self._state = "failed"
                raise _storage_error(exc, "rewriting the recording's head failed") from exc
        self._fsync()
        self._finish()
        return WriteResult(self._offset, self._plaintext_size, self._counter, digest)

    def _first_chunk(self) -> bytes:
        """Chunk 0's plaintext: kept in memory (``keep_head``) or read back from the sink."""
        try:
            self._sink.seek(self._start)
            sealed = b"" if self._head is not None else self._sink.read(ENC_CHUNK_SIZE)
            self._sink.seek(self._offset)
        except (OSError, ValueError) as exc:  # io.UnsupportedOperation is both
            raise ValueError("head: the sink must be seekable and readable") from exc
        if self._head is not None:
            return self._head
        try:
            return self._aead.decrypt(_chunk_nonce(0, False), sealed, None)
        except InvalidTag:
            raise ChunkAuthError("chunk 0 changed on disk while recording", 0) from None

    def _sink_sha256(self) -> str:
        digest = hashlib.sha256()
        self._sink.seek(0)
        while block := self._sink.read(1 << 20):
            digest.update(block)
        return digest.hexdigest()

    def salvage(self, head: Callable[[int], bytes] | None = None) -> RecoveryReport:
        """After a :class:`StorageError`: finalize the file at its last complete chunk.

        ``head`` as for :func:`recover`.
        """
        if self._state == "closed":
            raise ValueError("salvage of a closed recording writer")
        self._state = "failed"
        try:
            report = _finalize_tail(
                self._sink.fileno(), self.payload_start, self._aead, self._counter, head
            )
        except OSError as exc:
            raise _storage_error(exc, "salvaging the recording failed") from exc
        self._finish()
        return report

    def abort(self) -> None:
        """Stop without finalizing (the file stays recoverable from the journal)."""
        self._state = "closed"
        self._buffer.clear()
        self._head = None
        if self._close_sink:
            self._sink.close()

    def __enter__(self) -> AgeWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if self._state == "open" and exc_type is None:
            self.close()
        elif self._state != "closed":
            self.abort()

    def _finish(self) -> None:
        self._state = "closed"
        self._head = None
        if self._close_sink:
            self._sink.close()
        if self._journal is not None:
            self._journal.remove(self.header_id)

    def _seal(self, chunk: bytes | memoryview, final: bool) -> None:
        if self._counter == 0 and self._keep_head:
            self._head = bytes(chunk)
        self._emit(self._aead.encrypt(_chunk_nonce(self._counter, final), chunk, None))
        self._counter += 1

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self._sink.write(view)
            if written is None:  # a non-blocking raw file: not supported, fail loudly
                raise BlockingIOError(errno.EAGAIN, "sink would block")
            view = view[written:]
        self._sink.flush()

    def _emit(self, data: bytes) -> None:
        try:
            self._write_all(data)
        except OSError as exc:
            self._state = "failed"
            raise _storage_error(exc, "writing the recording failed") from exc
        self._sha.update(data)
        self._offset += len(data)

    def _fsync(self) -> None:
        try:
            fileno = self._sink.fileno()
        except (OSError, AttributeError, ValueError):
            return  # an in-memory sink (tests)
        try:
            os.fsync(fileno)
        except OSError as exc:
            self._state = "failed"
            raise _storage_error(exc, "fsync of the recording failed") from exc


def _storage_error(exc: OSError, message: str) -> StorageError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFullError(f"{message}: disk full")
    return StorageError(f"{message}: {exc.strerror or exc}")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def encrypt_bytes(plaintext: bytes, recipients: Sequence[Recipient]) -> bytes:
    """Encrypt a small in-memory message (identity files, tests)."""
    sink = io.BytesIO()
    writer = AgeWriter(sink, recipients)
    writer.write(plaintext)
    writer.close()
    return sink.getvalue()


def decrypt_bytes(ciphertext: bytes, identities: Sequence[Identity]) -> bytes:
    """Decrypt a small in-memory age file."""
    with AgeReader(io.BytesIO(ciphertext), identities) as reader:
        return reader.read()


# ---------------------------------------------------------------------------------------------
# Reader


class AgeReader:
    """Random-access decryptor of a seekable age file.

    Opening parses the header, unwraps the file key with the first identity that fits, checks
    the header MAC and authenticates the last chunk, so :attr:`size` (the plaintext length) is
    proven. ``read``/``seek``/``tell`` behave like a read-only binary file; :meth:`iter_range`
    yields a byte range chunk by chunk (for HTTP Range responses).
    """

    def __init__(
        self, source: BinaryIO, identities: Sequence[Identity], *, close_source: bool = False
    ) -> None:
        armored = _dearmor(source)
        if armored is not None:
            if close_source:
                source.close()
            source, close_source = armored, True
        self._source = source
        self._close_source = close_source
        self.header = read_header(source)
        file_key = _unwrap(self.header, identities)
        nonce = source.read(NONCE_SIZE)
        if len(nonce) != NONCE_SIZE:
            raise TruncatedError("file ends inside the payload nonce", 0)
        self._aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
        self._payload_start = len(self.header.raw) + NONCE_SIZE
        payload = source.seek(0, os.SEEK_END) - self._payload_start
        if payload == 0:
            raise TruncatedError("file has no payload chunk", 0)
        self.chunk_count = -(-payload // ENC_CHUNK_SIZE)
        last_len = payload - (self.chunk_count - 1) * ENC_CHUNK_SIZE
        if last_len < TAG_SIZE:
            raise TruncatedError(
                f"last chunk is {last_len} bytes, shorter than its tag: file cut short",
                self.chunk_count - 1,
            )
        if last_len == TAG_SIZE and self.chunk_count > 1:
            raise ChunkAuthError("last chunk is empty (only allowed in an empty file)", 0)
        self.size = payload - self.chunk_count * TAG_SIZE
        self._position = 0
        self._cache: tuple[int, bytes] | None = None
        self.read_chunk(self.chunk_count - 1)  # proves the size and that the file is final

    @classmethod
    def open(cls, path: str | os.PathLike[str], identities: Sequence[Identity]) -> AgeReader:
        source = open(path, "rb")  # noqa: SIM115 - owned by the reader
        try:
            return cls(source, identities, close_source=True)
        except BaseException:
            source.close()
            raise

    def read_chunk(self, index: int) -> bytes:
        """Decrypt and authenticate chunk ``index`` (0-based)."""
        if not 0 <= index < self.chunk_count:
            raise IndexError(f"chunk {index} out of range 0..{self.chunk_count - 1}")
        if self._cache is not None and self._cache[0] == index:
            return self._cache[1]
        sealed = self._sealed(index)
        final = index == self.chunk_count - 1
        try:
            plain = self._aead.decrypt(_chunk_nonce(index, final), sealed, None)
        except InvalidTag:
            raise self._diagnose(index, sealed) from None
        self._cache = (index, plain)
        return plain

    def _sealed(self, index: int) -> bytes:
        self._source.seek(self._payload_start + index * ENC_CHUNK_SIZE)
        return self._source.read(ENC_CHUNK_SIZE)

    def _opens(self, sealed: bytes, counter: int, final: bool) -> bool:
        return _opens(self._aead, sealed, counter, final)

    def _diagnose(self, index: int, sealed: bytes) -> PayloadError:
        final = index == self.chunk_count - 1
        if final and self._opens(sealed, index, False):
            return TruncatedError(
                f"file stops after chunk {index}, which is not the final one: "
                "truncated (a writer crash? see recover)",
                index,
            )
        if final and index > 0 and self._opens(self._sealed(index - 1), index - 1, True):
            return TrailingDataError(
                f"chunk {index - 1} is marked final but data follows it", index - 1
            )
        if not final and self._opens(sealed, index, True):
            return TrailingDataError(
                f"chunk {index} is marked final but {self.chunk_count - 1 - index} chunks follow",
                index,
            )
        low = max(0, index - _REORDER_SEARCH_LIMIT // 2)
        for counter in range(low, min(self.chunk_count, low + _REORDER_SEARCH_LIMIT)):
            if counter != index and (
                self._opens(sealed, counter, False) or self._opens(sealed, counter, True)
            ):
                return ChunkOrderError(
                    f"chunk {index} holds the data of chunk {counter}: chunks reordered",
                    index,
                    counter,
                )
        where = "the last chunk" if final else f"chunk {index}"
        hint = " (or the file was cut inside it)" if final else ""
        return ChunkAuthError(f"{where} fails authentication: altered{hint}", index)

    def iter_range(self, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        """Yield plaintext ``[start, stop)`` piece by piece, decrypting only the chunks needed."""
        stop = self.size if stop is None else min(stop, self.size)
        if start < 0 or start > stop:
            raise ValueError(f"range {start}..{stop} is outside 0..{self.size}")
        position = start
        while position < stop:
            index, skip = divmod(position, CHUNK_SIZE)
            piece = self.read_chunk(index)[skip : skip + stop - position]
            position += len(piece)
            yield piece

    def read(self, size: int = -1) -> bytes:
        stop = self.size if size < 0 else min(self.size, self._position + size)
        data = b"".join(self.iter_range(min(self._position, stop), stop))
        self._position = max(self._position, stop)
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._position = base + offset
        return self._position

    def tell(self) -> int:
        return self._position

    def verify(self) -> int:
        """Authenticate every chunk in order; returns the plaintext size."""
        for index in range(self.chunk_count):
            self.read_chunk(index)
        return self.size

    def close(self) -> None:
        if self._close_source:
            self._source.close()

    def __enter__(self) -> AgeReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# Recovery


@dataclass(frozen=True)
class RecoveryReport:
    """What :func:`recover` (or :meth:`AgeWriter.salvage`) did to a file."""

    already_final: bool  # the file was a complete age file; nothing was changed
    chunks: int  # chunks in the finalized file
    plaintext_size: int  # plaintext bytes they hold
    discarded_bytes: int  # ciphertext bytes cut from the tail (a torn chunk)
    ciphertext_size: int
    sha256: str  # hex SHA-256 of the finalized file


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes (what the metadata database stores; needs no key)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return _file_sha256(fd)
    finally:
        os.close(fd)


def _file_sha256(fd: int) -> str:
    digest = hashlib.sha256()
    offset = 0
    while block := os.pread(fd, 1 << 20, offset):
        digest.update(block)
        offset += len(block)
    return digest.hexdigest()


def _finalize_tail(
    fd: int,
    payload_start: int,
    aead: ChaCha20Poly1305,
    keep: int,
    head: Callable[[int], bytes] | None = None,
) -> RecoveryReport:
    """Cut the file after ``keep`` complete chunks and mark the last one final.

    ``head(size)`` gives the bytes to put at plaintext offset 0 for a file of ``size`` bytes.
    """
    original = os.fstat(fd).st_size
    end = payload_start + keep * ENC_CHUNK_SIZE
    plaintext = keep * CHUNK_SIZE
    patch = head(plaintext) if head is not None and plaintext else b""
    if len(patch) > min(CHUNK_SIZE, plaintext):
        raise ValueError("head: longer than the first chunk")
    # Truncate first: a crash between the two steps leaves a file recovery still understands.
    os.ftruncate(fd, end)
    os.fsync(fd)
    if keep == 0:
        os.pwrite(fd, aead.encrypt(_chunk_nonce(0, True), b"", None), end)
    for index in sorted({keep - 1, 0} if patch else {keep - 1}):
        if index < 0:
            continue
        at = payload_start + index * ENC_CHUNK_SIZE
        plain = aead.decrypt(_chunk_nonce(index, False), os.pread(fd, ENC_CHUNK_SIZE, at), None)
        if index == 0 and patch:
            plain = patch + plain[len(patch) :]
        os.pwrite(fd, aead.encrypt(_chunk_nonce(index, index == keep - 1), plain, None), at)
    os.fsync(fd)
    size = os.fstat(fd).st_size
    return RecoveryReport(
        already_final=False,
        chunks=max(keep, 1),
        plaintext_size=plaintext,
        discarded_bytes=max(0, original - end),
        ciphertext_size=size,
        sha256=_file_sha256(fd),
    )


def recover(
    path: str | os.PathLike[str],
    *,
    journal: KeyJournal | None = None,
    identities: Sequence[Identity] = (),
    head: Callable[[int], bytes] | None = None,
) -> RecoveryReport:
    """Turn a recording cut short by a crash into a valid, finalized age file.

    ``head(size)``, if given, returns the bytes to write at plaintext offset 0 once the
    recovered size is known (the recorder's WAV header); it is not called for a file that was
    already final or holds nothing.

    The file key comes from the ``journal`` (after a process crash) or from ``identities``
    (the unlocked site identity, after a power loss). Keeps every chunk that authenticates,
    cuts a torn tail, marks the last kept chunk final. A complete file is left untouched
    (``already_final``). Damage before the tail is refused (:class:`RecoveryError`): that is
    not a crash, and cutting there would destroy evidence.
    """
    with open(path, "r+b") as source:
        try:
            fcntl.flock(source.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RecordingInProgressError(f"{path}: a live writer holds it") from None
        if os.fstat(source.fileno()).st_size == 0:
            raise NothingToRecoverError(f"{path}: empty (the writer died before the header)")
        try:
            header = read_header(source)
        except TruncatedError as exc:
            raise NothingToRecoverError(f"{path}: the header is incomplete; no audio") from exc
        file_key = journal.get(header.id) if journal is not None else None
        if file_key is not None:
            _check_mac(header, file_key)
        elif identities:
            file_key = _unwrap(header, identities)
        else:
            raise RecoveryError(
                f"{path}: no key: not in the key journal (power loss or reboot?); "
                "unlock the site identity and recover with it"
            )
        fd = source.fileno()
        payload_start = len(header.raw) + NONCE_SIZE
        nonce = os.pread(fd, NONCE_SIZE, len(header.raw))
        if len(nonce) < NONCE_SIZE:
            # Crashed between header and nonce: any nonce will do, there is no chunk yet.
            nonce = os.urandom(NONCE_SIZE)
            os.ftruncate(fd, len(header.raw))
            os.pwrite(fd, nonce, len(header.raw))
        aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
        size = os.fstat(fd).st_size
        keep = 0
        offset = payload_start
        while offset < size:
            sealed = os.pread(fd, ENC_CHUNK_SIZE, offset)
            at_end = offset + len(sealed) == size
            if len(sealed) == ENC_CHUNK_SIZE and _opens(aead, sealed, keep, False):
                keep += 1
                offset += ENC_CHUNK_SIZE
                continue
            if _opens(aead, sealed, keep, True) and (keep == 0 or len(sealed) > TAG_SIZE):
                # The writer had closed the file; anything after its final chunk is foreign.
                end = offset + len(sealed)
                if not at_end:
                    os.ftruncate(fd, end)
                    os.fsync(fd)
                if journal is not None:
                    journal.remove(header.id)
                return RecoveryReport(
                    already_final=at_end,
                    chunks=keep + 1,
                    plaintext_size=keep * CHUNK_SIZE + len(sealed) - TAG_SIZE,
                    discarded_bytes=size - end,
                    ciphertext_size=end,
                    sha256=_file_sha256(fd),
                )
            following = os.pread(fd, ENC_CHUNK_SIZE, offset + ENC_CHUNK_SIZE)
            if following and (
                _opens(aead, following, keep + 1, False) or _opens(aead, following, keep + 1, True)
            ):
                raise RecoveryError(
                    f"{path}: chunk {keep} is damaged but later chunks are intact: "
                    "not a crash; refusing to cut the file"
                )
            break  # a torn tail: everything from here was never completely written
        try:
            report = _finalize_tail(fd, payload_start, aead, keep, head)
        except OSError as exc:
            raise _storage_error(exc, f"{path}: finalizing failed") from exc
    if journal is not None:
        journal.remove(header.id)
    return report


@dataclass(frozen=True)
class PendingOutcome:
    """What :func:`recover_pending` did with one key journal entry."""

    path: str
    report: RecoveryReport | None  # None: not recovered (see ``error``) or the file is gone
    error: str = ""  # why it was not recovered


def recover_pending(
    journal: KeyJournal,
    *,
    identities: Sequence[Identity] = (),
    head: Callable[[int], bytes] | None = None,
) -> list[PendingOutcome]:
    """Recover every recording the journal says was not closed (the recorder runs this at start).

    Entries whose file is gone, or holds no complete header (no audio), are dropped; entries
    that fail otherwise stay in the journal for a later attempt with ``identities``. Files a
    live writer still holds are skipped (:class:`RecordingInProgressError`).
    """
    outcomes = []
    for entry in journal.pending():
        try:
            report = recover(entry.path, journal=journal, identities=identities, head=head)
        except FileNotFoundError:
            journal.remove(entry.header_id)
            outcomes.append(PendingOutcome(entry.path, None, "the file is gone"))
        except (AgeError, OSError) as exc:
            if isinstance(exc, NothingToRecoverError):
                journal.remove(entry.header_id)
            outcomes.append(PendingOutcome(entry.path, None, str(exc)))
        else:
            outcomes.append(PendingOutcome(entry.path, report))
    return outcomes


# ---------------------------------------------------------------------------------------------
# Retention


def destroy_key_stanzas(path: str | os.PathLike[str]) -> int:
    """Overwrite the recipient stanzas of ``path`` in place with random bytes and fsync.

    Afterwards no identity can unwrap the file key: the file is noise. Returns the number of
    bytes overwritten.
    """
    with open(path, "r+b") as target:
        header = read_header(target)
        length = header.stanzas_end - header.stanzas_start
        os.pwrite(target.fileno(), os.urandom(length), header.stanzas_start)
        os.fsync(target.fileno())
    return length


def shred(path: str | os.PathLike[str]) -> bool:
    """Destroy the key stanzas, then unlink (and fsync the folder). False if already gone.

    A file that is not an age file is unlinked all the same: there is no key to destroy.
    """
    path = Path(path)
    try:
        destroy_key_stanzas(path)
    except FileNotFoundError:
        return False
    except AgeError:
        pass
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    _fsync_dir(path.parent)
    return True
