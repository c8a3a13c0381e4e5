"""The supervisor with in-process parts and real child processes speaking sd_notify."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest

from appliance.service.supervisor import ChildPart, HookPart, PartState, StartFailed, Supervisor


class Flaky:
    """A part whose health fails on demand and whose start can be made to fail."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log
        self.broken = False
        self.refuse_starts = 0
        self.starts = 0

    async def start(self) -> None:
        if self.refuse_starts:
            self.refuse_starts -= 1
            raise OSError("port in use")
        self.starts += 1
        self.broken = False
        self.log.append(f"start {self.name}")

    async def stop(self) -> None:
        self.log.append(f"stop {self.name}")

    def health(self) -> str | None:
        return "crashed" if self.broken else None


async def until(check: object, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():  # type: ignore[operator]
            await asyncio.sleep(0.01)


def fast(parts: list[object]) -> Supervisor:
    return Supervisor(parts, check_interval=0.01, backoff_initial=0.02, backoff_max=0.1)  # type: ignore[arg-type]


async def test_order_and_restart_with_backoff() -> None:
    log: list[str] = []
    a, b = Flaky("a", log), Flaky("b", log)
    sup = fast([a, b])
    await sup.start()
    watch = asyncio.create_task(sup.watch())
    b.broken = True
    b.refuse_starts = 2  # the first two restarts fail too: retried with growing delays
    await until(lambda: b.starts == 2)
    [sa, sb] = sup.status()
    assert sa.state is PartState.RUNNING and a.starts == 1  # the healthy part untouched
    assert sb.state is PartState.RUNNING and sb.restarts == 3
    await sup.stop()
    watch.cancel()
    assert log[:2] == ["start a", "start b"]
    assert log[-2:] == ["stop b", "stop a"]  # reverse order


async def test_a_part_that_cannot_start_at_boot_is_fatal() -> None:
    log: list[str] = []
    a, b = Flaky("a", log), Flaky("b", log)
    b.refuse_starts = 1
    sup = fast([a, b])
    with pytest.raises(StartFailed, match="b: port in use"):
        await sup.start()
    await sup.stop()
    assert "stop a" in log


async def test_hook_part_adapts_a_service() -> None:
    class Service:
        running = False

        async def start(self) -> None:
            self.running = True

        async def stop(self) -> None:
            self.running = False

    service = Service()
    part = HookPart("sync", service, unhealthy=lambda s: None if s.running else "down")
    await part.start()
    assert part.health() is None
    await part.stop()
    assert part.health() == "down"


CHILD = textwrap.dedent(
    """
    import os, sys, time, signal
    from appliance.service.sdnotify import Notifier, watchdog_interval
    n = Notifier.from_env()
    mode = sys.argv[1]
    if mode == "never-ready":
        time.sleep(60)
    if mode == "exit-early":
        sys.exit(3)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    n.ready(EDGEPBX_PROBE="hello")
    interval = watchdog_interval(os.environ)
    while True:
        if mode != "mute":
            n.watchdog()
        time.sleep(interval)
    """
)


def child(tmp_path: Path, mode: str, **kwargs: float) -> ChildPart:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return ChildPart(mode, [sys.executable, str(script), mode], tmp_path / "run", **kwargs)


async def test_child_ready_and_restarted_after_kill(tmp_path: Path) -> None:
    part = child(tmp_path, "good", watchdog=1.0)
    sup = fast([part])
    await sup.start()
    assert part.reported["EDGEPBX_PROBE"] == "hello"
    first = part.pid
    assert first is not None
    watch = asyncio.create_task(sup.watch())
    os.kill(first, signal.SIGKILL)
    await until(
        lambda: part.pid not in (None, first) and sup.status()[0].state is PartState.RUNNING
    )
    assert sup.status()[0].restarts == 1
    await sup.stop()
    watch.cancel()
    assert part.pid is None


async def test_a_child_whose_loop_stalls_is_restarted(tmp_path: Path) -> None:
    """No WATCHDOG=1 within the watchdog time: the child is killed and started again."""
    part = child(tmp_path, "mute", watchdog=0.6)
    sup = fast([part])
    await sup.start()
    first = part.pid
    watch = asyncio.create_task(sup.watch())
    await until(lambda: part.pid not in (None, first))
    await sup.stop()
    watch.cancel()


@pytest.mark.parametrize(
    ("mode", "why"), [("exit-early", "exited with code 3"), ("never-ready", "not ready")]
)
async def test_child_start_failures(tmp_path: Path, mode: str, why: str) -> None:
    part = child(tmp_path, mode, start_timeout=1.0)
    with pytest.raises(StartFailed, match=why):
        await part.start()
    assert part.pid is None
