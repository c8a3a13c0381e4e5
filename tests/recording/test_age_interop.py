"""Interop both ways with the stock ``age`` tool (Debian ``age`` 1.1)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path

import pytest
from support.agetool import age, age_with_passphrase, keygen, needs_age

from pbx.recording.age import (
    CHUNK_SIZE,
    AgeReader,
    AgeWriter,
    ScryptRecipient,
    Stanza,
    X25519Identity,
    X25519Recipient,
    encrypt_bytes,
)
from pbx.recording.keys import parse_identity_file, protect_identity, unlock_identity

pytestmark = [pytest.mark.interop, needs_age]

SIZES = [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 5 * CHUNK_SIZE + 77]


@pytest.fixture(scope="module")
def keyfile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, X25519Identity]:
    path = tmp_path_factory.mktemp("keys") / "identity.txt"
    public = keygen(path)
    identities = parse_identity_file(path.read_text())
    assert str(identities[0].recipient()) == public
    return path, identities[0]


@pytest.mark.parametrize("size", SIZES)
def test_age_decrypts_our_files(
    size: int, tmp_path: Path, keyfile: tuple[Path, X25519Identity]
) -> None:
    path, identity = keyfile
    data = os.urandom(size)
    target = tmp_path / "rec.age"
    with AgeWriter.create(target, [identity.recipient()]) as writer:
        for start in range(0, size, 640):
            writer.write(data[start : start + 640])
    assert age("-d", "-i", path, target) == data


@pytest.mark.parametrize("size", SIZES)
def test_we_read_files_made_by_age_r(
    size: int, tmp_path: Path, keyfile: tuple[Path, X25519Identity]
) -> None:
    _, identity = keyfile
    data = os.urandom(size)
    plain = tmp_path / "plain"
    plain.write_bytes(data)
    age("-r", str(identity.recipient()), "-o", tmp_path / "f.age", plain)
    with AgeReader.open(tmp_path / "f.age", [identity]) as reader:
        assert reader.size == size
        assert reader.read() == data
        reader.seek(size // 2)
        assert reader.read() == data[size // 2 :]


def test_we_read_age_R_with_several_recipients_and_armor(
    tmp_path: Path, keyfile: tuple[Path, X25519Identity]
) -> None:
    _, identity = keyfile
    others = [X25519Identity.generate() for _ in range(2)]
    recipients = tmp_path / "recipients.txt"
    recipients.write_text(
        "# escrow and site\n" + "\n".join(str(i.recipient()) for i in [*others, identity]) + "\n"
    )
    data = os.urandom(3 * CHUNK_SIZE + 5)
    plain = tmp_path / "plain"
    plain.write_bytes(data)
    age("-R", recipients, "-o", tmp_path / "f.age", plain)
    age("-a", "-R", recipients, "-o", tmp_path / "f.age.asc", plain)
    for name in ("f.age", "f.age.asc"):
        for who in [identity, *others]:
            with AgeReader.open(tmp_path / name, [who]) as reader:
                assert reader.read() == data


def test_age_decrypts_with_each_of_several_recipients(tmp_path: Path) -> None:
    files = []
    for n in range(3):
        files.append(tmp_path / f"id{n}.txt")
        keygen(files[-1])
    recipients = [parse_identity_file(f.read_text())[0].recipient() for f in files]
    data = os.urandom(CHUNK_SIZE * 2)
    (tmp_path / "rec.age").write_bytes(encrypt_bytes(data, recipients))
    for identity_file in files:
        assert age("-d", "-i", identity_file, tmp_path / "rec.age") == data


def test_our_recipient_strings_are_age_keygen_compatible(tmp_path: Path) -> None:
    identity = X25519Identity.generate()
    key = tmp_path / "ours.txt"
    key.write_text(f"# ours\n{identity.secret_string()}\n")
    # age-keygen -y derives the recipient from an identity file.
    derived = age_keygen_y(key)
    assert derived == str(identity.recipient())
    assert X25519Recipient.from_string(derived) == identity.recipient()


def age_keygen_y(path: Path) -> str:
    result = subprocess.run(["age-keygen", "-y", str(path)], check=True, capture_output=True)
    return result.stdout.decode().strip()


def test_age_opens_our_passphrase_protected_identity(tmp_path: Path) -> None:
    identity = X25519Identity.generate()
    protected = tmp_path / "site.age"
    protected.write_bytes(
        protect_identity(identity, "correct horse", created=dt.datetime.now(dt.UTC), work_factor=12)
    )
    data = os.urandom(CHUNK_SIZE + 9)
    (tmp_path / "rec.age").write_bytes(encrypt_bytes(data, [identity.recipient()]))
    code, transcript = age_with_passphrase(
        "-d",
        "-i",
        protected,
        "-o",
        tmp_path / "out",
        tmp_path / "rec.age",
        passphrase="correct horse",
    )
    assert code == 0, transcript
    assert (tmp_path / "out").read_bytes() == data
    code, transcript = age_with_passphrase(
        "-d", "-i", protected, "-o", tmp_path / "out2", tmp_path / "rec.age", passphrase="wrong"
    )
    assert code != 0
    assert "incorrect passphrase" in transcript
    # And the protected identity file itself is a plain `age -p` file.
    code, _ = age_with_passphrase(
        "-d", "-o", tmp_path / "id.txt", protected, passphrase="correct horse"
    )
    assert code == 0
    assert parse_identity_file((tmp_path / "id.txt").read_text())[0].recipient() == (
        identity.recipient()
    )


def test_we_open_identity_files_protected_by_age_p(
    tmp_path: Path, keyfile: tuple[Path, X25519Identity]
) -> None:
    # `age -p` always uses work factor 18 (about 1 s here each way): one run covers both our
    # scrypt decryption and unlocking an identity file the stock tool protected.
    path, identity = keyfile
    code, transcript = age_with_passphrase(
        "-p", "-o", tmp_path / "id.age", path, passphrase="hunter2"
    )
    assert code == 0, transcript
    unlocked = unlock_identity((tmp_path / "id.age").read_bytes(), "hunter2")
    assert unlocked[0].recipient() == identity.recipient()


def test_age_decrypts_our_scrypt_files(tmp_path: Path) -> None:
    data = os.urandom(CHUNK_SIZE + 1)
    (tmp_path / "p.age").write_bytes(encrypt_bytes(data, [ScryptRecipient("pw", work_factor=10)]))
    code, transcript = age_with_passphrase(
        "-d", "-o", tmp_path / "out", tmp_path / "p.age", passphrase="pw"
    )
    assert code == 0, transcript
    assert (tmp_path / "out").read_bytes() == data


def test_age_skips_stanzas_it_does_not_know(
    tmp_path: Path, keyfile: tuple[Path, X25519Identity]
) -> None:
    path, identity = keyfile

    class Grease:
        def wrap(self, file_key: bytes) -> list[Stanza]:
            return [
                Stanza("edgepbx-grease", ("x",), os.urandom(70)),
                *identity.recipient().wrap(file_key),
            ]

    (tmp_path / "g.age").write_bytes(encrypt_bytes(b"audio", [Grease()]))
    assert age("-d", "-i", path, tmp_path / "g.age") == b"audio"
