"""Checks on the SIP torture-test fixture set itself (RFC 4475 and RFC 5118).

These tests exercise no SIP code: they make sure the files in tests/data/torture are the
RFC's bytes, that manifest.json describes exactly those files, and that what the manifest
says about each message (Content-Length, line ends, framing quirks) is true of its bytes.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import re
import tarfile
from functools import cache
from pathlib import Path

import pytest

TORTURE = Path(__file__).resolve().parents[1] / "data" / "torture"
MANIFEST = TORTURE / "manifest.json"
ARCHIVES = {
    "4475": TORTURE / "archive" / "rfc4475-appendix-a.b64",
    "5118": TORTURE / "archive" / "rfc5118-appendix-a.b64",
}

KINDS = {"request", "response"}
LAYERS = {"syntax", "transaction", "application", "compat"}
KNOWN_QUIRKS = {
    "archive_differs_from_body_text",
    "archive_lf_converted_to_crlf",
    "binary_body",
    "content_length_mismatch_in_rfc",
    "no_content_length",
    "no_empty_line_after_headers",
    "trailing_octets_after_body",
}
# Quirks that explain why a syntactically valid message's Content-Length is not its body size.
CL_EXCUSES = {"trailing_octets_after_body", "no_content_length", "content_length_mismatch_in_rfc"}
KEYS = {
    "rfc",
    "title",
    "kind",
    "valid_syntax",
    "reaction",
    "layer",
    "lenient_ok",
    "notes",
    "content_length",
    "quirks",
    "source",
    "octets",
}
CONTENT_LENGTH = re.compile(
    rb"^(?:content-length|l)[ \t]*:[ \t]*(\S*)", re.IGNORECASE | re.MULTILINE
)
BARE_LF = re.compile(rb"(?<!\r)\n")
BARE_CR = re.compile(rb"\r(?!\n)")


@cache
def manifest() -> dict[str, dict]:
    return json.loads(MANIFEST.read_text(encoding="utf-8"))


@cache
def archive(rfc: str) -> dict[str, bytes]:
    """Members of an RFC's Appendix A archive: base64 -> gzip -> tar, all in memory."""
    packed = gzip.decompress(base64.b64decode(ARCHIVES[rfc].read_bytes()))
    with tarfile.open(fileobj=io.BytesIO(packed), mode="r:") as tar:
        out = {}
        for member in tar.getmembers():
            if member.isfile():
                handle = tar.extractfile(member)
                assert handle is not None
                out[Path(member.name).name] = handle.read()
        return out


def fixture(name: str) -> bytes:
    return (TORTURE / f"{name}.sip").read_bytes()


def split(data: bytes) -> tuple[bytes, bytes | None]:
    """Header section and body; body is None when no empty line ends the headers."""
    head, sep, body = data.partition(b"\r\n\r\n")
    return (head, body) if sep else (data, None)


NAMES = sorted(manifest())


def test_every_manifest_entry_has_a_file_and_every_file_an_entry() -> None:
    on_disk = {p.stem for p in TORTURE.glob("*.sip")}
    assert on_disk == set(manifest())


def test_the_set_is_complete() -> None:
    entries = manifest().values()
    by_rfc = {rfc: sum(e["rfc"].startswith(rfc + " ") for e in entries) for rfc in ARCHIVES}
    # RFC 4475: 49 messages in Section 3 (Appendix A also holds an undocumented test.dat).
    # RFC 5118: 12 messages in Section 4.
    assert by_rfc == {"4475": 49, "5118": 12}
    assert set(archive("4475")) == {f"{n}.dat" for n in manifest() if not n.startswith("v6-")} | {
        "test.dat"
    }
    assert set(archive("5118")) == {
        n.removeprefix("v6-") for n in manifest() if n.startswith("v6-")
    }


@pytest.mark.parametrize("name", NAMES)
def test_manifest_entry_is_well_formed(name: str) -> None:
    entry = manifest()[name]
    assert set(entry) == KEYS
    assert re.fullmatch(r"(4475|5118) \u00a7\d+(\.\d+)*", entry["rfc"])
    assert entry["kind"] in KINDS
    assert entry["layer"] in LAYERS
    assert isinstance(entry["valid_syntax"], bool)
    assert isinstance(entry["lenient_ok"], bool)
    assert entry["reaction"] in {"accept", "drop"} or re.fullmatch(r"[1-6]\d\d", entry["reaction"])
    assert entry["title"]
    assert entry["notes"].startswith("RFC: ")
    assert set(entry["quirks"]) <= KNOWN_QUIRKS
    assert name.startswith("v6-") == entry["rfc"].startswith("5118 ")
    if entry["kind"] == "response":
        # Nobody answers a response: it is processed or dropped.
        assert entry["reaction"] in {"accept", "drop"}
    # The RFC's permitted leniency is both a flag and spelled out in the notes.
    assert ("lenient_ok: true" in entry["notes"]) == entry["lenient_ok"]


@pytest.mark.parametrize("name", NAMES)
def test_bytes_are_the_rfc_archive_bytes(name: str) -> None:
    entry = manifest()[name]
    data = fixture(name)
    assert len(data) == entry["octets"]
    if name.startswith("v6-"):
        # RFC 5118's archive uses bare LF; the only change made is LF -> CRLF.
        original = archive("5118")[name.removeprefix("v6-")]
        assert b"\r" not in original
        assert data == original.replace(b"\n", b"\r\n")
        assert "archive_lf_converted_to_crlf" in entry["quirks"]
    else:
        assert data == archive("4475")[f"{name}.dat"]


@pytest.mark.parametrize("name", NAMES)
def test_kind_matches_start_line(name: str) -> None:
    start_line = fixture(name).split(b"\r\n", 1)[0]
    assert start_line.startswith(b"SIP/") == (manifest()[name]["kind"] == "response")


@pytest.mark.parametrize("name", NAMES)
def test_content_length_record_is_true(name: str) -> None:
    entry = manifest()[name]
    head, body = split(fixture(name))
    declared = [v.decode() for v in CONTENT_LENGTH.findall(head)]
    size = len(body or b"")
    record = entry["content_length"]
    assert record["declared"] == declared
    assert record["body_octets"] == size
    matches = len(declared) == 1 and re.fullmatch(r"\d+", declared[0]) and int(declared[0]) == size
    assert record["matches"] == bool(matches)


@pytest.mark.parametrize("name", [n for n in NAMES if manifest()[n]["valid_syntax"]])
def test_valid_message_content_length_equals_body(name: str) -> None:
    entry = manifest()[name]
    excuses = CL_EXCUSES & set(entry["quirks"])
    if excuses:
        # Where the RFC itself breaks the rule, the manifest says so and the bytes agree.
        assert not entry["content_length"]["matches"], excuses
    else:
        assert entry["content_length"]["matches"]


@pytest.mark.parametrize("name", NAMES)
def test_lines_end_in_crlf(name: str) -> None:
    entry = manifest()[name]
    data = fixture(name)
    head, body = split(data)
    assert data.endswith(b"\r\n")
    assert not BARE_LF.search(head) and not BARE_CR.search(head)
    if "binary_body" in entry["quirks"]:
        # mpart01: the application/octet-stream part is binary and may hold any octet.
        assert body is not None and (BARE_LF.search(body) or BARE_CR.search(body))
    else:
        assert not BARE_LF.search(data) and not BARE_CR.search(data)


@pytest.mark.parametrize("name", NAMES)
def test_header_section_is_closed_unless_noted(name: str) -> None:
    _, body = split(fixture(name))
    assert (body is None) == ("no_empty_line_after_headers" in manifest()[name]["quirks"])
