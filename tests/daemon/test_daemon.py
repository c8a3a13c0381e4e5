"""``edgepbx run`` as systemd runs it: a real subprocess, a notify socket bound by the test,
real SIP and HTTP on loopback with free ports."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest
from support.agent import Agent, AgentConfig, wait_answered
from support.daemon import BoxDaemon, put_binding, sip_options
from support.wait import wait_for

from appliance.daemon import prepare_data
from appliance.store import open_store
from pbx.sip.events import Peer
from pbx.sip.timers import TimerConfig
from pbx.store import Disposition

pytestmark = pytest.mark.timeout(180)


def ready(fields: dict[str, str]) -> bool:
    return fields.get("READY") == "1"


def test_ready_options_sigterm(tmp_path: Path) -> None:
    with BoxDaemon(tmp_path / "data") as box:
        up = box.wait_notify(ready)
        assert up["MAINPID"] == str(box.process.pid)
        assert f"127.0.0.1:{box.sip_port}" in up["STATUS"]
        assert sip_options("127.0.0.1", box.sip_port) == "SIP/2.0 200 OK"
        # The watchdog: pings at half of WATCHDOG_USEC (2 s here).
        box.wait_notify(lambda f: f.get("WATCHDOG") == "1", timeout=5)
        out = box.output()
        assert "Demo extensions" in out and "Management API: http://127.0.0.1:" in out
        box.process.send_signal(signal.SIGTERM)
        box.wait_notify(lambda f: f.get("STOPPING") == "1")
        assert box.process.wait(30) == 0
        # Structured logs, and no demo password in them (the banner prints them on purpose).
        passwords = [
            line.split()[1] for line in (box.data / "demo-credentials.txt").read_text().splitlines()
        ]
        log_lines = [line for line in box.output().splitlines() if line.startswith("ts=")]
        assert log_lines and all(" level=" in line and " logger=" in line for line in log_lines)
        assert not any(p in line for p in passwords for line in log_lines)


def test_a_crashed_part_is_restarted(tmp_path: Path) -> None:
    with BoxDaemon(tmp_path / "data") as box:
        box.wait_notify(ready)
        before = box.children()
        assert set(before) == {"core", "manager"}
        os.kill(before["core"], signal.SIGKILL)
        box.wait_notify(lambda f: "core failed" in f.get("STATUS", ""))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = box.children()
            if now.get("core") not in (None, before["core"]) and sip_options(
                "127.0.0.1", box.sip_port, 0.5
            ):
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"core not restarted\n{box.output()}")
        assert sip_options("127.0.0.1", box.sip_port) == "SIP/2.0 200 OK"
        assert box.children()["manager"] == before["manager"]  # the other part untouched
        box.process.send_signal(signal.SIGTERM)
        assert box.process.wait(30) == 0


def test_link_serves_the_cabinet_through_the_daemon(tmp_path: Path) -> None:
    """The embedded cabinet pairs the box on first start; the operator's request goes through
    the link into the API app with origin cloud; the LAN listener has no origin."""
    with BoxDaemon(tmp_path / "data") as box:
        up = box.wait_notify(ready)
        operator, api = up["EDGEPBX_CABINET"], up["EDGEPBX_API"]
        admin, password = (box.data / "demo-admin.txt").read_text().split()
        with httpx.Client(trust_env=False, timeout=10) as http:
            [listed] = http.get(f"{operator}/boxes").json()
            assert listed["connected"]
            assert listed["box_id"] == up["EDGEPBX_BOX_ID"]
            through = f"{operator}/boxes/{listed['box_id']}"
            assert http.get(f"{through}/system/health").json()["status"] == "ok"
            # Log in through the link, then ask for recordings: the policy point refuses
            # origin cloud whatever the credentials; the same token on the LAN is not refused
            # by policy (503: no recording library in this box yet).
            login = {"login": admin, "password": password}
            token = http.post(f"{through}/auth/login", json=login).json()["token"]
            auth = {"Authorization": f"Bearer {token}"}
            assert http.get(f"{through}/recordings", headers=auth).status_code == 403
            assert http.get(f"{api}/recordings", headers=auth).status_code != 403
            assert http.get(f"{through}/extensions", headers=auth).status_code == 200
        box.process.send_signal(signal.SIGTERM)
        assert box.process.wait(30) == 0


async def test_calls_survive_the_api_process_being_killed(tmp_path: Path) -> None:
    """The process decision, shown: SIGKILL the manager (API + link) during a call; the call
    goes on (no BYE from the box), ends normally, and the manager is restarted."""
    data = tmp_path / "data"
    fast = TimerConfig(t1=0.05, t2=0.4, t4=0.5)
    callee = Agent(AgentConfig(timers=fast))
    callee_port = await callee.start("UDP")
    caller = Agent(AgentConfig(timers=fast))
    await caller.start("UDP")
    # The box creates the demo extensions on first start; bind 102 to the callee before it.
    demo = dict(prepare_data(data, "edgepbx.local"))
    put_binding(data, "102", "127.0.0.1", callee_port)
    box = BoxDaemon(data)
    try:
        up = await asyncio.to_thread(box.wait_notify, ready)
        manager = box.children()["manager"]
        target = Peer("UDP", "127.0.0.1", box.sip_port)
        hang_up = asyncio.Event()  # the caller talks until the test is done with the call
        call = asyncio.create_task(
            caller.call(target, "102", talk=120.0, auth_as=("101", demo["101"]), hang_up=hang_up)
        )
        await wait_answered(caller, call, context=box.output)
        # The API (another process) sees the call through the core's control socket.
        admin, password = (data / "demo-admin.txt").read_text().split()
        async with httpx.AsyncClient(base_url=up["EDGEPBX_API"], trust_env=False) as http:
            login = await http.post("/auth/login", json={"login": admin, "password": password})
            auth = {"Authorization": f"Bearer {login.json()['token']}"}
            deadline = time.monotonic() + 30
            while not (listed := (await http.get("/calls", headers=auth)).json()):
                assert time.monotonic() < deadline, "the API never listed the call"
                await asyncio.sleep(0.1)
            assert [(c["caller"], c["callee"], c["state"]) for c in listed] == [
                ("101", "102", "answered")
            ]
        assert not call.done()  # still talking when the API process dies
        os.kill(manager, signal.SIGKILL)
        await asyncio.to_thread(box.wait_notify, lambda f: "manager failed" in f.get("STATUS", ""))
        assert not call.done()  # the call outlived the API process
        hang_up.set()
        status = await asyncio.wait_for(call, 30)
        assert status == 200
        await wait_for(lambda: callee.counts["BYE"] > 0, "the box to relay the caller's BYE")
        assert callee.counts["BYE"] == 1, (callee.counts, caller.counts)
        assert caller.counts["BYE"] == 0  # the box never hung up on the caller
        await wait_for(
            lambda: box.children().get("manager") not in (None, manager),
            "the manager to be restarted",
            step=0.1,
        )
        box.process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(box.process.wait, 30) == 0
    finally:
        box.close()
        await caller.close()
        await callee.close()
    store = open_store(data)
    try:
        [record] = store.cdr.search()
        assert record.disposition is Disposition.ANSWERED
        assert record.hangup_side.value == "caller"
    finally:
        store.close()


async def test_sigterm_hangs_up_calls_in_progress(tmp_path: Path) -> None:
    data = tmp_path / "data"
    fast = TimerConfig(t1=0.05, t2=0.4, t4=0.5)
    callee = Agent(AgentConfig(timers=fast))
    callee_port = await callee.start("UDP")
    caller = Agent(AgentConfig(timers=fast))
    await caller.start("UDP")
    demo = dict(prepare_data(data, "edgepbx.local"))
    put_binding(data, "102", "127.0.0.1", callee_port)
    box = BoxDaemon(data)
    try:
        await asyncio.to_thread(box.wait_notify, ready)
        target = Peer("UDP", "127.0.0.1", box.sip_port)
        call = asyncio.create_task(
            caller.call(target, "102", talk=60.0, auth_as=("101", demo["101"]))
        )
        await wait_answered(caller, call, context=box.output)
        box.process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(box.process.wait, 30) == 0
        # Both legs got a BYE from the box before it exited.
        assert caller.counts["BYE"] == 1 and callee.counts["BYE"] == 1
        call.cancel()
    finally:
        box.close()
        await caller.close()
        await callee.close()
    store = open_store(data)
    try:
        [record] = store.cdr.search()  # written behind, committed at shutdown
        assert record.hangup_side.value == "system"
    finally:
        store.close()


def test_a_part_that_cannot_start_stops_the_box(tmp_path: Path) -> None:
    """At boot a failure is fatal and says why (systemd then restarts the unit)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with BoxDaemon(tmp_path / "data", extra=["--api-port", str(port)]) as box:
            assert box.process.wait(60) == 1
            out = box.output()
            assert "cannot start: manager" in out and "address already in use" in out.lower(), out
            assert "Traceback" not in out and "never retrieved" not in out
