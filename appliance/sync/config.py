"""Litestream's configuration and environment, rendered from :class:`SyncSettings` (pure).

Only ``metadata.db`` is named: ``local.db`` (secrets) and the recordings never appear in
the file, so Litestream cannot ship them by mistake. The file is JSON, which YAML (what
Litestream reads) accepts as it is, so no quoting rules can be got wrong; Litestream is
started with ``-no-expand-env`` so a ``$`` in a path stays a ``$``.

Credentials are not in the file: they go to Litestream in its environment
(``LITESTREAM_ACCESS_KEY_ID``/``LITESTREAM_SECRET_ACCESS_KEY``), built here from a clean
copy of ours without any inherited ``AWS_*`` (``AWS_CA_BUNDLE`` in particular makes every
S3 call of Litestream 0.5 fail with "unable to add custom RootCAs").
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.store import METADATA_DB
from appliance.sync.settings import FileTarget, S3Target, SyncSettings, Target

__all__ = [
    "SHUTDOWN_SYNC_SECONDS",
    "RuntimePaths",
    "describe_target",
    "go_duration",
    "litestream_env",
    "render_config",
    "render_text",
    "secret_values",
]

# On stop, Litestream tries to ship what is left for this long; the supervisor waits a
# little longer before it kills.
SHUTDOWN_SYNC_SECONDS = 3.0
_REPLICA_NAME = "metadata"  # the replica's folder under a file target


@dataclass(frozen=True, slots=True)
class RuntimePaths:
    """Where the sync service keeps its files: ``<data>/sync/`` (mode 0700), never
    replicated. A unix socket path must fit in 108 bytes; a long data path gets its socket
    in a private temporary folder instead (``socket_dir``)."""

    data_dir: Path
    database: Path
    folder: Path
    config: Path
    socket: Path
    status: Path

    @classmethod
    def for_data(cls, data_dir: Path, socket_dir: Path | None = None) -> RuntimePaths:
        data_dir = data_dir.absolute()
        folder = data_dir / "sync"
        socket = (socket_dir or folder) / "litestream.sock"
        return cls(
            data_dir=data_dir,
            database=data_dir / METADATA_DB,
            folder=folder,
            config=folder / "litestream.yml",
            socket=socket,
            status=folder / "status.json",
        )


def go_duration(seconds: float) -> str:
    """Seconds as a Go duration string (millisecond resolution, at least 1 ms)."""
    return f"{max(1, round(seconds * 1000))}ms"


def _replica(target: Target, data_dir: Path) -> dict[str, Any]:
    if isinstance(target, FileTarget):
        return {"type": "file", "path": str(target.folder(data_dir) / _REPLICA_NAME)}
    replica: dict[str, Any] = {
        "type": "s3",
        "bucket": target.bucket,
        "path": target.path,
        "region": target.region,
        "force-path-style": target.force_path_style,
    }
    if target.endpoint:
        replica["endpoint"] = target.endpoint
    if target.skip_verify:
        replica["skip-verify"] = True
    return replica


def render_config(settings: SyncSettings, paths: RuntimePaths) -> dict[str, Any]:
    """The configuration for one ``litestream replicate`` of ``metadata.db``."""
    replica = _replica(settings.target, paths.data_dir)
    replica["sync-interval"] = go_duration(settings.sync_interval)
    return {
        "socket": {"enabled": True, "path": str(paths.socket)},
        "shutdown-sync-timeout": go_duration(SHUTDOWN_SYNC_SECONDS),
        "dbs": [
            {
                "path": str(paths.database),
                "monitor-interval": go_duration(settings.monitor_interval),
                "checkpoint-interval": go_duration(settings.checkpoint_interval),
                "replica": replica,
            }
        ],
    }


def render_text(config: Mapping[str, Any]) -> str:
    return json.dumps(config, indent=2) + "\n"


def litestream_env(settings: SyncSettings, base: Mapping[str, str]) -> dict[str, str]:
    """Litestream's environment: ``base`` without ``AWS_*``/``LITESTREAM_*`` variables,
    plus the target's credentials."""
    env = {k: v for k, v in base.items() if not k.startswith(("AWS_", "LITESTREAM_"))}
    target = settings.target
    if isinstance(target, S3Target):
        env["LITESTREAM_ACCESS_KEY_ID"] = target.access_key_id
        env["LITESTREAM_SECRET_ACCESS_KEY"] = target.secret_access_key.get_secret_value()
    return env


def secret_values(settings: SyncSettings) -> tuple[str, ...]:
    """What must never be shown: scrubbed from Litestream's log lines before they are kept."""
    target = settings.target
    if isinstance(target, S3Target):
        return (target.secret_access_key.get_secret_value(),)
    return ()


def describe_target(target: Target, data_dir: Path) -> str:
    """The target for people: no secrets (the access key id is not shown either)."""
    if isinstance(target, FileTarget):
        return f"file://{target.folder(data_dir) / _REPLICA_NAME}"
    where = f" at {target.endpoint}" if target.endpoint else ""
    return f"s3://{target.bucket}/{target.path} ({target.region}{where})"
