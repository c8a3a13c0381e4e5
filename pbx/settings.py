"""Settings of the SIP core. Passed in by the composition root, never read at import time."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pbx.sip.timers import TimerConfig


class SipSettings(BaseModel):
    """Where the SIP core listens and how its timers run. Defaults: loopback, port 5060."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(5060, ge=0, le=65535)
    transports: tuple[Literal["UDP", "TCP"], ...] = ("UDP", "TCP")
    # Host name or address written into Via/Contact when the bind address is a wildcard.
    advertised_host: str | None = None
    domain: str = "edgepbx.local"
    t1: float = Field(0.5, gt=0)
    t2: float = Field(4.0, gt=0)
    t4: float = Field(5.0, gt=0)
    user_agent: str = "edgepbx"

    @property
    def timers(self) -> TimerConfig:
        return TimerConfig(self.t1, self.t2, self.t4)
