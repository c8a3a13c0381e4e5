"""Bech32 (BIP-173) against the BIP's own vectors and as a round trip."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbx.recording import bech32

# Valid and invalid strings listed in BIP-173.
VALID = [
    "A12UEL5L",
    "a12uel5l",
    "an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1tt5tgs",
    "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
    "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w",
    "?1ezyfcl",
]
INVALID = [
    "pzry9x0s0muk",  # no separator
    "1pzry9x0s0muk",  # empty hrp
    "x1b4n0q5v",  # invalid data character
    "li1dgmt3",  # too short checksum
    "A1G7SGD8",  # checksum computed with upper-case hrp
    "10a06t8",  # empty hrp
    "1qzzfhee",  # empty hrp
    "a12UEL5L",  # mixed case
]


@pytest.mark.parametrize("text", VALID)
def test_bip173_valid(text: str) -> None:
    hrp, data = bech32.decode(text)
    assert hrp == text.lower()[: text.rfind("1")]
    assert bech32.encode(hrp, data) == text.lower()


@pytest.mark.parametrize("text", INVALID)
def test_bip173_invalid(text: str) -> None:
    with pytest.raises(bech32.Bech32Error):
        bech32.decode(text)


@given(st.binary(max_size=40), st.sampled_from(["age", "age-secret-key-", "x"]))
def test_round_trip(data: bytes, hrp: str) -> None:
    assert bech32.decode(bech32.encode(hrp, data)) == (hrp, data)


@given(st.binary(min_size=32, max_size=32), st.integers(min_value=4), st.integers(0, 31))
def test_any_single_character_change_is_caught(data: bytes, position: int, shift: int) -> None:
    text = bech32.encode("age", data)
    position = 4 + position % (len(text) - 4)
    alphabet = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
    replacement = alphabet[(alphabet.index(text[position]) + 1 + shift % 31) % 32]
    with pytest.raises(bech32.Bech32Error):
        bech32.decode(text[:position] + replacement + text[position + 1 :])
