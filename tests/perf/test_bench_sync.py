"""Cloud sync benchmarks (``make bench``): the lag from a commit to restorable in the target,
and the store's write throughput with and without Litestream running.

Lag: one call record is committed (one transaction), then the target is polled (every few
ms) until a new level-0 LTX file, the unit ``litestream restore`` applies, holds it; commits
are spread over random phases of the sync interval. Measured at Litestream's defaults (1 s
monitor and sync intervals) and at 0.1 s, to a folder and to S3 (``moto_server`` in its own
process on loopback). At the end every sampled record is checked in a real restore.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from support.bench import report
from support.s3 import ACCESS_KEY, SECRET_KEY, MotoProcess
from support.syncing import call_record, rows

from appliance.store import open_store
from appliance.sync import FileTarget, S3Target, SyncService, SyncSettings, restore_metadata

pytestmark = [pytest.mark.bench, pytest.mark.interop]

SAMPLES = 100  # p99 of 100 is the second-worst sample
_LTX = re.compile(r"([0-9a-f]{16})-([0-9a-f]{16})\.ltx$")


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """``moto_server`` in its own process: the bench's polling does not share its GIL."""
    server = MotoProcess()
    yield server.endpoint
    server.close()


def _s3(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
    )


def _max_txid(names: list[str]) -> int:
    best = 0
    for name in names:
        match = _LTX.search(name)
        if match:
            best = max(best, int(match.group(2), 16))
    return best


def _target(kind: str, tmp: Path, endpoint: str | None) -> tuple[Any, Callable[[], int]]:
    if kind == "file":
        folder = tmp / "cloud"
        level0 = folder / "metadata" / "ltx" / "0"

        def file_position() -> int:
            try:
                return _max_txid([p.name for p in level0.iterdir()])
            except FileNotFoundError:
                return 0

        return FileTarget(path=folder), file_position
    assert endpoint is not None
    bucket = f"bench-{random.randrange(1 << 30):x}"
    client = _s3(endpoint)
    client.create_bucket(Bucket=bucket)
    prefix = "site/metadata/0000/"

    def s3_position() -> int:
        listing = client.list_objects_v2(Bucket=bucket, Prefix=prefix)
        return _max_txid([o["Key"] for o in listing.get("Contents", [])])

    target = S3Target(
        bucket=bucket,
        path="site/metadata",
        endpoint=endpoint,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
    )
    return target, s3_position


async def _lag_samples(
    settings: SyncSettings, data: Path, position: Callable[[], int]
) -> tuple[list[float], list[str]]:
    store = open_store(data)  # inline writes: the commit time is known exactly
    service = SyncService(settings, data)
    await service.start()
    lags, ids = [], []
    try:
        await service.sync_now()
        seen = await asyncio.to_thread(position)
        for i in range(SAMPLES):
            await asyncio.sleep(random.uniform(0, settings.sync_interval))
            record = call_record(i)
            committed = time.perf_counter()
            store.cdr.write(record)
            while (now_at := await asyncio.to_thread(position)) <= seen:
                await asyncio.sleep(0.002)
            lags.append(time.perf_counter() - committed)
            seen = now_at
            ids.append(record.call_id)
    finally:
        await service.stop()
        store.close()
    return lags, ids


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@pytest.mark.timeout(900)
async def test_lag_from_commit_to_restorable(tmp_path: Path, moto_endpoint: str) -> None:
    results: list[dict[str, object]] = []
    for kind in ("file", "s3"):
        for label, interval in (("default (1 s)", 1.0), ("short (0.1 s)", 0.1)):
            work = tmp_path / f"{kind}-{interval}"
            target, position = _target(kind, work, moto_endpoint)
            settings = SyncSettings(
                target=target, monitor_interval=interval, sync_interval=interval
            )
            lags, ids = await _lag_samples(settings, work / "box", position)
            restored = await asyncio.to_thread(
                restore_metadata, settings, work / "box", work / "restored"
            )
            present = {r[0] for r in rows(restored.database, "call_records")}
            assert set(ids) <= present, "a sampled commit is not restorable"
            results.append(
                {
                    "target": "folder" if kind == "file" else "S3 (moto_server)",
                    "intervals": label,
                    "samples": len(lags),
                    "median ms": statistics.median(lags) * 1000,
                    "p99 ms": _p(lags, 0.99) * 1000,
                    "max ms": max(lags) * 1000,
                }
            )
    report("sync_lag", results)


def _throughput(data: Path, count: int, write_behind: bool) -> float:
    store = open_store(data, write_behind=write_behind)
    records = [call_record(i) for i in range(count)]
    try:
        start = time.perf_counter()
        for record in records:
            store.cdr.write(record)
        if write_behind:
            store.cdr.flush()  # type: ignore[union-attr]
        elapsed = time.perf_counter() - start
    finally:
        store.close()
    return count / elapsed


@pytest.mark.timeout(900)
async def test_write_throughput_with_and_without_litestream(tmp_path: Path) -> None:
    results: list[dict[str, object]] = []
    runs = 5
    for mode, count, write_behind in (
        ("write-behind (the box)", 20_000, True),
        ("inline, one commit per record", 3_000, False),
    ):
        rates: dict[str, list[float]] = {"no sync": [], "sync 1 s": [], "sync 0.1 s": []}
        for run in range(runs):
            order = list(rates.items())
            random.shuffle(order)  # no variant always first (cold) or last
            for variant, values in order:
                data = tmp_path / f"{mode[:5]}-{variant.replace(' ', '')}-{run}"
                data.mkdir(parents=True)
                open_store(data).close()
                service = None
                if variant != "no sync":
                    interval = 1.0 if variant == "sync 1 s" else 0.1
                    service = SyncService(
                        SyncSettings(monitor_interval=interval, sync_interval=interval), data
                    )
                    await service.start()
                try:
                    values.append(await asyncio.to_thread(_throughput, data, count, write_behind))
                finally:
                    if service is not None:
                        await service.stop()
        baseline = statistics.median(rates["no sync"])
        for variant, measured in rates.items():
            results.append(
                {
                    "writes": mode,
                    "litestream": variant,
                    "records/s (median of 5)": statistics.median(measured),
                    "vs no sync": statistics.median(measured) / baseline,
                }
            )
    report("sync_write_throughput", results)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


@pytest.mark.timeout(300)
async def test_litestream_cpu_idle_and_busy(tmp_path: Path) -> None:
    """What the shorter interval costs: Litestream's CPU, idle and while the box writes
    about 50 call records/s (a busy office), to a folder target."""
    results: list[dict[str, object]] = []
    window = 10.0
    for label, interval in (("default (1 s)", 1.0), ("short (0.1 s)", 0.1)):
        data = tmp_path / f"cpu-{interval}"
        store = open_store(data, write_behind=True)
        service = SyncService(SyncSettings(monitor_interval=interval, sync_interval=interval), data)
        await service.start()
        try:
            await service.sync_now()
            pid = service.pid
            assert pid is not None
            row: dict[str, object] = {"intervals": label}
            for phase in ("idle", "50 records/s"):
                before = _cpu_seconds(pid)
                end = time.monotonic() + window
                i = 0
                while time.monotonic() < end:
                    if phase != "idle":
                        store.cdr.write(call_record(i))
                        i += 1
                    await asyncio.sleep(0.02)
                row[f"CPU % {phase}"] = 100 * (_cpu_seconds(pid) - before) / window
            results.append(row)
        finally:
            await service.stop()
            store.close()
    report("sync_litestream_cpu", results)
