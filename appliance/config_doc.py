"""The SIP section of the configuration document, and the read the SIP core starts from.

Kept apart from the management API (:mod:`appliance.api.config` holds the rest of the
document and applies it) so that the SIP core's process imports pydantic and SQLite only:
no FastAPI, and nothing an error in the API package could stop the core with.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork, field_validator
from pydantic.config import JsonDict

from appliance.store.database import Database
from pbx.settings import SipSettings

__all__ = ["DOMAIN", "SipConfig", "StrictModel", "applied_sip", "desired_sip_settings"]

DOMAIN = (
    r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_UNIQUE: JsonDict = {"uniqueItems": True}
_LATEST = "SELECT document FROM config_documents ORDER BY version DESC LIMIT 1"


class StrictModel(BaseModel):
    """A part of the document: unknown fields refused, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SipConfig(StrictModel):
    """The SIP core's settings (applied when the SIP core starts)."""

    domain: str = Field(
        "edgepbx.local",
        max_length=253,
        pattern=DOMAIN,
        description="SIP domain, also the digest realm",
    )
    port: int = Field(5060, ge=0, le=65535, description="0: any free port")
    transports: list[Literal["UDP", "TCP"]] = Field(
        ["UDP", "TCP"], min_length=1, max_length=2, json_schema_extra=_UNIQUE
    )
    digest_algorithms: list[Literal["MD5", "SHA-256"]] = Field(
        ["MD5"],
        min_length=1,
        max_length=2,
        json_schema_extra=_UNIQUE,
        description="challenges offered, in this order",
    )
    rtp_port_min: int = Field(20000, ge=1024, le=65534)
    rtp_port_max: int = Field(29999, ge=1025, le=65535)
    max_calls: int = Field(1000, ge=1, le=100000)
    media_timeout: float = Field(60.0, gt=0, le=3600)
    registrar_workers: int | None = Field(
        None, ge=0, le=16, description="REGISTER worker processes; null: one per CPU (max 4)"
    )
    ban_after_failures: int = Field(
        10, ge=1, le=1000, description="failed authentications in a minute that ban a source"
    )
    ban_seconds: float = Field(600.0, gt=0, le=7 * 86400)
    max_requests_per_second: float = Field(200.0, gt=0, le=100000, description="per source")
    trusted_networks: list[IPvAnyNetwork] = Field(
        default_factory=lambda: list(SipSettings().trusted_networks),
        max_length=64,
        description="sources never rate limited or banned",
    )

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        return value.lower()

    @field_validator("transports", "digest_algorithms")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("must not repeat an entry")
        return value

    @classmethod
    def from_settings(cls, s: SipSettings) -> SipConfig:
        return cls(
            domain=s.domain,
            port=s.port,
            transports=list(s.transports),
            digest_algorithms=list(s.digest_algorithms),
            rtp_port_min=s.rtp_port_min,
            rtp_port_max=s.rtp_port_max,
            max_calls=s.max_calls,
            media_timeout=s.media_timeout,
            registrar_workers=s.registrar_workers,
            ban_after_failures=s.ban_after_failures,
            ban_seconds=s.ban_seconds,
            max_requests_per_second=s.max_requests_per_second,
            trusted_networks=list(s.trusted_networks),
        )

    def to_settings(self, base: SipSettings) -> SipSettings:
        """``base`` (where to listen, timers...) with this document's values."""
        return base.model_copy(
            update={
                "domain": self.domain,
                "port": self.port,
                "transports": tuple(self.transports),
                "digest_algorithms": tuple(self.digest_algorithms),
                "rtp_port_min": self.rtp_port_min,
                "rtp_port_max": self.rtp_port_max,
                "max_calls": self.max_calls,
                "media_timeout": self.media_timeout,
                "registrar_workers": self.registrar_workers,
                "ban_after_failures": self.ban_after_failures,
                "ban_seconds": self.ban_seconds,
                "max_requests_per_second": self.max_requests_per_second,
                "trusted_networks": tuple(self.trusted_networks),
            }
        )


def applied_sip(source: Database | sqlite3.Connection) -> SipConfig | None:
    """The SIP section of the newest applied document in ``metadata.db`` (``source``: the
    database, or a connection inside a transaction); None before any was applied."""
    if isinstance(source, sqlite3.Connection):
        row = source.execute(_LATEST).fetchone()
    else:
        row = source.one(_LATEST)
    return None if row is None else SipConfig.model_validate(json.loads(row[0])["sip"])


def desired_sip_settings(metadata: Database, base: SipSettings) -> SipSettings:
    """The SIP settings the box should start with: ``base`` (from the command line) with the
    latest applied document's SIP section over it, if a document was ever applied."""
    stored = applied_sip(metadata)
    return base if stored is None else stored.to_settings(base)
