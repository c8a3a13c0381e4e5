"""Transaction throughput over loopback UDP: the stack (test agent, own process, uvloop)
against Kamailio 5.6 (registrar, digest auth) under the same SIPp loads, in the same run.

Loads: REGISTER with digest auth (401 challenge, then the authenticated REGISTER: two
transactions per registration) and INVITE/180/200/ACK/BYE calls answered by the SUT as UAS
(Kamailio answers OPTIONS only, so calls are measured for the stack alone, and OPTIONS for
both). A rate passes when every SIPp call succeeded, retransmissions stayed under 0.1 % and
SIPp kept up with the target; the table reports the highest passing rate on a ladder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support.bench import report
from support.kamailio import Kamailio
from support.ports import free_port
from support.sipp import SippResult, run_sipp, write_users_csv

pytestmark = [pytest.mark.bench, pytest.mark.timeout(3600)]

HERE = Path(__file__).parent
PASSWORD = "secret"
SECONDS = float(os.environ.get("EDGEPBX_BENCH_SECONDS", "5"))
LADDER = [500, 1000, 2000, 3000, 4000, 6000, 8000, 10000, 12000, 15000]


@contextmanager
def stack_sut(workdir: Path, users: int) -> Iterator[tuple[str, Callable[[], float]]]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "sut_agent.py"), str(port), "--users", str(users)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield f"127.0.0.1:{port}", lambda: _cpu(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def kamailio_sut(workdir: Path) -> Iterator[tuple[str, Callable[[], float]]]:
    with Kamailio(workdir=workdir, auth=True, children=2) as kam:
        yield kam.target, kam.cpu_seconds


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def passed(result: SippResult, calls: int, rate: int) -> bool:
    return (
        result.successful == calls
        and result.failed == 0
        and result.retransmissions <= 0.001 * calls
        and result.create_rate >= 0.97 * rate
    )


def climb(
    make_sut: Callable[[], object],
    scenario: str,
    workdir: Path,
    users_csv: Path | None,
) -> dict[str, float]:
    """Highest passing rate on the ladder (a fresh SUT per step) and the SUT's CPU at it."""
    best: dict[str, float] = {"rate": 0.0, "achieved": 0.0, "cpu %": 0.0}
    for rate in LADDER:
        calls = int(rate * SECONDS)
        with make_sut() as (target, cpu):  # type: ignore[attr-defined]
            cpu0, t0 = cpu(), time.monotonic()
            result = (
                run_sipp(
                    target,
                    scenario=scenario,
                    workdir=workdir,
                    calls=calls,
                    rate=rate,
                    limit=max(rate * 2, 2000),
                    inf=users_csv,
                    timeout_s=SECONDS * 4 + 20,
                    duration_ms=0,
                )
                if users_csv
                else run_sipp(
                    target,
                    scenario=scenario,
                    workdir=workdir,
                    calls=calls,
                    rate=rate,
                    limit=max(rate * 2, 2000),
                    timeout_s=SECONDS * 4 + 20,
                    duration_ms=0,
                )
            )
            busy = (cpu() - cpu0) / max(time.monotonic() - t0, 1e-9) * 100
        if not passed(result, calls, rate):
            print(f"  {scenario} @ {rate}/s: stop ({result.describe()[:160]})")
            break
        best = {"rate": rate, "achieved": result.create_rate, "cpu %": busy}
    return best


def test_transactions_against_kamailio(tmp_path: Path) -> None:
    users = int(max(LADDER) * SECONDS)
    csv = write_users_csv(
        tmp_path / "users.csv", (f"u{i:07d}" for i in range(users)), password=PASSWORD
    )
    rows: list[dict[str, object]] = []
    stack = lambda: stack_sut(tmp_path, users)  # noqa: E731
    kam = lambda: kamailio_sut(tmp_path)  # noqa: E731
    for load, scenario, inf in (
        ("REGISTER + digest", "register_auth", csv),
        ("OPTIONS", "options", None),
    ):
        ours = climb(stack, scenario, tmp_path, inf)
        theirs = climb(kam, scenario, tmp_path, inf)
        rows.append(
            {
                "load": load,
                "edgepbx /s": ours["rate"],
                "edgepbx CPU %": ours["cpu %"],
                "Kamailio /s": theirs["rate"],
                "Kamailio CPU %": theirs["cpu %"],
                "ratio": ours["rate"] / theirs["rate"] if theirs["rate"] else 0.0,
            }
        )
    calls = climb(stack, "uac_call", tmp_path, None)
    rows.append(
        {
            "load": "calls (UAS: 100/180/200/ACK/BYE)",
            "edgepbx /s": calls["rate"],
            "edgepbx CPU %": calls["cpu %"],
            "Kamailio /s": "-",
            "Kamailio CPU %": "-",
            "ratio": "-",
        }
    )
    report("sip_transactions", rows)
    assert rows[0]["edgepbx /s"]
