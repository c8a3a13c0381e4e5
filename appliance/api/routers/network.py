"""Network settings: read the links, try a configuration (netplan-try style), confirm, revert."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from appliance.api.console_deps import NetworkDep, SetupDep, refuse
from appliance.api.errors import AUTH, responses
from appliance.api.policy import Permission, Principal, audit, require
from appliance.api.schemas.setup import LinkInfo, NetworkView, RouteInfo, TrialInfo, TryBody
from appliance.network.config import NetworkConfigError
from appliance.network.service import TrialStatus

router = APIRouter(prefix="/network", tags=["network"])

Reader = Annotated[Principal, Depends(require(Permission.CONFIG_READ))]
Writer = Annotated[Principal, Depends(require(Permission.CONFIG_WRITE))]


def _trial(status: TrialStatus) -> TrialInfo:
    return TrialInfo(
        outcome=status.outcome,
        message=status.message,
        steps=status.steps,
        confirm_within=status.confirm_within,
    )


@router.get("", response_model=NetworkView, responses=responses(*AUTH))
async def get_network(network: NetworkDep, _: Reader) -> NetworkView:
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


@router.post("/try", response_model=TrialInfo, responses=responses(*AUTH, 422))
async def try_network(
    request: Request, body: TryBody, network: NetworkDep, who: Writer
) -> TrialInfo:
    """Apply; unless the gateway answers and `confirm` follows in time, the old state returns."""
    try:
        config = await network.validate(body.config)
    except NetworkConfigError as exc:
        refuse(exc, "config")
    trial = _trial(await network.try_apply(config, body.confirm_within))
    audit(request, who.login, "network.try", trial.outcome, {"message": trial.message})
    return trial


@router.post("/confirm", response_model=TrialInfo, responses=responses(*AUTH))
async def confirm_network(
    request: Request, network: NetworkDep, setup: SetupDep, who: Writer
) -> TrialInfo:
    status = await network.confirm()
    if status.outcome == "confirmed":
        setup.set_network_confirmed()
        audit(request, who.login, "network.confirmed")
    return _trial(status)


@router.post("/revert", response_model=TrialInfo, responses=responses(*AUTH))
async def revert_network(request: Request, network: NetworkDep, who: Writer) -> TrialInfo:
    trial = _trial(await network.revert())
    audit(request, who.login, "network.reverted", trial.outcome)
    return trial
