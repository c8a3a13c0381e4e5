"""``edgepbx sync restore`` on a replacement box: extensions and history come back from the
cloud copy, the installer is told what must come from elsewhere, the box runs from the
restored database (SIPp registers after the password is reset), and a live database is
never replaced without ``--force`` (and then kept aside)."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from pathlib import Path

import pytest
from support.ports import free_port
from support.sipp import run_sipp, write_users_csv
from support.syncing import call_record, rows
from support.wait import wait_for

from appliance.cli import main
from appliance.store import METADATA_DB, open_store
from appliance.store.schema import METADATA
from appliance.sync import (
    IncompatibleSchema,
    LiveDatabase,
    NothingToRestore,
    SyncService,
    SyncSettings,
    SyncState,
    restore_metadata,
)
from appliance.sync.restore import BoxRunning, check_restored
from pbx.service import SipCore
from pbx.settings import SipSettings
from pbx.store import Extension

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

FAST = SyncSettings(monitor_interval=0.1, sync_interval=0.1, status_interval=0.1)


async def old_box(data: Path) -> list[str]:
    """A box that ran for a while with the default (folder) target, then died."""
    store = open_store(data, write_behind=True)
    service = SyncService(FAST, data)
    await service.start()
    try:
        for number, name in (("101", "Reception"), ("102", "Sales")):
            store.directory.create(Extension(number=number, display_name=name))
            store.directory.set_password(number, f"old-password-{number}", "edgepbx.local")
        records = [call_record(i) for i in range(200)]
        for record in records:
            store.cdr.write(record)
        store.cdr.flush()
        await service.sync_now()
    finally:
        await service.stop()
        store.close()
    return sorted(r.call_id for r in records)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cli(*args: str) -> int:
    return main(["sync", *args])


async def test_a_replacement_box_restores_and_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    call_ids = await old_box(old)
    before = {t: rows(old / METADATA_DB, t) for t in ("extensions", "call_records")}

    assert await asyncio.to_thread(cli, "restore", "--data", str(old), "--to", str(new)) == 0
    out = capsys.readouterr().out
    assert "2 extension(s), 200 call record(s)" in out
    assert "recording identity" in out
    assert "extension passwords must be reset for 101, 102" in out
    for table, expected in before.items():
        assert rows(new / METADATA_DB, table) == expected

    store = open_store(new)  # the box starts from the restored file
    try:
        assert [e.number for e in store.directory.list()] == ["101", "102"]
        assert store.directory.secret("101") is None  # local.db was not in the cloud
        assert sorted(r[0] for r in rows(new / METADATA_DB, "call_records")) == call_ids
        store.directory.set_password("101", "new-password", "edgepbx.local")
        settings = SipSettings(port=free_port(), t1=0.1, t2=0.8)
        core = SipCore(settings, store, b"k" * 32)
        await core.start()
        try:
            port = core.endpoint.local("UDP")[1]
            users = write_users_csv(tmp_path / "users.csv", ["101"], password="new-password")
            result = await asyncio.to_thread(
                run_sipp,
                f"127.0.0.1:{port}",
                scenario="register_auth",
                workdir=tmp_path,
                inf=users,
                calls=1,
                timeout_s=20,
            )
            assert result.successful == 1 and result.failed == 0, result.describe()
            assert [b.aor for b in store.bindings.list("101")] == ["101"]
        finally:
            await core.close()
    finally:
        store.close()

    # A second restore onto the now live database is refused, and changes nothing.
    live = digest(new / METADATA_DB)
    assert await asyncio.to_thread(cli, "restore", "--data", str(old), "--to", str(new)) == 1
    assert "already exists" in capsys.readouterr().err
    assert digest(new / METADATA_DB) == live
    # With --force it is replaced, and the replaced file is kept aside.
    assert (
        await asyncio.to_thread(cli, "restore", "--data", str(old), "--to", str(new), "--force")
        == 0
    )
    out = capsys.readouterr().out
    assert "kept in" in out and "must be reset for 102" in out and "101," not in out
    (aside,) = new.glob("replaced-*")
    assert digest(aside / METADATA_DB) == live
    assert rows(new / METADATA_DB, "extensions") == before["extensions"]


async def test_restore_refuses_a_running_box_even_with_force(tmp_path: Path) -> None:
    data = tmp_path / "box"
    await old_box(data)
    store = open_store(data)
    service = SyncService(FAST, data)
    await service.start()
    try:
        await wait_for(lambda: service.status().state is SyncState.REPLICATING, "replicating")
        with pytest.raises(BoxRunning):
            await asyncio.to_thread(restore_metadata, FAST, data, data, force=True)
    finally:
        await service.stop()
        store.close()


async def test_nothing_to_restore_is_said_plainly(tmp_path: Path) -> None:
    with pytest.raises(NothingToRestore):
        await asyncio.to_thread(restore_metadata, FAST, tmp_path / "empty", tmp_path / "new")
    assert not (tmp_path / "new" / METADATA_DB).exists()
    with pytest.raises(LiveDatabase):
        (tmp_path / "live").mkdir()
        (tmp_path / "live" / METADATA_DB).write_bytes(b"x")
        await asyncio.to_thread(restore_metadata, FAST, tmp_path / "empty", tmp_path / "live")


def test_the_schema_check(tmp_path: Path) -> None:
    store = open_store(tmp_path / "box")
    store.close()
    db = tmp_path / "box" / METADATA_DB
    assert check_restored(db) == METADATA.version
    conn = sqlite3.connect(db)
    conn.execute("UPDATE schema_info SET version = 99")
    conn.execute("INSERT INTO schema_version VALUES (99, 'from the future', 0)")
    conn.commit()
    conn.close()
    with pytest.raises(IncompatibleSchema, match="knows up to"):
        check_restored(db)
    with pytest.raises(IncompatibleSchema, match="'local'"):
        check_restored(tmp_path / "box" / "local.db")
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(IncompatibleSchema, match="not an edgepbx database"):
        check_restored(other)


async def test_a_restored_box_goes_on_replicating_to_the_same_target(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    first = await old_box(old)
    # The replacement box uses the same cloud copy: the old box's settings name it.
    settings = FAST.model_copy(
        update={"target": FAST.target.model_copy(update={"path": old / "cloud"})}
    )
    await asyncio.to_thread(restore_metadata, settings, old, new)
    store = open_store(new, write_behind=True)
    service = SyncService(settings, new)
    await service.start()
    try:
        later = [call_record(1000 + i) for i in range(50)]
        for record in later:
            store.cdr.write(record)
        store.cdr.flush()
        await service.sync_now()
    finally:
        await service.stop()
        store.close()
    report = await asyncio.to_thread(restore_metadata, settings, new, tmp_path / "again")
    ids = sorted(r[0] for r in rows(report.database, "call_records"))
    assert ids == sorted(first + [r.call_id for r in later])
