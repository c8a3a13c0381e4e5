"""Why the SIP core runs in its own process (appliance/daemon.py): SIP answer times while
the API misbehaves (a handler that blocks its event loop for 300 ms, ten times), with the
API on the core's loop versus in another process.

The probe sends an OPTIONS every 10 ms from a thread and records each answer's delay;
reported: median, p99 and worst, and how many probes waited longer than 100 ms."""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from support.bench import report
from support.daemon import sip_options
from support.ports import free_port

pytestmark = pytest.mark.bench
HARNESS = Path(__file__).with_name("isolation_box.py")


def start(mode: str, data: Path, sip: int, api: int) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, str(HARNESS), mode, str(data), str(sip), str(api)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


def probe_while_blocking(sip: int, api: int) -> list[float]:
    delays: list[float] = []
    done = threading.Event()

    def probe() -> None:
        while not done.is_set():
            t0 = time.perf_counter()
            answer = sip_options("127.0.0.1", sip, timeout=5)
            assert answer is not None
            delays.append(time.perf_counter() - t0)
            time.sleep(0.01)

    thread = threading.Thread(target=probe)
    thread.start()
    time.sleep(0.3)
    with httpx.Client(trust_env=False, timeout=30) as http:
        for _ in range(10):
            http.get(f"http://127.0.0.1:{api}/block", params={"ms": 300})
    time.sleep(0.3)
    done.set()
    thread.join()
    return delays


@pytest.mark.parametrize("layout", ["one loop", "two processes"])
def test_sip_answers_while_the_api_blocks(tmp_path: Path, layout: str) -> None:
    sip, api = free_port(), free_port()
    if layout == "one loop":
        processes = [start("same", tmp_path, sip, api)]
    else:
        processes = [start("core", tmp_path, sip, api), start("api", tmp_path, sip, api)]
    try:
        delays = sorted(probe_while_blocking(sip, api))
    finally:
        for process in processes:
            process.kill()
            process.wait()
    p99 = delays[int(len(delays) * 0.99) - 1]
    slow = sum(d > 0.1 for d in delays)
    report(
        f"isolation-{layout.replace(' ', '-')}",
        [
            {
                "layout": layout,
                "probes": len(delays),
                "median_ms": round(statistics.median(delays) * 1000, 2),
                "p99_ms": round(p99 * 1000, 1),
                "worst_ms": round(delays[-1] * 1000, 1),
                "over_100ms": slow,
            }
        ],
    )
    if layout == "two processes":
        assert slow == 0
