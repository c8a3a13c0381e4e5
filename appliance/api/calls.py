"""The SIP core's :class:`~pbx.b2bua.CallManager` as the API's :class:`CallControl`.

The API must run on the SIP core's event loop for this adapter (one process, one loop:
the calls are plain objects of that loop). A SIP core in another process needs an adapter
that asks it over IPC instead.
"""

from __future__ import annotations

from appliance.api.context import ActiveCallView
from pbx.b2bua import CallManager

__all__ = ["ManagerCalls"]


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
