"""Apply a network configuration the way `netplan try` does.

`try_apply` snapshots the current state, applies the plan, checks that the gateway answers,
and keeps the new state only if the installer confirms within a deadline; otherwise (or if a
step fails, or the gateway does not answer) it plans back to the snapshot. A confirmed
configuration is saved in the data folder and re-applied at boot by `apply_saved`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from appliance.network.config import NetworkConfig, parse_network_config
from appliance.network.netlink import NetworkApplyError
from appliance.network.plan import Step, describe, plan
from appliance.network.state import IPAddress, NetState, Target, snapshot_target

log = logging.getLogger(__name__)

SAVED_FILE = "network.json"


class NetworkBackend(Protocol):
    def read_state(self) -> NetState: ...
    def execute(self, step: Step) -> None: ...
    def gateway_reachable(self, gateway: IPAddress, timeout: float) -> bool: ...


Outcome = Literal["unchanged", "pending", "rolled_back", "confirmed", "failed"]


@dataclass
class TrialStatus:
    outcome: Outcome
    message: str = ""
    steps: list[str] = field(default_factory=list)
    confirm_within: float | None = None


class NetworkService:
    def __init__(
        self,
        backend: NetworkBackend,
        data_dir: Path,
        check_timeout: float = 3.0,
    ) -> None:
        self.backend = backend
        self.data_dir = data_dir
        self.check_timeout = check_timeout
        self.status = TrialStatus("unchanged")
        self._pending: NetworkConfig | None = None
        self._snapshot: Target | None = None
        self._timer: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def read_state(self) -> NetState:
        return await asyncio.to_thread(self.backend.read_state)

    async def validate(self, data: dict[str, object] | NetworkConfig) -> NetworkConfig:
        state = await self.read_state()
        known = frozenset(x.name for x in state.links if x.kind != "vlan")
        return parse_network_config(data, known)

    async def preview(self, config: NetworkConfig) -> list[Step]:
        return plan(await self.read_state(), config.to_target())

    async def _execute(self, steps: list[Step]) -> None:
        for step in steps:
            await asyncio.to_thread(self.backend.execute, step)

    async def _rollback(self, snapshot: Target) -> None:
        current = await self.read_state()
        await self._execute(plan(current, snapshot))

    async def try_apply(self, config: NetworkConfig, confirm_within: float = 120.0) -> TrialStatus:
        """Apply `config`; roll back unless the gateway answers and `confirm` comes in time."""
        async with self._lock:
            await self._cancel_timer()
            if self._snapshot is not None:  # a trial still pending: start from its snapshot
                await self._rollback(self._snapshot)
                self._snapshot = None
            state = await self.read_state()
            target = config.to_target()
            steps = plan(state, target)
            lines = [describe(s) for s in steps]
            if not steps:
                self.status = TrialStatus("unchanged", "nothing to change", lines)
                self._save(config)
                return self.status
            snapshot = snapshot_target(state, target.names())
            try:
                await self._execute(steps)
            except NetworkApplyError as exc:
                await self._rollback(snapshot)
                self.status = TrialStatus("failed", f"{exc}; previous settings restored", lines)
                return self.status
            unreachable = [
                gw
                for t in target.links
                if not t.dhcp
                for gw in sorted({r.gateway for r in t.routes}, key=str)
                if not await asyncio.to_thread(
                    self.backend.gateway_reachable, gw, self.check_timeout
                )
            ]
            if unreachable:
                await self._rollback(snapshot)
                gws = ", ".join(map(str, unreachable))
                self.status = TrialStatus(
                    "rolled_back",
                    f"gateway {gws} did not answer; settings restored",
                    lines,
                )
                return self.status
            self._pending, self._snapshot = config, snapshot
            self._timer = asyncio.create_task(self._expire(confirm_within))
            self.status = TrialStatus(
                "pending", "applied; confirm to keep it", lines, confirm_within
            )
            return self.status

    async def _expire(self, after: float) -> None:
        await asyncio.sleep(after)
        async with self._lock:
            if self._snapshot is not None:
                log.warning("network settings not confirmed in %.0f s: rolling back", after)
                await self._rollback(self._snapshot)
                self._pending = self._snapshot = None
                self.status = TrialStatus(
                    "rolled_back", "not confirmed in time; previous settings restored"
                )
            self._timer = None

    async def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()
            await asyncio.gather(timer, return_exceptions=True)

    async def confirm(self) -> TrialStatus:
        async with self._lock:
            if self._pending is None:
                return self.status
            await self._cancel_timer()
            self._save(self._pending)
            self._pending = self._snapshot = None
            self.status = TrialStatus("confirmed", "network settings saved")
            return self.status

    async def revert(self) -> TrialStatus:
        async with self._lock:
            await self._cancel_timer()
            if self._snapshot is not None:
                await self._rollback(self._snapshot)
                self._pending = self._snapshot = None
                self.status = TrialStatus("rolled_back", "reverted; previous settings restored")
            return self.status

    def saved(self) -> NetworkConfig | None:
        path = self.data_dir / SAVED_FILE
        if not path.exists():
            return None
        return NetworkConfig.model_validate_json(path.read_text())

    def _save(self, config: NetworkConfig) -> None:
        path = self.data_dir / SAVED_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(config.model_dump(mode="json"), indent=2) + "\n")
        os.replace(tmp, path)

    async def apply_saved(self) -> list[str]:
        """At boot: bring back the confirmed configuration (no trial: it was confirmed)."""
        config = self.saved()
        if config is None:
            return []
        steps = plan(await self.read_state(), config.to_target())
        await self._execute(steps)
        return [describe(s) for s in steps]
