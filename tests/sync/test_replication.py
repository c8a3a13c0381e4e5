"""Replication with the real Litestream to a real S3 peer (moto on loopback) and to a folder:
every row comes back, an outage loses nothing, nothing secret reaches the bucket, and the
supervisor restarts Litestream with an alarm while it is down."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sys
from pathlib import Path

import pytest
from support.s3 import ACCESS_KEY, SECRET_KEY, S3Peer
from support.syncing import call_record, file_settings, rows, s3_settings
from support.wait import wait_for

from appliance.cli import main
from appliance.store import LOCAL_DB, METADATA_DB, open_store
from appliance.sync import SyncService, SyncSettings, SyncState, restore_metadata
from appliance.sync.status import ALARM_DOWN, ALARM_LAG
from pbx.recording.age import encrypt_bytes
from pbx.recording.keys import Keyring
from pbx.sip.auth import ha1
from pbx.store import Extension

pytestmark = [pytest.mark.interop, pytest.mark.timeout(180)]

TABLES = ("extensions", "call_records", "schema_info", "schema_version")
REALM = "edgepbx.local"
PASSPHRASE = "correct horse battery staple recording key"


async def restore(settings: SyncSettings, source: Path, dest: Path) -> Path:
    report = await asyncio.to_thread(restore_metadata, settings, source, dest)
    return report.database


@pytest.mark.parametrize("kind", ["file", "s3"])
async def test_call_records_come_back_row_for_row(tmp_path: Path, s3: S3Peer, kind: str) -> None:
    data = tmp_path / "box"
    settings = (
        s3_settings(s3, s3.new_bucket()) if kind == "s3" else file_settings(tmp_path / "cloud")
    )
    store = open_store(data, write_behind=True)
    # AWS_CA_BUNDLE in the box's environment breaks Litestream's S3 client: it must not pass.
    environ = {**os.environ, "AWS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt"}
    service = SyncService(settings, data, environ=environ)
    await service.start()
    try:
        store.directory.create(Extension(number="101", display_name="Reception"))
        for i in range(300):
            store.cdr.write(call_record(i, recording_ref=f"rec-{i}" if i % 3 == 0 else None))
        store.cdr.flush()
        txid, replicated = await service.sync_now()
        assert replicated == txid > 0
        restored = await restore(settings, data, tmp_path / "restored")
        for table in TABLES:
            assert rows(restored, table) == rows(data / METADATA_DB, table), table
        assert len(rows(restored, "call_records")) == 300
    finally:
        await service.stop()
        store.close()


async def test_an_outage_loses_nothing_and_shows_behind_with_an_alarm(
    tmp_path: Path, s3: S3Peer
) -> None:
    data = tmp_path / "box"
    bucket = s3.new_bucket()
    settings = s3_settings(s3, bucket, behind_after=1.0, alarm_after=2.0)
    store = open_store(data, write_behind=True)
    service = SyncService(settings, data)
    await service.start()
    try:
        written = [call_record(i) for i in range(100)]
        for record in written:
            store.cdr.write(record)
        store.cdr.flush()
        await service.sync_now()
        assert service.status().state is SyncState.REPLICATING

        s3.stop()  # the internet is down
        during = [call_record(100 + i) for i in range(10_000)]
        for record in during:  # the box goes on taking calls: writes never wait for the bucket
            store.cdr.write(record)
        store.cdr.flush()
        written += during
        await wait_for(
            lambda: ALARM_LAG in {a.code for a in service.status().alarms},
            "the lag alarm during the outage",
        )
        status = service.status()
        assert status.state is SyncState.BEHIND
        assert status.lag_seconds is not None and status.lag_seconds > 2.0

        s3.start()  # back, same port
        txid, replicated = await service.sync_now(timeout=120)
        assert replicated == txid
        await wait_for(lambda: not service.status().alarms, "the alarm to clear", timeout=30)
        assert service.status().state is SyncState.REPLICATING

        restored = await restore(settings, data, tmp_path / "restored")
        ids = [row[0] for row in rows(restored, "call_records")]
        assert len(ids) == len(set(ids)) == 10_100
        assert set(ids) == {r.call_id for r in written}
    finally:
        await service.stop()
        store.close()


async def test_the_bucket_holds_no_secrets_no_audio_and_no_local_db(
    tmp_path: Path, s3: S3Peer
) -> None:
    data = tmp_path / "box"
    bucket = s3.new_bucket()
    settings = s3_settings(s3, bucket)
    marker = f"Marker-{secrets.token_hex(8)}"  # in metadata.db: proves the search sees bytes
    passwords = {number: f"pw-{secrets.token_urlsafe(12)}" for number in ("101", "102")}
    store = open_store(data, write_behind=True)
    # Recordings as the recorder leaves them: age files to the site key, in the data folder.
    keyring = Keyring(data / "keys", work_factor=10)
    site = keyring.initialize(PASSPHRASE)
    (identity,) = keyring.unlock(PASSPHRASE)
    recordings = data / "recordings"
    recordings.mkdir()
    audio, ciphertexts = {}, {}
    for i in range(3):
        audio[f"rec-{i}"] = bytes((j * (i + 3)) % 251 for j in range(48_000))  # 3 s of "G.711"
        ciphertexts[f"rec-{i}"] = encrypt_bytes(audio[f"rec-{i}"], keyring.recording_recipients())
        (recordings / f"rec-{i}.age").write_bytes(ciphertexts[f"rec-{i}"])
    identity_file = keyring.export_identity(site.fingerprint)
    service = SyncService(settings, data)
    await service.start()
    try:
        for number, password in passwords.items():
            store.directory.create(Extension(number=number, display_name=f"{marker} {number}"))
            store.directory.set_password(number, password, REALM)
        for i in range(30):
            store.cdr.write(call_record(i, recording_ref=f"rec-{i % 3}"))
        store.cdr.flush()
        await service.sync_now()
        restored = await restore(settings, data, tmp_path / "restored")
    finally:
        await service.stop()
        store.close()

    forbidden: dict[str, bytes] = {
        "S3 secret key": SECRET_KEY.encode(),
        "S3 access key id": ACCESS_KEY.encode(),
        "recording identity": identity.secret_string().encode(),
        "protected identity file": identity_file[-64:],
        "identity passphrase": PASSPHRASE.encode(),
        "local.db table": b"extension_secrets",
        "local.db description": b"local-only secrets",
    }
    for number, password in passwords.items():
        forbidden[f"password of {number}"] = password.encode()
        for algorithm in ("MD5", "SHA-256"):
            forbidden[f"{algorithm} HA1 of {number}"] = ha1(
                number, REALM, password, algorithm
            ).encode()
    for ref, blob in ciphertexts.items():
        forbidden[f"ciphertext of {ref}"] = blob[1000:1064]
        forbidden[f"audio of {ref}"] = audio[ref][20_000:20_064]
    local_bytes = (data / LOCAL_DB).read_bytes()
    objects = list(s3.objects(bucket))
    assert objects, "nothing was replicated"
    everything = b"".join(body for _, body in objects)
    assert marker.encode() in everything  # LTX pages are searchable as stored
    for key, body in objects:
        assert "local" not in key and "recording" not in key, key
        for what, needle in forbidden.items():
            assert needle not in body, f"{what} found in s3://{bucket}/{key}"
    restored_bytes = restored.read_bytes()
    assert marker.encode() in restored_bytes
    for what, needle in forbidden.items():
        assert needle not in restored_bytes, f"{what} found in the restored database"
    assert local_bytes[:16] == b"SQLite format 3\x00"
    config = service.paths.config.read_text()
    assert LOCAL_DB not in config and SECRET_KEY not in config and ACCESS_KEY not in config
    assert os.stat(service.paths.config).st_mode & 0o777 == 0o600


async def test_a_killed_litestream_is_restarted_with_an_alarm_that_clears(tmp_path: Path) -> None:
    data = tmp_path / "box"
    store = open_store(data)
    service = SyncService(file_settings(tmp_path / "cloud"), data)
    await service.start()
    try:
        await wait_for(lambda: service.status().state is SyncState.REPLICATING, "the first sync")
        first = service.pid
        assert first is not None
        assert os.getpgid(first) != os.getpgid(0)  # a terminal's Ctrl-C does not reach it
        os.kill(first, signal.SIGKILL)
        await wait_for(
            lambda: ALARM_DOWN in {a.code for a in service.status().alarms}, "the down alarm"
        )
        (alarm,) = [a for a in service.status().alarms if a.code == ALARM_DOWN]
        assert "code -9" in alarm.message
        await wait_for(lambda: service.pid not in (None, first), "a new litestream")
        store.directory.create(Extension(number="200", display_name="after the crash"))
        await wait_for(lambda: not service.status().alarms, "the alarm to clear")
        status = service.status()
        assert status.state is SyncState.REPLICATING and status.restarts == 1
        await service.sync_now()
        restored = await restore(service.settings, data, tmp_path / "restored")
        assert [r[0] for r in rows(restored, "extensions")] == ["200"]
    finally:
        await service.stop()
        store.close()
    assert service.status().state is SyncState.STOPPED and service.pid is None


async def test_a_long_data_path_gets_a_short_control_socket(tmp_path: Path) -> None:
    data = tmp_path / ("d" * 60) / ("e" * 60)
    store = open_store(data)
    service = SyncService(file_settings(), data)
    await service.start()
    try:
        assert len(str(service.paths.socket)) <= 100
        await service.sync_now()
    finally:
        await service.stop()
        store.close()


async def test_sync_status_command_reads_the_running_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "box"
    store = open_store(data)
    service = SyncService(file_settings(), data)
    await service.start()
    try:

        def written_replicating() -> bool:
            path = service.paths.status
            return path.exists() and '"state": "replicating"' in path.read_text()

        await wait_for(written_replicating, "the status file to say replicating")
        assert main(["sync", "status", "--data", str(data), "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown["state"] == "replicating"
        assert shown["target"] == f"file://{data}/cloud/metadata"
        assert shown["alarms"] == [] and shown["lag_seconds"] < 5
    finally:
        await service.stop()
        store.close()
    assert main(["sync", "status", "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert "state:      stopped" in out and "last sync:" in out


BOX_SCRIPT = """
import asyncio, sys
from pathlib import Path
from appliance.store import open_store
from appliance.sync import SyncService, SyncSettings

async def main():
    data = Path(sys.argv[1])
    open_store(data)
    service = SyncService(SyncSettings(), data)
    await service.start()
    print(service.pid, flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


async def test_a_killed_box_leaves_no_litestream_behind(tmp_path: Path) -> None:
    box = await asyncio.create_subprocess_exec(
        sys.executable, "-c", BOX_SCRIPT, str(tmp_path / "box"), stdout=asyncio.subprocess.PIPE
    )
    assert box.stdout is not None
    child = int(await asyncio.wait_for(box.stdout.readline(), 30))
    os.kill(box.pid, signal.SIGKILL)
    await box.wait()

    def gone() -> bool:  # exited; a zombie waiting for a reaper counts as gone
        try:
            stat = Path(f"/proc/{child}/stat").read_text()
        except FileNotFoundError:
            return True
        return stat.rsplit(")", 1)[1].split()[0] == "Z"

    await wait_for(gone, "litestream to end with its parent", timeout=15)
