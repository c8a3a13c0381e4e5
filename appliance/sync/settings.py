"""Cloud sync settings: where ``metadata.db`` is replicated to, and how often.

The target is either a folder (``file``: the default, ``<data>/cloud``, which stands for the
cloud bucket when nothing is configured) or an S3-compatible bucket (``s3``). The secret key
is a :class:`~pydantic.SecretStr`: it never appears in ``repr``, logs or status, and reaches
Litestream only through its environment (see :mod:`appliance.sync.config`).

The settings live in ``<data>/sync.json`` when the installer configured a target; a file
holding a secret key must be private to its owner (mode 0600), as ssh insists for its keys.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = [
    "SETTINGS_FILE",
    "FileTarget",
    "S3Target",
    "SettingsError",
    "SyncSettings",
    "Target",
    "load_settings",
]

SETTINGS_FILE = "sync.json"

# Litestream takes Go durations; seconds as floats are turned into milliseconds for it.
Seconds = Annotated[float, Field(gt=0, le=86_400)]


class SettingsError(ValueError):
    """The sync settings are unusable; the message names the field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileTarget(_Model):
    """A plain folder. ``path=None`` means ``<data>/cloud``."""

    kind: Literal["file"] = "file"
    path: Path | None = None

    def folder(self, data_dir: Path) -> Path:
        return (self.path if self.path is not None else data_dir / "cloud").absolute()


class S3Target(_Model):
    """An S3-compatible bucket. ``endpoint`` is empty for AWS itself, or the URL of another
    provider (MinIO, Garage, SeaweedFS, R2...); those usually need ``force_path_style``."""

    kind: Literal["s3"] = "s3"
    bucket: str = Field(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.\-]+[a-z0-9]$")
    path: str = Field(default="edgepbx/metadata", min_length=1, max_length=512)
    endpoint: str = ""
    region: str = Field(default="us-east-1", min_length=1, max_length=64)
    access_key_id: str = Field(min_length=1, max_length=256)
    secret_access_key: SecretStr
    force_path_style: bool = True
    skip_verify: bool = False  # accept a self-signed endpoint certificate (a LAN MinIO)

    @field_validator("endpoint")
    @classmethod
    def _endpoint_is_a_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("path")
    @classmethod
    def _path_is_relative(cls, value: str) -> str:
        cleaned = value.strip("/")
        if not cleaned or ".." in cleaned.split("/"):
            raise ValueError("must be a non-empty path inside the bucket, without '..'")
        return cleaned

    @field_validator("secret_access_key")
    @classmethod
    def _secret_not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("must not be empty")
        return value


Target = Annotated[FileTarget | S3Target, Field(discriminator="kind")]


class SyncSettings(_Model):
    """Everything the sync service needs. Intervals in seconds.

    ``monitor_interval``/``sync_interval``: how often Litestream looks at the WAL and ships
    it (its defaults, 1 s each, give about 0.6 s from commit to restorable; 0.1 s gives
    about 0.2 s at more CPU and more requests to the bucket). ``checkpoint_interval``:
    Litestream owns checkpointing. ``status_interval``: how often the supervisor reads
    Litestream's position. ``behind_after``/``alarm_after``: lag past which the status says
    behind, and an alarm is raised. ``restart_min``/``restart_max``: the restart backoff.
    """

    enabled: bool = True
    target: Target = Field(default_factory=FileTarget)
    monitor_interval: Seconds = 1.0
    sync_interval: Seconds = 1.0
    checkpoint_interval: Seconds = 60.0
    status_interval: Seconds = 1.0
    behind_after: Seconds = 10.0
    alarm_after: Seconds = 60.0
    restart_min: Seconds = 0.5
    restart_max: Seconds = 30.0
    stable_after: Seconds = 60.0  # a run this long resets the restart backoff
    litestream: Path | None = None  # the binary; None: the one installed with edgepbx

    @model_validator(mode="after")
    def _ordered(self) -> SyncSettings:
        if self.restart_min > self.restart_max:
            raise ValueError("restart_min must not exceed restart_max")
        if self.behind_after > self.alarm_after:
            raise ValueError("behind_after must not exceed alarm_after")
        return self


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "(settings)"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def load_settings(data_dir: Path) -> SyncSettings:
    """``<data>/sync.json`` if present, else the defaults (a folder target in the data
    folder). Raises :class:`SettingsError` naming the field; the secret is never echoed."""
    path = data_dir / SETTINGS_FILE
    if not path.exists():
        return SyncSettings()
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SettingsError(f"{path}: not readable JSON: {exc}") from exc
    try:
        settings = SyncSettings.model_validate(raw)
    except ValidationError as exc:
        raise SettingsError(f"{path}: {_describe(exc)}") from None
    if isinstance(settings.target, S3Target) and path.stat().st_mode & (
        stat.S_IRWXG | stat.S_IRWXO
    ):
        raise SettingsError(
            f"{path}: holds target.secret_access_key but is readable by others; chmod 600 {path}"
        )
    return settings
