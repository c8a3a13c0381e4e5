"""The SIP core's :class:`~pbx.b2bua.CallManager` as the API's :class:`CallControl`, and
its :class:`~pbx.guard.Guard` as the API's :class:`GuardControl`.

The API must run on the SIP core's event loop for these adapters (one process, one loop:
the calls are plain objects of that loop). A SIP core in another process is asked over its
control socket instead (:mod:`appliance.service.corectl`).
"""

from __future__ import annotations

import time

from appliance.api.context import ActiveCallView, BanView
from pbx.b2bua import CallManager
from pbx.guard import Guard

__all__ = ["CoreGuard", "ManagerCalls"]


class ManagerCalls:
    def __init__(self, manager: CallManager) -> None:
        self._manager = manager

    def active(self) -> list[ActiveCallView]:
        return [
            ActiveCallView(
                call_id=c.id,
                caller=c.caller,
                caller_name=c.caller_name,
                dialed=c.dialed,
                callee=c.callee,
                state="answered" if c.answer_time is not None else "ringing",
                start_time=c.start,
                answer_time=c.answer_time,
                codec=c.codec,
            )
            for c in list(self._manager.calls.values())
            if not c.ended
        ]

    async def hangup(self, call_id: str) -> bool:
        return await self._manager.hangup(call_id)


class CoreGuard:
    def __init__(self, guard: Guard) -> None:
        self._guard = guard

    async def bans(self) -> list[BanView]:
        return [BanView(a, round(left, 1)) for a, left in self._guard.banned(time.monotonic())]

    async def unban(self, address: str) -> bool:
        return self._guard.unban(address)
