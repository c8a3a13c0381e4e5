"""Management API benchmarks (make bench): what a login costs with the box's argon2 settings,
authenticated reads in process, and recording playback (age decryption per Range request)
through uvicorn on loopback."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from support.api import PASSWORD, make_box
from support.bench import report

from appliance.api import ApiSettings
from appliance.api.accounts import AccountStore, Role
from appliance.api.age_library import AgeFolderLibrary
from pbx.recording.age import X25519Identity, encrypt_bytes
from pbx.store import CallRecord, Direction, Disposition, HangupSide

pytestmark = pytest.mark.bench


def _records(n: int) -> list[CallRecord]:
    return [
        CallRecord(
            call_id=f"c{i:06d}",
            sip_call_id=f"s{i}",
            caller_number=str(100 + i % 50),
            dialed=str(200 + i % 50),
            direction=Direction.INTERNAL,
            start_time=1e9 + i,
            end_time=1e9 + i + 30,
            answer_time=1e9 + i + 2,
            disposition=Disposition.ANSWERED,
            hangup_side=HangupSide.CALLER,
        )
        for i in range(n)
    ]


async def test_bench_api(tmp_path: Path) -> None:
    rows: list[dict[str, object]] = []
    # Login with the box's default argon2id cost (64 MiB, t=3, 4 lanes).
    box = make_box(tmp_path / "a")
    real = AccountStore(box.store.local, ApiSettings(), time.time)
    real.create("admin", PASSWORD, Role.ADMIN)
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        assert real.verify_password("admin", PASSWORD) is not None
        samples.append(time.perf_counter() - start)
    rows.append({"what": "password check (argon2id 64 MiB, t=3)", "value": min(samples) * 1e3,
                 "unit": "ms"})  # fmt: skip

    # Reads in process and over uvicorn.
    site = X25519Identity.generate()
    folder = tmp_path / "rec"
    folder.mkdir()
    audio = bytes(range(256)) * (32000 * 60 // 256)  # one minute of 8 kHz stereo 16-bit
    (folder / "r.wav.age").write_bytes(encrypt_bytes(audio, [site.recipient()]))
    box.ctx.recordings = AgeFolderLibrary(folder, box.store.metadata, lambda: [site])
    box.store.cdr.write_many(_records(20000))  # type: ignore[union-attr]
    box.account("super", Role.SUPERVISOR)
    h = box.login("super")
    config = uvicorn.Config(box.app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=h) as client:
        for label, path, headers, n in (
            ("GET /system/version (token check)", "/system/version", {}, 300),
            ("GET /call-records, 100 of 20,000 with total", "/call-records?number=120", {}, 100),
            ("GET /recordings/{id}/audio, 64 KiB range mid-file", "/recordings/r/audio",
             {"Range": "bytes=1000000-1065535"}, 100),
        ):  # fmt: skip
            best = float("inf")
            for _ in range(3):
                start = time.perf_counter()
                for _ in range(n):
                    r = await client.get(path, headers=headers)
                    assert r.status_code in (200, 206)
                best = min(best, (time.perf_counter() - start) / n)
            rows.append({"what": label, "value": best * 1e3, "unit": "ms/request"})
        start = time.perf_counter()
        r = await client.get("/recordings/r/download")
        whole = time.perf_counter() - start
        assert r.content == audio
        rows.append({"what": "download 1 min recording (1.9 MB), decrypting",
                     "value": len(audio) / whole / 1e6, "unit": "MB/s"})  # fmt: skip
    server.should_exit = True
    await task
    report("api", rows)
    box.store.close()
