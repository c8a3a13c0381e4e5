"""The pure planner against its model: plans reach the target, are idempotent, roll back."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.network.config import NetworkConfig, check_network_config
from appliance.network.plan import (
    AddAddress,
    AddRoute,
    CreateVlan,
    RemoveAddress,
    SetDns,
    SetLinkState,
    apply_steps,
    plan,
    satisfies,
)
from appliance.network.state import Link, NetState, Route, snapshot_target

NAMES = ("eth0", "eth1", "lan2")
GATEWAY_HOSTS = (1, 254)


def _subnet(n: int) -> str:
    return f"10.{n}.0"


@st.composite
def links(draw: st.DrawFn, name: str) -> Link:
    n = draw(st.integers(0, 5))
    hosts = draw(st.sets(st.integers(2, 9), max_size=2))
    return Link(
        name=name,
        up=draw(st.booleans()),
        mtu=draw(st.sampled_from((1500, 9000))),
        addresses=frozenset(ipaddress.ip_interface(f"{_subnet(n)}.{h}/24") for h in hosts),
        dhcp=draw(st.booleans()) if not hosts else False,
    )


@st.composite
def states(draw: st.DrawFn) -> NetState:
    state = NetState(dns=tuple(draw(st.lists(st.sampled_from(_DNS), max_size=2, unique=True))))
    for name in NAMES:
        state = state.with_link(draw(links(name)))
    # routes through gateways that are on-link, as the kernel would have them
    routes = set()
    for link in state.links:
        for addr in link.addresses:
            if draw(st.booleans()):
                gw = ipaddress.ip_address(f"{addr.network.network_address + 1}")
                if gw not in {a.ip for a in link.addresses}:
                    routes.add(Route(ipaddress.ip_network("192.0.2.0/24"), gw, link.name))
    # sometimes an existing voice VLAN on eth0
    if draw(st.booleans()):
        vid = draw(st.sampled_from((10, 20)))
        state = state.with_link(
            Link(name=f"eth0.{vid}", kind="vlan", parent="eth0", vlan_id=vid, up=True)
        )
    return replace(state, routes=frozenset(routes))


_DNS = tuple(ipaddress.ip_address(x) for x in ("9.9.9.9", "1.1.1.1", "10.0.0.53"))


@st.composite
def configs(draw: st.DrawFn) -> NetworkConfig:
    chosen = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True))
    subnets = draw(st.lists(st.integers(0, 7), min_size=4, max_size=4, unique=True))
    interfaces = []
    has_gateway = False
    for k, name in enumerate(chosen):
        net = _subnet(subnets[k])
        if draw(st.booleans()):
            iface: dict[str, object] = {"name": name, "dhcp": True}
        else:
            hosts = draw(st.sets(st.integers(2, 9), min_size=1, max_size=2))
            iface = {"name": name, "addresses": [f"{net}.{h}/24" for h in sorted(hosts)]}
            if not has_gateway and draw(st.booleans()):
                iface["gateway"] = f"{net}.{draw(st.sampled_from(GATEWAY_HOSTS))}"
                has_gateway = True
            if draw(st.booleans()):
                iface["routes"] = [{"to": "198.51.100.0/24", "via": f"{net}.1"}]
            iface["mtu"] = draw(st.sampled_from((None, 1500, 9000)))
        iface["dns"] = [str(s) for s in draw(st.lists(st.sampled_from(_DNS), max_size=2))]
        if name == "eth0" and draw(st.booleans()):
            vlan: dict[str, object] = {"id": draw(st.sampled_from((10, 30)))}
            if draw(st.booleans()):
                vlan["dhcp"] = True
            else:
                vlan["addresses"] = [f"{_subnet(subnets[3])}.5/24"]
            iface["voice_vlan"] = vlan
        interfaces.append(iface)
    config = NetworkConfig.model_validate({"interfaces": interfaces})
    assert check_network_config(config) == []
    return config


def _normalized(state: NetState) -> NetState:
    """DHCP links' addresses and routes belong to the DHCP client, not to the plan."""
    dhcp = {link.name for link in state.links if link.dhcp}
    return replace(
        state,
        links=tuple(replace(x, addresses=frozenset()) if x.dhcp else x for x in state.links),
        routes=frozenset(r for r in state.routes if r.iface not in dhcp),
    )


@settings(max_examples=400, deadline=None)
@given(states(), configs())
def test_plan_reaches_target_and_is_idempotent(state: NetState, config: NetworkConfig) -> None:
    target = config.to_target()
    steps = plan(state, target)
    after = apply_steps(state, steps)  # the model refuses what the kernel would refuse
    assert satisfies(after, target) == []
    assert plan(after, target) == []


@settings(max_examples=400, deadline=None)
@given(states(), configs())
def test_rollback_to_snapshot_restores_state(state: NetState, config: NetworkConfig) -> None:
    target = config.to_target()
    names = target.names()
    snapshot = snapshot_target(state, names)
    tried = apply_steps(state, plan(state, target))
    back = apply_steps(tried, plan(tried, snapshot))
    assert _normalized(back) == _normalized(state)
    assert plan(back, snapshot) == []


def test_plan_for_a_fresh_static_interface_in_order() -> None:
    state = NetState(links=(Link(name="eth0"),))
    config = NetworkConfig.model_validate(
        {
            "interfaces": [
                {
                    "name": "eth0",
                    "addresses": ["192.168.10.2/24"],
                    "gateway": "192.168.10.1",
                    "dns": ["192.168.10.1"],
                    "voice_vlan": {"id": 100, "addresses": ["10.100.0.1/24"]},
                }
            ]
        }
    )
    eth0 = ipaddress.ip_interface("192.168.10.2/24")
    default = Route(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_address("192.168.10.1"), "eth0")
    assert plan(state, config.to_target()) == [
        CreateVlan("eth0.100", "eth0", 100),
        SetLinkState("eth0", True),
        SetLinkState("eth0.100", True),
        AddAddress("eth0", eth0),
        AddAddress("eth0.100", ipaddress.ip_interface("10.100.0.1/24")),
        AddRoute(default),
        SetDns((ipaddress.ip_address("192.168.10.1"),)),
    ]


def test_changing_address_re_adds_the_default_route() -> None:
    old = ipaddress.ip_interface("192.168.10.2/24")
    new = ipaddress.ip_interface("192.168.10.3/24")
    default = Route(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_address("192.168.10.1"), "eth0")
    state = NetState(
        links=(Link(name="eth0", up=True, addresses=frozenset({old})),), routes=frozenset({default})
    )
    config = NetworkConfig.model_validate(
        {"interfaces": [{"name": "eth0", "addresses": [str(new)], "gateway": "192.168.10.1"}]}
    )
    steps = plan(state, config.to_target())
    assert RemoveAddress("eth0", old) in steps
    assert steps[-1] == AddRoute(default)
    assert satisfies(apply_steps(state, steps), config.to_target()) == []


def test_interfaces_not_mentioned_are_left_alone() -> None:
    lan2 = Link(name="lan2", up=True, addresses=frozenset({ipaddress.ip_interface("10.5.0.2/24")}))
    state = NetState(links=(Link(name="eth0", up=True), lan2))
    config = NetworkConfig.model_validate({"interfaces": [{"name": "eth0", "dhcp": True}]})
    steps = plan(state, config.to_target())
    assert all(getattr(s, "name", "eth0") == "eth0" for s in steps)
    assert not any(isinstance(s, SetDns) for s in steps)
