"""The recordings endpoints over real encrypted files: age files written by the stock `age`
tool and by the box's writer, decrypted on the fly for Range requests; locked identity,
wrong key and tampered files answered clearly; delete destroys the key stanzas."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from support.api import Box, make_box

from appliance.api.accounts import Role
from appliance.api.age_library import AgeFolderLibrary, plaintext_size
from appliance.api.recordings import RecordingQuery
from appliance.api.vault import IdentityVault
from pbx.recording.age import CHUNK_SIZE, X25519Identity, encrypt_bytes, read_header
from pbx.recording.keys import Keyring
from pbx.store import CallRecord, Direction, Disposition, HangupSide

AUDIO = bytes((i * 7) % 256 for i in range(3 * CHUNK_SIZE + 1234))  # four age chunks


@pytest.fixture
def site() -> X25519Identity:
    return X25519Identity.generate()


@pytest.fixture
def abox(tmp_path: Path, site: X25519Identity) -> Box:
    folder = tmp_path / "recordings"
    unlocked: list[X25519Identity] = [site]
    box = make_box(tmp_path, recordings=None)
    box.ctx.recordings = AgeFolderLibrary(folder, box.store.metadata, lambda: unlocked)
    box.unlocked = unlocked  # type: ignore[attr-defined]
    month = folder / "2026" / "11"
    month.mkdir(parents=True)
    (month / "rec-box.wav.age").write_bytes(encrypt_bytes(AUDIO, [site.recipient()]))
    box.store.cdr.write(
        CallRecord(
            call_id="call-1",
            sip_call_id="sip-1",
            caller_number="101",
            dialed="102",
            direction=Direction.INTERNAL,
            start_time=5000.0,
            answer_time=5001.0,
            end_time=5031.0,
            disposition=Disposition.ANSWERED,
            hangup_side=HangupSide.CALLER,
            recording_ref="rec-box",
            recording_state="complete",
        )
    )
    box.account("super", Role.SUPERVISOR)
    box.account("admin", Role.ADMIN)
    return box


def test_list_and_metadata(abox: Box) -> None:
    h = abox.login("super")
    page = abox.lan.get("/recordings", headers=h).json()
    assert page["total"] == 1
    [item] = page["items"]
    assert item["id"] == "rec-box" and item["call_id"] == "call-1"
    assert item["started_at"] == 5000.0 and item["duration"] == 30.0
    assert item["size"] == len(AUDIO)
    assert abox.lan.get("/recordings?call_id=call-1", headers=h).json()["total"] == 1
    assert abox.lan.get("/recordings?call_id=other", headers=h).json()["total"] == 0


def test_ranges_decrypt_only_what_they_cover(abox: Box) -> None:
    h = abox.login("super")
    assert abox.lan.get("/recordings/rec-box/audio", headers=h).content == AUDIO
    for first, last in ((0, 0), (CHUNK_SIZE - 10, CHUNK_SIZE + 10), (len(AUDIO) - 5, None)):
        header = f"bytes={first}-{'' if last is None else last}"
        r = abox.lan.get("/recordings/rec-box/audio", headers={**h, "Range": header})
        assert r.status_code == 206
        assert r.content == AUDIO[first : None if last is None else last + 1]


@pytest.mark.interop
def test_files_written_by_the_age_tool(abox: Box, site: X25519Identity, tmp_path: Path) -> None:
    if shutil.which("age") is None:
        pytest.skip("the age tool is not installed (make deb)")
    plain = tmp_path / "plain.wav"
    plain.write_bytes(AUDIO[:100_000])
    target = abox.ctx.recordings.folder / "rec-tool.wav.age"  # type: ignore[union-attr]
    subprocess.run(["age", "-r", str(site.recipient()), "-o", str(target), str(plain)], check=True)
    assert plaintext_size(target) == 100_000
    h = abox.login("super")
    r = abox.lan.get("/recordings/rec-tool/download", headers={**h, "Range": "bytes=70000-"})
    assert r.status_code == 206 and r.content == AUDIO[70_000:100_000]


def test_locked_identity_is_503_and_not_audited(abox: Box) -> None:
    abox.unlocked.clear()  # type: ignore[attr-defined]
    r = abox.lan.get("/recordings/rec-box/audio", headers=abox.login("super"))
    assert r.status_code == 503 and "locked" in r.json()["detail"]
    assert not abox.audit("recording.played")


def test_wrong_key_is_503(abox: Box) -> None:
    abox.unlocked[:] = [X25519Identity.generate()]  # type: ignore[attr-defined]
    r = abox.lan.get("/recordings/rec-box/audio", headers=abox.login("super"))
    assert r.status_code == 503 and "key" in r.json()["detail"]


def test_tampered_file_is_refused(abox: Box) -> None:
    path = next(abox.ctx.recordings.folder.rglob("rec-box.wav.age"))  # type: ignore[union-attr]
    data = bytearray(path.read_bytes())
    data[-100] ^= 1
    path.write_bytes(bytes(data))
    r = abox.lan.get("/recordings/rec-box/audio", headers=abox.login("super"))
    assert r.status_code == 500 and "damaged" in r.json()["detail"]
    assert not abox.audit("recording.played")


def test_delete_shreds_the_key_stanzas(abox: Box) -> None:
    path = next(abox.ctx.recordings.folder.rglob("rec-box.wav.age"))  # type: ignore[union-attr]
    with open(path, "rb") as f:
        assert read_header(f).stanzas
    h = abox.login("admin")
    assert abox.lan.delete("/recordings/rec-box", headers=h).status_code == 204
    assert not path.exists()
    assert abox.store.cdr.get("call-1").recording_state == "deleted"  # type: ignore[union-attr]
    assert abox.lan.get("/recordings/rec-box", headers=h).status_code == 404
    assert abox.lan.delete("/recordings/rec-box", headers=h).status_code == 204
    assert [e.detail["existed"] for e in abox.audit("recording.deleted")] == [True, False]


def test_cloud_is_refused_before_any_file_is_touched(abox: Box) -> None:
    h = abox.login("admin", abox.cloud)
    for path in ("/recordings", "/recordings/rec-box", "/recordings/rec-box/audio"):
        assert abox.cloud.get(path, headers=h).status_code == 403
    assert abox.cloud.delete("/recordings/rec-box", headers=h).status_code == 403
    assert next(abox.ctx.recordings.folder.rglob("*.age")).exists()  # type: ignore[union-attr]


def test_odd_ids_and_missing_folder(tmp_path: Path) -> None:
    box = make_box(tmp_path)
    lib = AgeFolderLibrary(tmp_path / "none", box.store.metadata, list)
    assert lib.list(RecordingQuery(), 10, 0).total == 0
    assert lib.get("../etc") is None and lib.get("*") is None and not lib.delete("*")
    box.store.close()


# ---------------------------------------------------------------- unlocking for playback


@pytest.fixture
def kbox(tmp_path: Path) -> Box:
    """A box with a real keyring: the site identity passphrase-protected on disk."""
    keyring = Keyring(tmp_path / "keys", work_factor=10)
    keyring.initialize("the site passphrase")
    box = make_box(tmp_path, recordings=None)
    vault = IdentityVault(keyring.unlock, ttl=600, clock=box.clock)
    folder = tmp_path / "recordings"
    folder.mkdir()
    (folder / "rec-k.wav.age").write_bytes(encrypt_bytes(AUDIO, keyring.recording_recipients()))
    box.ctx.recordings = AgeFolderLibrary(folder, box.store.metadata, vault.identities)
    box.ctx.vault = vault
    box.account("super", Role.SUPERVISOR)
    box.account("admin", Role.ADMIN)
    return box


def test_unlock_play_and_lock_again(kbox: Box) -> None:
    h = kbox.login("super")
    assert kbox.lan.get("/recordings/unlock", headers=h).json() == {
        "unlocked": False,
        "unlocked_until": None,
    }
    assert kbox.lan.get("/recordings/rec-k/audio", headers=h).status_code == 503
    r = kbox.lan.post("/recordings/unlock", headers=h, json={"passphrase": "wrong"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "passphrase"]
    r = kbox.lan.post("/recordings/unlock", headers=h, json={"passphrase": "the site passphrase"})
    assert r.status_code == 200 and r.json()["unlocked_until"] == kbox.clock.now + 600
    assert kbox.lan.get("/recordings/rec-k/audio", headers=h).content == AUDIO
    kbox.clock.now += 601  # the unlock lapses by itself
    assert kbox.lan.get("/recordings/rec-k/audio", headers=h).status_code == 503
    kbox.lan.post("/recordings/unlock", headers=h, json={"passphrase": "the site passphrase"})
    assert kbox.lan.delete("/recordings/unlock", headers=h).status_code == 204
    assert kbox.lan.get("/recordings/rec-k/audio", headers=h).status_code == 503
    actions = [e.action for e in kbox.store.audit.events(action="recordings.", limit=100)]
    assert actions == [
        "recordings.unlock_failed",
        "recordings.unlocked",
        "recordings.unlocked",
        "recordings.locked",
    ]


def test_unlock_guesses_are_limited(kbox: Box) -> None:
    h = kbox.login("super")
    for _ in range(5):
        r = kbox.lan.post("/recordings/unlock", headers=h, json={"passphrase": "guess"})
        assert r.status_code == 422
    r = kbox.lan.post("/recordings/unlock", headers=h, json={"passphrase": "the site passphrase"})
    assert r.status_code == 429


def test_unlock_is_lan_only(kbox: Box) -> None:
    h = kbox.login("admin", kbox.cloud)
    body = {"passphrase": "the site passphrase"}
    assert kbox.cloud.post("/recordings/unlock", headers=h, json=body).status_code == 403
    assert kbox.cloud.get("/recordings/unlock", headers=h).status_code == 403
    assert kbox.ctx.vault.unlocked_until() is None  # type: ignore[union-attr]
    assert kbox.audit("policy.denied")[-1].target == "GET /recordings/unlock"
