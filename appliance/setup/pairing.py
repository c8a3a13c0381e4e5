"""The console's pairing step on top of the cloud link (`appliance.link.LinkClient`)."""

from __future__ import annotations

from typing import Protocol

from appliance.api.schemas.setup import PairingState
from appliance.link.client import LinkPhase, LinkStatus


class PairableLink(Protocol):
    """What the setup needs of `LinkClient`."""

    @property
    def status(self) -> LinkStatus: ...

    def pair(self, code: str) -> None: ...


class LinkClientPairing:
    """Hands the installer's code to the link and reports the link's state as it goes."""

    def __init__(self, link: PairableLink, cabinet: str) -> None:
        self.link = link
        self.cabinet = cabinet

    def pair(self, code: str) -> PairingState:
        self.link.pair(code)
        return PairingState(state="pending", cabinet=self.cabinet, message="pairing...")

    def state(self) -> PairingState:
        status = self.link.status
        if status.phase is LinkPhase.CONNECTED:
            return PairingState(
                state="paired", cabinet=self.cabinet, message=f"box id {status.box_id}"
            )
        if status.phase is LinkPhase.REFUSED:
            return PairingState(state="failed", cabinet=self.cabinet, message=status.detail)
        if status.phase in (LinkPhase.UNPAIRED, LinkPhase.STOPPED):
            return PairingState(state="unpaired", message=status.detail)
        return PairingState(state="pending", cabinet=self.cabinet, message=status.detail)
