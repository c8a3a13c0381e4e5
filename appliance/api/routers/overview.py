"""One call for the status console: phones, calls, gateways, sync lag, disk, alarms."""

from __future__ import annotations

from fastapi import APIRouter

from appliance.api.console_deps import OverviewDep
from appliance.api.schemas.setup import Overview

router = APIRouter(prefix="/overview", tags=["overview"])


@router.get("")
def get_overview(overview: OverviewDep) -> Overview:
    return overview.overview()
