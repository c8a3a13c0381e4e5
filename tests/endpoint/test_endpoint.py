"""The asyncio endpoint with the whole stack on real sockets: two agents on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest
from support.agent import Agent, AgentConfig

from pbx.sip.events import Peer
from pbx.sip.timers import TimerConfig

FAST = TimerConfig(t1=0.05, t2=0.4, t4=0.5)


@pytest.mark.parametrize("transport", ["UDP", "TCP"])
async def test_call_between_two_agents(transport: str) -> None:
    callee, caller = Agent(AgentConfig(timers=FAST)), Agent(AgentConfig(timers=FAST))
    port = await callee.start(transport)
    await caller.start(transport)
    try:
        status = await asyncio.wait_for(
            caller.call(Peer(transport, "127.0.0.1", port), talk=0.05), 10
        )
        assert status == 200
        assert callee.counts["INVITE"] == 1 and callee.counts["answered"] == 1
        await asyncio.sleep(0.05)
        assert callee.counts["ACK"] == 1 and callee.counts["BYE"] == 1
        assert len(callee.dialogs) == 0 and len(caller.dialogs) == 0
    finally:
        await caller.close()
        await callee.close()


async def test_call_to_nobody_times_out_as_408() -> None:
    caller = Agent(AgentConfig(timers=FAST))
    await caller.start("UDP")
    silent = await asyncio.get_running_loop().create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    try:
        port = silent[0].get_extra_info("sockname")[1]
        status = await asyncio.wait_for(caller.call(Peer("UDP", "127.0.0.1", port)), 10)
        assert status == 408  # Timer B = 64*T1 fired and the endpoint synthesized 408
    finally:
        silent[0].close()
        await caller.close()
