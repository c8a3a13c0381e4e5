"""The box's management API (FastAPI): :func:`create_app` over a :class:`BoxContext`."""

from appliance.api.app import create_app
from appliance.api.context import ApiSettings, BoxContext, CallControl, ConfigApplier, SyncSource
from appliance.api.recordings import RecordingInfo, RecordingLibrary

__all__ = [
    "ApiSettings",
    "BoxContext",
    "CallControl",
    "ConfigApplier",
    "RecordingInfo",
    "RecordingLibrary",
    "SyncSource",
    "create_app",
]
