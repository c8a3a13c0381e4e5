"""Cloud sync of ``metadata.db`` with Litestream: settings, the rendered Litestream
configuration, the supervising service with its status and alarms, and restore.
``local.db`` and the recordings are never replicated."""

from appliance.sync.config import RuntimePaths, describe_target, render_config
from appliance.sync.restore import (
    BoxRunning,
    IncompatibleSchema,
    LiveDatabase,
    NothingToRestore,
    RestoreError,
    RestoreReport,
    restore_metadata,
)
from appliance.sync.settings import (
    FileTarget,
    S3Target,
    SettingsError,
    SyncSettings,
    load_settings,
)
from appliance.sync.status import SyncState, SyncStatus
from appliance.sync.supervisor import SyncError, SyncService, read_status

__all__ = [
    "BoxRunning",
    "FileTarget",
    "IncompatibleSchema",
    "LiveDatabase",
    "NothingToRestore",
    "RestoreError",
    "RestoreReport",
    "RuntimePaths",
    "S3Target",
    "SettingsError",
    "SyncError",
    "SyncService",
    "SyncSettings",
    "SyncState",
    "SyncStatus",
    "describe_target",
    "load_settings",
    "read_status",
    "render_config",
    "restore_metadata",
]
