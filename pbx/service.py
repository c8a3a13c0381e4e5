"""The SIP core service: the composition root of the call-handling process.

It builds the endpoint from settings and puts the core transaction user on top: requests are
checked (§8.2), OPTIONS answered (§11), requests for unknown dialogs get 481 (§12.2.2), and
everything else gets 480 until routing (registrar, calls) is mounted on the core.
"""

from __future__ import annotations

import logging

from pbx.endpoint import Listen, SipEndpoint
from pbx.settings import SipSettings
from pbx.sip.dialog import DialogTable, new_tag
from pbx.sip.events import Event, RequestReceived
from pbx.sip.message import make_response
from pbx.sip.uas import Capabilities, check_request, options_response

log = logging.getLogger(__name__)


class SipCore:
    """The transaction user of the box's SIP endpoint."""

    def __init__(self, settings: SipSettings) -> None:
        self.settings = settings
        self.caps = Capabilities(user_agent=settings.user_agent)
        self.endpoint = SipEndpoint(
            self, timers=settings.timers, advertised_host=settings.advertised_host
        )

    async def start(self) -> None:
        s = self.settings
        await self.endpoint.start(Listen(t, s.host, s.port) for t in s.transports)

    async def close(self) -> None:
        await self.endpoint.close()

    def on_event(self, event: Event) -> None:
        if not isinstance(event, RequestReceived):
            return
        request, key = event.request, event.key
        if request.to.tag:
            answer = DialogTable.unknown_dialog_response(request)
            if answer is not None:
                self.endpoint.send_response(key, answer)
            return
        tag = new_tag()
        answer = check_request(request, self.caps, tag)
        if answer is None:
            if request.method == "OPTIONS":
                answer = options_response(request, self.caps, tag)
            else:
                answer = make_response(request, 480, "No route yet", to_tag=tag)
        self.endpoint.send_response(key, answer)
