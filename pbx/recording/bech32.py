"""Bech32 (BIP-173), the text encoding of age keys: ``age1...`` recipients and
``AGE-SECRET-KEY-1...`` identities.

Plain Bech32 (checksum constant 1), not Bech32m. The 90-character limit of BIP-173 holds for
both age key kinds (62 and 74 characters), so it is enforced. Decoding refuses mixed case, as
BIP-173 requires; a whole upper-case string (how age prints identities) is accepted.
"""

from __future__ import annotations

__all__ = ["Bech32Error", "decode", "encode"]

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_VALUES = {c: i for i, c in enumerate(_CHARSET)}
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
_MAX_LENGTH = 90


class Bech32Error(ValueError):
    """A string is not valid Bech32 (bad character, case, checksum or padding)."""


def _polymod(values: list[int]) -> int:
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i, gen in enumerate(_GENERATOR):
            if (top >> i) & 1:
                chk ^= gen
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: bytes | list[int], from_bits: int, to_bits: int, pad: bool) -> list[int]:
    acc = 0
    bits = 0
    out: list[int] = []
    max_value = (1 << to_bits) - 1
    for value in data:
        acc = (acc << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & max_value)
    if pad:
        if bits:
            out.append((acc << (to_bits - bits)) & max_value)
    elif bits >= from_bits or (acc << (to_bits - bits)) & max_value:
        raise Bech32Error("invalid padding in the data part")
    return out


def encode(hrp: str, data: bytes) -> str:
    """Encode ``data`` under the human-readable part ``hrp`` (lower case result)."""
    if not hrp or any(not 33 <= ord(c) <= 126 for c in hrp) or hrp != hrp.lower():
        raise Bech32Error(f"invalid human-readable part {hrp!r}")
    words = _convert_bits(data, 8, 5, pad=True)
    poly = _polymod([*_hrp_expand(hrp), *words, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(poly >> 5 * (5 - i)) & 31 for i in range(6)]
    text = hrp + "1" + "".join(_CHARSET[w] for w in words + checksum)
    if len(text) > _MAX_LENGTH:
        raise Bech32Error(f"encoding is {len(text)} characters, over the limit of {_MAX_LENGTH}")
    return text


def decode(text: str) -> tuple[str, bytes]:
    """Decode a Bech32 string into (lower-case hrp, data bytes)."""
    if len(text) > _MAX_LENGTH:
        raise Bech32Error(f"string is {len(text)} characters, over the limit of {_MAX_LENGTH}")
    if text.lower() != text and text.upper() != text:
        raise Bech32Error("mixed upper and lower case")
    if any(not 33 <= ord(c) <= 126 for c in text):
        raise Bech32Error("character outside the printable ASCII range")
    text = text.lower()
    sep = text.rfind("1")
    if sep < 1 or sep + 7 > len(text):
        raise Bech32Error("separator '1' missing or data part too short")
    hrp, rest = text[:sep], text[sep + 1 :]
    try:
        words = [_VALUES[c] for c in rest]
    except KeyError as exc:
        raise Bech32Error(f"invalid character {exc.args[0]!r} in the data part") from None
    if _polymod([*_hrp_expand(hrp), *words]) != 1:
        raise Bech32Error("checksum mismatch")
    return hrp, bytes(_convert_bits(words[:-6], 5, 8, pad=False))
