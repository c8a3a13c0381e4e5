"""Settings of the SIP core. Passed in by the composition root, never read at import time."""

from __future__ import annotations

import os
from ipaddress import IPv4Network, IPv6Network
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork, model_validator

from pbx.guard import GuardSettings
from pbx.sip.timers import TimerConfig


class SipSettings(BaseModel):
    """Where the SIP core listens, how its timers run, and where media goes.
    Defaults: loopback, port 5060, RTP ports 20000-29999 (four a call: 2,500 relayed calls)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(5060, ge=0, le=65535)
    transports: tuple[Literal["UDP", "TCP"], ...] = ("UDP", "TCP")
    # Host name or address written into Via/Contact when the bind address is a wildcard.
    advertised_host: str | None = None
    # The SIP domain of the box; also the digest realm.
    domain: str = "edgepbx.local"
    t1: float = Field(0.5, gt=0)
    t2: float = Field(4.0, gt=0)
    t4: float = Field(5.0, gt=0)
    user_agent: str = "edgepbx"
    # Digest algorithms offered, one challenge each, in this order. MD5 alone by default:
    # SIPp and many phones answer only the first challenge, and libre-based phones before
    # 2024 (baresip 1.0 on Debian 12) fail outright when any challenge is not MD5, instead of
    # skipping it as RFC 8760 asks. Offices with modern phones can add "SHA-256".
    digest_algorithms: tuple[Literal["MD5", "SHA-256"], ...] = ("MD5",)
    media_host: str = "127.0.0.1"
    rtp_port_min: int = Field(20000, ge=1024, le=65534)
    rtp_port_max: int = Field(29999, ge=1025, le=65535)
    media_timeout: float = Field(60.0, gt=0)  # hang up a call whose media died this long ago
    max_calls: int = Field(1000, ge=1)
    # REGISTER over UDP is handled in this many child processes (pbx.registrar_workers), so
    # registrations use more than one core; 0 keeps them in the core process. None: one per
    # CPU (at most 4), none on a single CPU.
    registrar_workers: int | None = Field(None, ge=0, le=16)
    # The door guard (pbx/guard.py): a source address that fails authentication
    # ban_after_failures times in a minute, or sends more than max_requests_per_second, is
    # dropped for ban_seconds. Sources in trusted_networks are never limited.
    ban_after_failures: int = Field(10, ge=1)
    ban_seconds: float = Field(600.0, gt=0)
    max_requests_per_second: float = Field(200.0, gt=0)
    trusted_networks: tuple[IPvAnyNetwork, ...] = (
        IPv4Network("127.0.0.0/8"),
        IPv6Network("::1/128"),
    )

    @property
    def guard(self) -> GuardSettings:
        return GuardSettings(
            max_failures=self.ban_after_failures,
            ban_seconds=self.ban_seconds,
            max_rate=self.max_requests_per_second,
            trusted=tuple(str(n) for n in self.trusted_networks),
        )

    @property
    def worker_count(self) -> int:
        """``registrar_workers`` with ``None`` resolved for this machine."""
        if self.registrar_workers is not None:
            return self.registrar_workers
        cpus = os.cpu_count() or 1
        return 0 if cpus < 2 else min(cpus, 4)

    @property
    def timers(self) -> TimerConfig:
        return TimerConfig(self.t1, self.t2, self.t4)

    @model_validator(mode="after")
    def _ports_in_order(self) -> SipSettings:
        if self.rtp_port_max - self.rtp_port_min < 3:
            raise ValueError("rtp_port_max must be at least rtp_port_min + 3 (two port pairs)")
        return self
