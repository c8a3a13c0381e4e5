"""The core's control socket between two store objects (as in the two processes): the API's
directory writes reach the core's in-memory copy, and live calls are listed and hung up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.agent import Agent, AgentConfig, loopback_binding
from support.ports import free_port

from appliance.service.corectl import CoreControlServer, RemoteCalls, notifying_directory, tell_core
from appliance.store import SqliteStore, open_store
from pbx.service import SipCore
from pbx.settings import SipSettings
from pbx.sip.events import Peer
from pbx.sip.timers import TimerConfig
from pbx.store import Binding, Extension

REALM = "edgepbx.local"


@dataclass
class Pair:
    core: SipCore
    core_store: SqliteStore
    api_store: SqliteStore
    socket: Path


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    data = tmp_path / "data"
    core_store = open_store(data, write_behind=True)
    api_store = open_store(data)
    core = SipCore(SipSettings(port=free_port()), core_store, b"k" * 32)
    await core.start()
    path = tmp_path / "core.sock"
    server = CoreControlServer(core.calls, path, core_store)
    await server.start()
    notifying_directory(api_store, path)
    yield Pair(core, core_store, api_store, path)
    await server.close()
    await core.close()
    core_store.close()
    api_store.close()


async def test_directory_writes_reach_the_core(pair: Pair) -> None:
    core_dir, api_dir = pair.core_store.directory, pair.api_store.directory
    assert core_dir.get("201") is None  # the core's copy is loaded now, without 201

    def provision() -> None:  # API routes run in a thread pool
        api_dir.create(Extension("201", display_name="Front desk"))
        api_dir.set_password("201", "s3cret-pass", REALM)

    await asyncio.to_thread(provision)
    created = core_dir.get("201")
    assert created is not None and created.display_name == "Front desk"
    assert core_dir.ha1("201", "MD5") is not None
    now = time.time()
    pair.core_store.bindings.put(
        Binding("201", "<sip:201@127.0.0.1:5999>", now + 600, "c", 1, "UDP", "127.0.0.1", 5999, now)
    )
    assert pair.core_store.bindings.list("201")
    await asyncio.to_thread(api_dir.delete, "201")
    assert core_dir.get("201") is None
    assert pair.core_store.bindings.list("201") == []  # the core forgot its registrations too


async def test_calls_listed_and_hung_up(pair: Pair) -> None:
    fast = TimerConfig(t1=0.05, t2=0.4, t4=0.5)
    await asyncio.to_thread(pair.api_store.directory.create, Extension("101"))
    await asyncio.to_thread(pair.api_store.directory.set_password, "101", "pw-101-pw", REALM)
    await asyncio.to_thread(pair.api_store.directory.create, Extension("102"))
    callee = Agent(AgentConfig(timers=fast))
    port = await callee.start("UDP")
    pair.core_store.bindings.put(loopback_binding("102", port))
    caller = Agent(AgentConfig(timers=fast))
    await caller.start("UDP")
    remote = RemoteCalls(pair.socket, interval=0.05)
    await remote.start()
    try:
        target = Peer("UDP", "127.0.0.1", pair.core.endpoint.local("UDP")[1])
        call = asyncio.create_task(
            caller.call(target, "102", talk=30, auth_as=("101", "pw-101-pw"))
        )
        await asyncio.wait_for(caller.answered.wait(), 10)
        for _ in range(100):
            if remote.active():
                break
            await asyncio.sleep(0.02)
        [view] = remote.active()
        assert (view.caller, view.callee, view.state) == ("101", "102", "answered")
        assert await remote.hangup(view.call_id) is True
        for _ in range(200):  # the box's BYE reaches both phones
            if caller.counts["BYE"] and callee.counts["BYE"]:
                break
            await asyncio.sleep(0.02)
        assert caller.counts["BYE"] == 1 and callee.counts["BYE"] == 1
        call.cancel()
        assert remote.active() == []
        assert await remote.hangup(view.call_id) is False
    finally:
        await remote.stop()
        await caller.close()
        await callee.close()


async def test_bad_requests_and_absent_core(pair: Pair, tmp_path: Path) -> None:
    answer = await asyncio.to_thread(tell_core, pair.socket, {"op": "nope"})
    assert answer is not None and "unknown op" in answer["error"]
    assert tell_core(tmp_path / "nothing.sock", {"op": "calls"}) is None
    remote = RemoteCalls(tmp_path / "nothing.sock")
    await remote.refresh()
    assert remote.active() == []
