"""One read for the status console: phones, calls, gateways, sync lag, disk, alarms."""

from __future__ import annotations

import shutil
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from appliance.api.console_deps import SetupDep
from appliance.api.errors import AUTH, responses
from appliance.api.policy import Permission, Principal, box, require
from appliance.api.schemas.setup import Alarm, Overview, Phone

router = APIRouter(prefix="/overview", tags=["overview"])

DISK_WARNING = 85.0
DISK_CRITICAL = 95.0


@router.get("", response_model=Overview, responses=responses(*AUTH))
def get_overview(
    request: Request,
    setup: SetupDep,
    _: Annotated[Principal, Depends(require(Permission.SYSTEM_READ))],
) -> Overview:
    ctx = box(request)
    now = ctx.clock()
    phones = [
        Phone(
            extension=b.aor,
            contact=b.contact,
            user_agent=b.user_agent,
            expires_in=max(0, int(b.expires_at - now)),
        )
        for b in ctx.store.bindings.all_active(now)
    ]
    alarms = [_alarm(a.to_json()) for a in ctx.all_alarms()]
    disk = shutil.disk_usage(setup.data_dir)
    used = 100.0 * disk.used / disk.total if disk.total else 0.0
    if used >= DISK_WARNING:
        severity = "critical" if used >= DISK_CRITICAL else "warning"
        alarms.append(Alarm(severity=severity, text=f"disk {used:.0f}% full", source="disk"))
    state = setup.state()
    if not state.completed:
        alarms.append(Alarm(severity="info", text="setup not finished"))
    if state.recipient and not state.backup_confirmed:
        alarms.append(Alarm(severity="warning", text="recording key backup not confirmed"))
    sync_lag = None
    if ctx.sync is not None:
        lag = ctx.sync.status().to_json().get("lag_seconds")
        sync_lag = float(lag) if isinstance(lag, int | float) else None
    return Overview(
        hostname=state.hostname,
        phones=sorted(phones, key=lambda p: p.extension),
        active_calls=len(ctx.calls.active()) if ctx.calls is not None else None,
        gateways=[],  # firmware's gateways are not wired into the API yet
        sync_lag_seconds=sync_lag,
        disk_used_percent=round(used, 1),
        disk_free_bytes=disk.free,
        alarms=alarms,
    )


def _alarm(data: dict[str, Any]) -> Alarm:
    severity = data.get("severity")
    return Alarm(
        severity=severity if severity in ("info", "warning", "critical") else "warning",
        text=str(data.get("message", data.get("code", "?"))),
        source=str(data.get("source", "box")),
    )
