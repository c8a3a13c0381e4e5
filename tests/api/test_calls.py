"""Active calls through a real SIP core on loopback, with stack agents as phones: the API
lists them and hangs them up (BYE when answered, CANCEL while ringing)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from support.agent import Agent, AgentConfig, loopback_binding
from support.api import FAST, PASSWORD, Clock
from support.ports import free_port
from support.wait import wait_for

from appliance.api import BoxContext, create_app
from appliance.api.accounts import Role
from appliance.api.calls import ManagerCalls
from appliance.store import SqliteStore, open_store
from pbx.service import SipCore
from pbx.settings import SipSettings
from pbx.sip.events import Peer
from pbx.sip.timers import TimerConfig
from pbx.store import Disposition, Extension

pytestmark = [pytest.mark.timeout(60)]
SIP_PASSWORD = "Secret-101"
TIMERS = TimerConfig(t1=0.05, t2=0.4, t4=0.5)


class Rig:
    def __init__(self, core: SipCore, store: SqliteStore, api: httpx.AsyncClient) -> None:
        self.core, self.store, self.api = core, store, api
        self.headers: dict[str, str] = {}

    async def login(self, login: str) -> None:
        r = await self.api.post("/auth/login", json={"login": login, "password": PASSWORD})
        self.headers = {"Authorization": f"Bearer {r.json()['token']}"}

    async def phone(self, number: str | None = None, **config: object) -> Agent:
        ua = Agent(AgentConfig(timers=TIMERS, **config))  # type: ignore[arg-type]
        port = await ua.start("UDP")
        if number is not None:
            self.store.bindings.put(loopback_binding(number, port))
        return ua

    async def calls(self) -> list[dict[str, object]]:
        r = await self.api.get("/calls", headers=self.headers)
        assert r.status_code == 200, r.text
        calls: list[dict[str, object]] = r.json()
        return calls

    async def wait_for(self, state: str, timeout: float = 30.0) -> dict[str, object]:
        """The first call the API lists in ``state``, once there is one."""
        deadline = time.monotonic() + timeout
        while not (found := [c for c in await self.calls() if c["state"] == state]):
            if time.monotonic() > deadline:
                raise AssertionError(f"no {state} call after {timeout:g} s")
            await asyncio.sleep(0.02)
        return found[0]

    async def settle(self) -> None:
        """The call is over and its record written."""
        await wait_for(
            lambda: not self.core.calls.calls and bool(self.store.cdr.search()),
            "the call to end and its record to be written",
        )


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    store = open_store(tmp_path / "data")
    settings = SipSettings(
        port=free_port(), t1=0.05, t2=0.4, rtp_port_min=41000, rtp_port_max=41999
    )
    for number in ("101", "102"):
        store.directory.create(Extension(number=number))
        store.directory.set_password(number, SIP_PASSWORD, settings.domain)
    core = SipCore(settings, store, b"k" * 32)
    await core.start()
    ctx = BoxContext(store=store, sip=settings, calls=ManagerCalls(core.calls), settings=FAST,
                     clock=Clock())  # fmt: skip
    app = create_app(ctx)
    app.state.accounts.create("super", PASSWORD, Role.SUPERVISOR)
    app.state.accounts.create("viewer", PASSWORD, Role.VIEWER)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://box") as api:
        yield Rig(core, store, api)
    await core.close()
    store.close()


def _dial(rig: Rig, caller: Agent, **options: object) -> asyncio.Task[int]:
    box = Peer("UDP", "127.0.0.1", rig.core.endpoint.local("UDP")[1])
    call = caller.call(box, "102", auth_as=("101", SIP_PASSWORD), **options)  # type: ignore[arg-type]
    return asyncio.ensure_future(call)


async def test_hang_up_an_answered_call(rig: Rig) -> None:
    await rig.login("super")
    callee = await rig.phone("102")
    caller = await rig.phone()
    call = _dial(rig, caller, talk=30)
    listed = await rig.wait_for("answered")
    assert (listed["caller"], listed["dialed"], listed["callee"]) == ("101", "102", "102")
    r = await rig.api.delete(f"/calls/{listed['call_id']}", headers=rig.headers)
    assert r.status_code == 204
    await rig.settle()
    assert await rig.calls() == []
    await wait_for(lambda: callee.counts["BYE"] > 0, "the BYE to reach the callee's phone")
    assert callee.counts["BYE"] == 1
    [record] = rig.store.cdr.search()
    assert record.disposition is Disposition.ANSWERED and record.hangup_side.value == "system"
    assert record.hangup_cause == "hung up by an administrator"
    [event] = rig.store.audit.events(action="call.hung_up")
    assert (event.actor, event.target) == ("super", listed["call_id"])
    call.cancel()
    for ua in (caller, callee):
        await ua.close()


async def test_hang_up_a_ringing_call(rig: Rig) -> None:
    await rig.login("super")
    callee = await rig.phone("102", ring_seconds=30)
    caller = await rig.phone()
    call = _dial(rig, caller)
    listed = await rig.wait_for("ringing")
    # Ringing at the phone (its 180 came back through the box): the box has the callee's
    # INVITE transaction, which its CANCEL needs (RFC 3261 §9.1).
    await wait_for(lambda: caller.counts["got-180"] > 0, "the callee's 180 at the caller")
    r = await rig.api.delete(f"/calls/{listed['call_id']}", headers=rig.headers)
    assert r.status_code == 204
    assert await asyncio.wait_for(call, 30) == 487
    await rig.settle()
    await wait_for(lambda: callee.counts["CANCEL"] > 0, "the CANCEL to reach the callee's phone")
    assert callee.counts["CANCEL"] == 1 and callee.counts["answered"] == 0
    [record] = rig.store.cdr.search()
    assert record.disposition is Disposition.CANCELLED
    for ua in (caller, callee):
        await ua.close()


async def test_unknown_call_and_viewer(rig: Rig) -> None:
    await rig.login("viewer")
    assert await rig.calls() == []
    r = await rig.api.delete("/calls/nope", headers=rig.headers)
    assert r.status_code == 403  # viewers may not hang up
    await rig.login("super")
    r = await rig.api.delete("/calls/nope", headers=rig.headers)
    assert r.status_code == 404
