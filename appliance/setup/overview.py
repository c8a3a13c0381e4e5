"""What the status console shows, gathered from the box's parts through narrow providers.

Parts that other branches build (active calls from the SIP core, gateways from firmware,
sync lag from the Litestream supervisor, their alarms) are passed in as callables; until a
part is wired in, its provider reports nothing rather than inventing numbers.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from appliance.api.schemas.setup import Alarm, Gateway, Overview, Phone
from appliance.setup.service import SetupService
from pbx.store import Store

DISK_WARNING = 85.0
DISK_CRITICAL = 95.0


@dataclass
class OverviewProviders:
    active_calls: Callable[[], int] = lambda: 0
    gateways: Callable[[], list[Gateway]] = list
    sync_lag: Callable[[], float | None] = lambda: None
    alarms: Callable[[], list[Alarm]] = list
    clock: Callable[[], float] = time.time


@dataclass
class OverviewService:
    data_dir: Path
    store: Store
    setup: SetupService
    providers: OverviewProviders = field(default_factory=OverviewProviders)

    def overview(self) -> Overview:
        now = self.providers.clock()
        phones = [
            Phone(
                extension=b.aor.split("@")[0].removeprefix("sip:"),
                contact=b.contact,
                user_agent=b.user_agent,
                expires_in=max(0, int(b.expires_at - now)),
            )
            for b in self.store.bindings.all_active(now)
        ]
        disk = shutil.disk_usage(self.data_dir)
        used = 100.0 * disk.used / disk.total if disk.total else 0.0
        alarms = list(self.providers.alarms())
        if used >= DISK_CRITICAL:
            alarms.append(Alarm(severity="critical", text=f"disk {used:.0f}% full"))
        elif used >= DISK_WARNING:
            alarms.append(Alarm(severity="warning", text=f"disk {used:.0f}% full"))
        state = self.setup.state()
        if not state.completed:
            alarms.append(Alarm(severity="info", text="setup not finished"))
        if state.recipient and not state.backup_confirmed:
            alarms.append(Alarm(severity="warning", text="recording key backup not confirmed"))
        return Overview(
            hostname=state.hostname,
            phones=sorted(phones, key=lambda p: p.extension),
            active_calls=self.providers.active_calls(),
            gateways=self.providers.gateways(),
            sync_lag_seconds=self.providers.sync_lag(),
            disk_used_percent=round(used, 1),
            disk_free_bytes=disk.free,
            alarms=alarms,
        )
