"""Real recorded calls, then a look at everything Litestream put in the bucket: the recordings'
metadata rows are there (the search sees the bytes), but no audio, no ciphertext, no key
material, no SIP password or HA1 digest and nothing of local.db is (issue 5).

The box is the recorder's test box (SipCore with a CallRecorder, stack-agent phones sending
tones as RTP through the relay) in a data folder that Litestream replicates to moto's S3. The
objects are searched as stored and, because LTX pages may be LZ4-compressed (periodic audio
would then not appear verbatim), the database Litestream restores from them is searched too.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import sqlite3
from pathlib import Path

import pytest
from support.recording_box import (
    Box,
    finished,
    phones,
    read_wav,
    recording_box,
)
from support.s3 import ACCESS_KEY, SECRET_KEY, S3Peer
from support.syncing import s3_settings
from support.tones import tone_seconds

from appliance.store import LOCAL_DB
from appliance.sync import SyncService, restore_metadata
from pbx.recording.age import decrypt_bytes
from pbx.recording.catalog import RecordingInfo, RecordingState
from pbx.recording.keys import Keyring
from pbx.recording.wav import HEADER_SIZE
from pbx.sip.auth import ha1

pytestmark = [pytest.mark.interop, pytest.mark.timeout(90)]

REALM = "edgepbx.local"  # SipSettings().domain, the digest realm of the box
PASSPHRASE = f"site passphrase {secrets.token_hex(8)}"
TONES = [(1000.0, 600.0), (800.0, 1200.0), (700.0, 1400.0)]  # (caller, callee) per call
WINDOW = 64


async def recorded_call(
    box: Box, password: str, caller_hz: float, callee_hz: float
) -> RecordingInfo:
    """101 calls 102 through the box, each sends its tone 1.2 s; the finished recording."""
    before = {r.call_id for r in box.store.cdr.search()}
    async with phones(box.core, box.store) as pair:
        status = await pair.talk(
            seconds=2.0, caller_hz=caller_hz, callee_hz=callee_hz, linger=0.1, password=password
        )
        assert status == 200
        (record,) = [r for r in box.store.cdr.search() if r.call_id not in before]
        return await finished(box.recordings, record.call_id)


def payload_offset(ciphertext: bytes) -> int:
    """Where an age file's payload starts: after the header's ``--- mac`` line and the
    16-byte nonce."""
    mac_line = ciphertext.index(b"\n--- ") + 1
    return ciphertext.index(b"\n", mac_line) + 1 + 16


def windows(data: bytes, count: int, start: int = 0) -> list[bytes]:
    """``count`` 64-byte windows spread evenly over ``data[start:]``."""
    step = max(1, (len(data) - start - WINDOW) // count)
    return [data[at : at + WINDOW] for at in range(start, len(data) - WINDOW, step)][:count]


async def test_recorded_calls_leave_no_audio_keys_or_secrets_in_the_bucket(
    tmp_path: Path, volatile_dir: Path, s3: S3Peer
) -> None:
    data = tmp_path / "box"
    data.mkdir()
    password = f"pw-{secrets.token_urlsafe(12)}"
    # The site key as the box keeps it, inside the replicated data folder on purpose.
    keyring = Keyring(data / "keys", work_factor=10)
    site = keyring.initialize(PASSPHRASE)
    (identity,) = keyring.unlock(PASSPHRASE)
    recipients = [str(r) for r in keyring.recording_recipients()]
    bucket = s3.new_bucket()
    settings = s3_settings(s3, bucket)

    async with recording_box(data, volatile_dir, recipients, password=password) as box:
        service = SyncService(settings, data)
        await service.start()
        try:
            infos = [await recorded_call(box, password, *hz) for hz in TONES]
            txid, replicated = await service.sync_now()
            assert replicated == txid > 0
        finally:
            await service.stop()
    restored = (await asyncio.to_thread(restore_metadata, settings, data, tmp_path / "r")).database

    # The calls were really recorded: three distinct, complete, decryptable stereo WAVs.
    assert len({i.id for i in infos}) == 3
    forbidden: dict[str, bytes] = {}
    for info, (caller_hz, callee_hz) in zip(infos, TONES, strict=True):
        assert info.state is RecordingState.COMPLETE
        ciphertext = box.recordings.path(info).read_bytes()
        assert info.sha256 == hashlib.sha256(ciphertext).hexdigest()
        plain = decrypt_bytes(ciphertext, [identity])
        wav = read_wav(plain)
        # 2 s of tones sent in real time; at least 1 s of each must be in the file, even on a
        # loaded machine (the recorder tests check the timing itself)
        assert tone_seconds(wav.left, caller_hz) >= 1.0
        assert tone_seconds(wav.right, callee_hz) >= 1.0
        for n, w in enumerate(windows(ciphertext, 8, payload_offset(ciphertext))):
            forbidden[f"ciphertext window {n} of {info.id}"] = w
        audible = [w for w in windows(plain, 64, HEADER_SIZE) if len(set(w)) > 8]
        assert len(audible) >= 32  # the windows are audio, not silence
        for n, w in enumerate(audible[:8]):
            forbidden[f"audio window {n} of {info.id}"] = w

    # The keys, the SIP secrets, and local.db.
    identity_file = data / "keys" / f"site-{site.fingerprint.removeprefix('sha256:')}.age"
    forbidden["site identity"] = identity.secret_string().encode()
    forbidden["site identity (lower case)"] = identity.secret_string().lower().encode()
    forbidden["identity passphrase"] = PASSPHRASE.encode()
    for n, w in enumerate(windows(identity_file.read_bytes(), 4, 40)):
        forbidden[f"protected identity file window {n}"] = w
    forbidden["S3 secret key"] = SECRET_KEY.encode()
    forbidden["S3 access key id"] = ACCESS_KEY.encode()
    forbidden["password"] = password.encode()
    for number in ("101", "102"):
        for algorithm in ("MD5", "SHA-256"):
            forbidden[f"{algorithm} HA1 of {number}"] = ha1(
                number, REALM, password, algorithm
            ).encode()
    local = sqlite3.connect(f"file:{data / LOCAL_DB}?mode=ro", uri=True)
    try:
        stored = local.execute("SELECT ha1_md5, ha1_sha256 FROM extension_secrets").fetchall()
        schema = local.execute("SELECT sql FROM sqlite_master WHERE sql NOT NULL")
        local_sql = [row[0] for row in schema]
    finally:
        local.close()
    assert {h for row in stored for h in row} == {
        v.decode() for k, v in forbidden.items() if "HA1" in k
    }  # the needles are what local.db really holds
    forbidden["local.db table"] = b"extension_secrets"
    for n, sql in enumerate(local_sql):
        if "extension_secrets" in sql:
            forbidden[f"local.db schema {n}"] = sql.encode()

    objects = list(s3.objects(bucket))
    assert objects, "nothing was replicated"
    everything = b"".join(body for _, body in objects)
    restored_bytes = restored.read_bytes()
    for info in infos:  # positive control: the metadata rows are there, searchable
        for where, haystack in (("bucket", everything), ("restored database", restored_bytes)):
            assert info.id.encode() in haystack, f"recording id {info.id} not in the {where}"
            assert info.sha256.encode() in haystack, f"sha256 of {info.id} not in the {where}"
    for key, body in objects:
        assert LOCAL_DB not in key and ".age" not in key and ".wav" not in key, key
        for what, needle in forbidden.items():
            assert needle not in body, f"{what} found in s3://{bucket}/{key}"
    for what, needle in forbidden.items():
        assert needle not in restored_bytes, f"{what} found in the restored database"
