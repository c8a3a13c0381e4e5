"""The site identity for recordings: an age X25519 key pair, and its passphrase-protected export.

Both are in the standard age formats, so the stock `age` tool reads them: the identity is an
``AGE-SECRET-KEY-1...`` line, its recipient ``age1...``; the export is an age v1 file with a
single scrypt stanza (https://age-encryption.org/v1). When the recording branch's age module
lands, this file should delegate to it; the formats are the same.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
CHUNK = 64 * 1024
SCRYPT_LOG_N = 18  # age's default work factor for passphrases


def _polymod(values: list[int]) -> int:
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= _GENERATOR[i] if (top >> i) & 1 else 0
    return chk


def _convert_bits(data: bytes) -> list[int]:
    acc, bits, out = 0, 0, []
    for byte in data:
        acc = (acc << 8) | byte
        bits += 8
        while bits >= 5:
            bits -= 5
            out.append((acc >> bits) & 31)
    if bits:
        out.append((acc << (5 - bits)) & 31)
    return out


def bech32_encode(hrp: str, data: bytes) -> str:
    """BIP 173 bech32 (not bech32m), as age uses it; no length limit."""
    words = _convert_bits(data)
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    poly = _polymod([*expanded, *words, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(poly >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[w] for w in words + checksum)


def new_identity() -> tuple[str, str]:
    """A fresh (identity, recipient) pair as age-keygen would print them."""
    key = X25519PrivateKey.generate()
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return bech32_encode("age-secret-key-", raw).upper(), bech32_encode("age", public)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt, info).derive(ikm)


def encrypt_with_passphrase(plaintext: bytes, passphrase: str, log_n: int = SCRYPT_LOG_N) -> bytes:
    """An age v1 file readable with ``age -d`` and the passphrase."""
    file_key = secrets.token_bytes(16)
    salt = secrets.token_bytes(16)
    wrap_key = hashlib.scrypt(
        passphrase.encode(),
        salt=b"age-encryption.org/v1/scrypt" + salt,
        n=1 << log_n,
        r=8,
        p=1,
        maxmem=256 * 1024 * 1024 + (128 * 8 << log_n),
        dklen=32,
    )
    body = ChaCha20Poly1305(wrap_key).encrypt(bytes(12), file_key, None)
    header = f"age-encryption.org/v1\n-> scrypt {_b64(salt)} {log_n}\n{_b64(body)}\n---"
    mac = hmac.new(_hkdf(file_key, b"", b"header"), header.encode(), "sha256").digest()
    nonce = os.urandom(16)
    aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
    chunks = [plaintext[i : i + CHUNK] for i in range(0, len(plaintext), CHUNK)] or [b""]
    payload = b"".join(
        aead.encrypt(
            i.to_bytes(11, "big") + (b"\x01" if i == len(chunks) - 1 else b"\x00"), c, None
        )
        for i, c in enumerate(chunks)
    )
    return f"{header} {_b64(mac)}\n".encode() + nonce + payload
