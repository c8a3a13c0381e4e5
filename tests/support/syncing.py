"""Helpers of the sync tests and benchmarks: settings for both targets against the S3 peer,
call records and row dumps."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import Any

from appliance.sync import FileTarget, S3Target, SyncSettings
from pbx.store import CallRecord, Direction, Disposition, HangupSide, MediaStats
from support.s3 import ACCESS_KEY, SECRET_KEY, S3Peer

# Short intervals: tests wait for outcomes, and shorter intervals make them arrive sooner.
FAST: dict[str, Any] = {
    "monitor_interval": 0.1,
    "sync_interval": 0.1,
    "status_interval": 0.1,
    "restart_min": 0.2,
    "restart_max": 1.0,
}


def s3_settings(peer: S3Peer, bucket: str, **overrides: Any) -> SyncSettings:
    target = S3Target(
        bucket=bucket,
        path="site-1/metadata",
        endpoint=peer.endpoint,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
    )
    return SyncSettings(target=target, **{**FAST, **overrides})


def file_settings(folder: Path | None = None, **overrides: Any) -> SyncSettings:
    return SyncSettings(target=FileTarget(path=folder), **{**FAST, **overrides})


def call_record(i: int, *, recording_ref: str | None = None) -> CallRecord:
    start = 1_790_000_000.0 + i * 7.25
    answered = i % 4 != 0
    return CallRecord(
        call_id=str(uuid.uuid4()),
        sip_call_id=f"{uuid.uuid4().hex}@192.0.2.{i % 250}",
        caller_number=str(100 + i % 60),
        caller_name="Office Phone",
        dialed=str(100 + (i * 7) % 60),
        callee_number=str(100 + (i * 7) % 60) if answered else None,
        direction=Direction.INTERNAL,
        start_time=start,
        answer_time=start + 4.0 if answered else None,
        end_time=start + 95.5,
        disposition=Disposition.ANSWERED if answered else Disposition.NO_ANSWER,
        hangup_side=HangupSide.CALLER,
        hangup_cause="Normal Clearing",
        sip_code=200 if answered else 480,
        codec="PCMA" if answered else None,
        media_from_caller=MediaStats(4550, 782600, 3, 1.7),
        media_from_callee=MediaStats(4548, 782256, 0, 0.9),
        recording_ref=recording_ref,
        recording_state="done" if recording_ref else None,
    )


def rows(db: Path, table: str) -> list[tuple[Any, ...]]:
    """Every row of ``table``, in primary-key order (read-only)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
    finally:
        conn.close()
