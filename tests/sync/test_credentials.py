"""Credentials against an S3 peer that checks them (``moto_server`` with IAM auth): the
right key from the settings gets replication and restore through, a wrong one is an alarm
with the error, and the secret shows up in no log line, status or file but its own."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.s3 import MotoProcess
from support.syncing import FAST, call_record, rows
from support.wait import wait_for

from appliance.cli import main
from appliance.store import open_store
from appliance.sync import S3Target, SyncError, SyncService, SyncSettings, restore_metadata
from appliance.sync.status import ALARM_LAG

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def checked_s3() -> Iterator[MotoProcess]:
    server = MotoProcess(auth=True)
    yield server
    server.close()


def settings_for(server: MotoProcess, bucket: str, secret: str) -> SyncSettings:
    target = S3Target(
        bucket=bucket,
        path="site-1/metadata",
        endpoint=server.endpoint,
        access_key_id=server.access_key,
        secret_access_key=secret,
    )
    return SyncSettings(target=target, **{**FAST, "behind_after": 1.0, "alarm_after": 2.0})


def files_under(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.stat().st_size)


async def test_the_right_key_replicates_and_restores(
    tmp_path: Path, checked_s3: MotoProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="edgepbx.sync")
    settings = settings_for(checked_s3, checked_s3.new_bucket(), checked_s3.secret_key)
    data = tmp_path / "box"
    store = open_store(data, write_behind=True)
    service = SyncService(settings, data)
    await service.start()
    try:
        for i in range(50):
            store.cdr.write(call_record(i))
        store.cdr.flush()
        await service.sync_now()
        status = json.dumps(service.status().to_json())
    finally:
        await service.stop()
        store.close()
    report = await asyncio.to_thread(restore_metadata, settings, data, tmp_path / "restored")
    assert len(rows(report.database, "call_records")) == 50
    secret = checked_s3.secret_key
    assert secret not in caplog.text and secret not in status
    assert secret.encode() not in files_under(data)  # not in litestream.yml or status.json
    assert secret not in repr(settings) and secret not in repr(report)


async def test_a_wrong_key_is_an_alarm_that_names_the_error_not_the_key(
    tmp_path: Path, checked_s3: MotoProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="edgepbx.sync")
    wrong = "wrong-" + checked_s3.secret_key[::-1]
    settings = settings_for(checked_s3, checked_s3.new_bucket(), wrong)
    data = tmp_path / "box"
    store = open_store(data)
    service = SyncService(settings, data)
    await service.start()
    try:
        with pytest.raises(SyncError):
            await service.sync_now(timeout=5)
        await wait_for(
            lambda: ALARM_LAG in {a.code for a in service.status().alarms}, "the lag alarm"
        )
        status = service.status()
        assert status.last_error is not None
        assert status.last_error.startswith("sync error: ")
        assert "SignatureDoesNotMatch" in status.last_error
        (alarm,) = status.alarms
        assert "SignatureDoesNotMatch" in alarm.message
        shown = json.dumps(status.to_json())
    finally:
        await service.stop()
        store.close()
    assert wrong not in caplog.text and wrong not in shown
    assert wrong.encode() not in files_under(data)


async def test_a_fresh_box_with_only_sync_json_restores_from_the_bucket(
    tmp_path: Path, checked_s3: MotoProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = checked_s3.new_bucket()
    settings = settings_for(checked_s3, bucket, checked_s3.secret_key)
    old = tmp_path / "old"
    store = open_store(old)
    service = SyncService(settings, old)
    await service.start()
    try:
        for i in range(20):
            store.cdr.write(call_record(i))
        await service.sync_now()
    finally:
        await service.stop()
        store.close()
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    config = fresh / "sync.json"
    config.write_text(settings.model_dump_json())  # the secret is masked in a dump...
    config.write_text(
        config.read_text().replace("**********", checked_s3.secret_key)  # ...so put it back
    )
    config.chmod(0o600)
    assert await asyncio.to_thread(main, ["sync", "restore", "--data", str(fresh)]) == 0
    out = capsys.readouterr()
    assert "20 call record(s)" in out.out
    assert checked_s3.secret_key not in out.out + out.err
    assert len(rows(fresh / "metadata.db", "call_records")) == 20
