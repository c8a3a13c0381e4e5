"""The door guard's bans through the API: listed for viewers, lifted by admins (audited),
in process and over the SIP core's control socket."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from support.api import Box, make_box

from appliance.api.accounts import Role
from appliance.api.calls import CoreGuard
from appliance.service.corectl import CoreControlServer, RemoteGuard
from pbx.guard import Guard, GuardSettings

SCANNER = "198.51.100.7"


def banned_guard() -> Guard:
    """A guard that banned SCANNER (at monotonic time 0, for longer than the test runs)."""
    guard = Guard(GuardSettings(trusted=(), ban_seconds=1e9))
    for _ in range(10):
        guard.failed(SCANNER, 0.0)
    return guard


def test_bans_are_listed_and_an_admin_lifts_one(tmp_path: Path) -> None:
    guard = banned_guard()
    box: Box = make_box(tmp_path, guard=CoreGuard(guard))
    box.account("admin", Role.ADMIN)
    box.account("viewer", Role.VIEWER)
    try:
        viewer, admin = box.login("viewer"), box.login("admin")
        listed = box.lan.get("/sip/bans", headers=viewer).json()
        assert [b["address"] for b in listed] == [SCANNER] and listed[0]["seconds_left"] > 0
        assert box.lan.delete(f"/sip/bans/{SCANNER}", headers=viewer).status_code == 403
        assert box.lan.delete("/sip/bans/not-an-address", headers=admin).status_code == 422
        assert box.lan.delete(f"/sip/bans/{SCANNER}", headers=admin).status_code == 204
        assert box.lan.get("/sip/bans", headers=viewer).json() == []
        assert box.lan.delete(f"/sip/bans/{SCANNER}", headers=admin).status_code == 404
        assert [(e.actor, e.target) for e in box.audit("sip.unbanned")] == [("admin", SCANNER)]
        assert guard.allows(SCANNER, 1.0)
    finally:
        box.store.close()


def test_without_a_sip_core_the_bans_are_unavailable(tmp_path: Path) -> None:
    box = make_box(tmp_path)
    box.account("admin", Role.ADMIN)
    try:
        assert box.lan.get("/sip/bans", headers=box.login("admin")).status_code == 503
    finally:
        box.store.close()


async def test_the_manager_asks_the_core_over_its_control_socket(tmp_path: Path) -> None:
    guard = banned_guard()
    path = tmp_path / "core.sock"
    server = CoreControlServer(cast(Any, None), path, guard=guard)  # no calls asked here
    await server.start()
    try:
        remote = RemoteGuard(path)
        assert [b.address for b in await remote.bans()] == [SCANNER]
        assert await remote.unban(SCANNER)
        assert not await remote.unban(SCANNER)
        assert await remote.bans() == []
    finally:
        await server.close()
