"""Network settings: read the links, try a configuration (netplan-try style), confirm, revert."""

from __future__ import annotations

from fastapi import APIRouter

from appliance.api.console_deps import NetworkDep, SetupDep, refuse
from appliance.api.schemas.setup import LinkInfo, NetworkView, RouteInfo, TrialInfo, TryBody
from appliance.network.config import NetworkConfigError
from appliance.network.service import TrialStatus

router = APIRouter(prefix="/network", tags=["network"])


def _trial(status: TrialStatus) -> TrialInfo:
    return TrialInfo(
        outcome=status.outcome,
        message=status.message,
        steps=status.steps,
        confirm_within=status.confirm_within,
    )


@router.get("")
async def get_network(network: NetworkDep) -> NetworkView:
    state = await network.read_state()
    saved = network.saved()
    return NetworkView(
        links=[
            LinkInfo(
                name=x.name,
                mac=x.mac,
                up=x.up,
                carrier=x.carrier,
                mtu=x.mtu,
                kind=x.kind,
                addresses=sorted(str(a) for a in x.addresses),
                dhcp=x.dhcp,
            )
            for x in state.links
            if x.name != "lo"
        ],
        routes=[
            RouteInfo(dst=str(r.dst), gateway=str(r.gateway), iface=r.iface)
            for r in sorted(state.routes)
        ],
        dns=[str(s) for s in state.dns],
        saved=saved.model_dump(mode="json") if saved else None,
        trial=_trial(network.status),
    )


@router.post("/try")
async def try_network(body: TryBody, network: NetworkDep) -> TrialInfo:
    """Apply; unless the gateway answers and `confirm` follows in time, the old state returns."""
    try:
        config = await network.validate(body.config)
    except NetworkConfigError as exc:
        refuse(exc, "config")
    return _trial(await network.try_apply(config, body.confirm_within))


@router.post("/confirm")
async def confirm_network(network: NetworkDep, setup: SetupDep) -> TrialInfo:
    status = await network.confirm()
    if status.outcome == "confirmed":
        setup.set_network_confirmed()
    return _trial(status)


@router.post("/revert")
async def revert_network(network: NetworkDep) -> TrialInfo:
    return _trial(await network.revert())
