"""The pure planner: (current state, target) -> ordered steps, and a model that applies them.

Nothing here touches the kernel. `apply_steps` is the in-memory twin of the pyroute2 applier;
the property tests check that applying a plan to it reaches the target and that planning
again yields nothing.

Order matters to the kernel: a gateway must sit in a connected subnet before a route through
it is added, and removing an address can take routes with it, so routes on a link whose
addresses change are removed first and added back afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from appliance.network.state import (
    IPAddress,
    IPInterface,
    Link,
    LinkTarget,
    NetState,
    Route,
    Target,
)


@dataclass(frozen=True)
class CreateVlan:
    name: str
    parent: str
    vlan_id: int


@dataclass(frozen=True)
class DeleteLink:
    name: str


@dataclass(frozen=True)
class SetMtu:
    name: str
    mtu: int


@dataclass(frozen=True)
class SetLinkState:
    name: str
    up: bool


@dataclass(frozen=True)
class StopDhcp:
    name: str


@dataclass(frozen=True)
class StartDhcp:
    name: str


@dataclass(frozen=True)
class RemoveRoute:
    route: Route


@dataclass(frozen=True)
class AddRoute:
    route: Route


@dataclass(frozen=True)
class RemoveAddress:
    name: str
    address: IPInterface


@dataclass(frozen=True)
class AddAddress:
    name: str
    address: IPInterface


@dataclass(frozen=True)
class SetDns:
    servers: tuple[IPAddress, ...]


Step = (
    CreateVlan
    | DeleteLink
    | SetMtu
    | SetLinkState
    | StopDhcp
    | StartDhcp
    | RemoveRoute
    | AddRoute
    | RemoveAddress
    | AddAddress
    | SetDns
)


def describe(step: Step) -> str:
    """One line for the console and the logs."""
    match step:
        case CreateVlan(name, parent, vid):
            return f"create VLAN {vid} on {parent} as {name}"
        case DeleteLink(name):
            return f"delete link {name}"
        case SetMtu(name, mtu):
            return f"{name}: set MTU {mtu}"
        case SetLinkState(name, up):
            return f"{name}: set link {'up' if up else 'down'}"
        case StopDhcp(name):
            return f"{name}: stop DHCP"
        case StartDhcp(name):
            return f"{name}: start DHCP"
        case RemoveRoute(route):
            return f"{route.iface}: remove route {route}"
        case AddRoute(route):
            return f"{route.iface}: add route {route}"
        case RemoveAddress(name, address):
            return f"{name}: remove address {address}"
        case AddAddress(name, address):
            return f"{name}: add address {address}"
        case SetDns(servers):
            return "DNS servers: " + (", ".join(map(str, servers)) or "none")
    raise AssertionError(step)


def plan(current: NetState, target: Target) -> list[Step]:
    """The steps that turn `current` into `target`; empty when it is already there."""
    names = target.names()
    wanted = {t.name: t for t in target.links}
    # VLAN children of managed links that the target no longer has
    doomed = [
        link
        for link in current.links
        if link.parent in names and link.vlan_id is not None and link.name not in wanted
    ]
    stops: list[Step] = [StopDhcp(link.name) for link in doomed if link.dhcp]
    deletes: list[Step] = [DeleteLink(link.name) for link in doomed]
    creates: list[Step] = []
    link_states: list[Step] = []
    route_removals: list[Step] = []
    address_removals: list[Step] = []
    address_adds: list[Step] = []
    route_adds: list[Step] = []
    starts: list[Step] = []
    for t in target.links:
        link = current.link(t.name)
        if link is None:
            if t.vlan is None:
                continue  # hardware that is gone: configuration validation reports it
            creates.append(CreateVlan(t.name, *t.vlan))
            link = Link(name=t.name, kind="vlan", parent=t.vlan[0], vlan_id=t.vlan[1])
        if t.mtu is not None and link.mtu != t.mtu:
            link_states.append(SetMtu(t.name, t.mtu))
        if link.up != t.up:
            link_states.append(SetLinkState(t.name, t.up))
        have_routes = {r for r in current.routes if r.iface == t.name}
        if t.dhcp:
            if not link.dhcp:
                # what is there now was set statically: the DHCP client brings its own
                address_removals += [RemoveAddress(t.name, a) for a in sorted_ifs(link)]
                route_removals += [RemoveRoute(r) for r in sorted(have_routes)]
                starts.append(StartDhcp(t.name))
            continue
        if link.dhcp:
            stops.append(StopDhcp(t.name))
        have = link.managed_addresses
        gone = have - t.addresses
        address_removals += [RemoveAddress(t.name, a) for a in sorted(gone, key=str)]
        address_adds += [AddAddress(t.name, a) for a in sorted(t.addresses - have, key=str)]
        # removing an address may take the kernel's routes with it: re-add them explicitly
        keep = set() if gone else have_routes & t.routes
        route_removals += [RemoveRoute(r) for r in sorted(have_routes - keep)]
        route_adds += [AddRoute(r) for r in sorted(t.routes - keep)]
    dns: list[Step] = []
    if target.dns is not None and target.dns != current.dns:
        dns.append(SetDns(target.dns))
    return [
        *stops,
        *deletes,
        *creates,
        *link_states,
        *route_removals,
        *address_removals,
        *address_adds,
        *route_adds,
        *starts,
        *dns,
    ]


def sorted_ifs(link: Link) -> list[IPInterface]:
    return sorted(link.managed_addresses, key=str)


class ModelError(ValueError):
    """A step that the kernel would refuse (the model's stand-in for a netlink error)."""


def apply_steps(state: NetState, steps: list[Step]) -> NetState:
    """Apply steps to a model state, refusing what the kernel would refuse."""
    for step in steps:
        state = _apply(state, step)
    return state


def _need(state: NetState, name: str) -> Link:
    link = state.link(name)
    if link is None:
        raise ModelError(f"{name}: no such link")
    return link


def _apply(state: NetState, step: Step) -> NetState:
    match step:
        case CreateVlan(name, parent, vid):
            if state.link(name) is not None:
                raise ModelError(f"{name}: exists")
            _need(state, parent)
            return state.with_link(Link(name=name, kind="vlan", parent=parent, vlan_id=vid))
        case DeleteLink(name):
            _need(state, name)
            return state.without_link(name)
        case SetMtu(name, mtu):
            return state.with_link(replace(_need(state, name), mtu=mtu))
        case SetLinkState(name, up):
            return state.with_link(replace(_need(state, name), up=up))
        case StopDhcp(name):
            return state.with_link(replace(_need(state, name), dhcp=False))
        case StartDhcp(name):
            return state.with_link(replace(_need(state, name), dhcp=True))
        case AddAddress(name, address):
            link = _need(state, name)
            if address in link.addresses:
                raise ModelError(f"{name}: {address} exists")
            return state.with_link(replace(link, addresses=link.addresses | {address}))
        case RemoveAddress(name, address):
            link = _need(state, name)
            if address not in link.addresses:
                raise ModelError(f"{name}: no address {address}")
            link = replace(link, addresses=link.addresses - {address})
            # like the kernel: routes whose gateway is no longer on-link go away
            routes = frozenset(
                r
                for r in state.routes
                if r.iface != name or any(r.gateway in a.network for a in link.addresses)
            )
            return replace(state.with_link(link), routes=routes)
        case AddRoute(route):
            link = _need(state, route.iface)
            if route in state.routes:
                raise ModelError(f"{route}: exists")
            if not any(route.gateway in a.network for a in link.addresses):
                raise ModelError(f"{route}: network unreachable")
            return replace(state, routes=state.routes | {route})
        case RemoveRoute(route):
            if route not in state.routes:
                raise ModelError(f"{route}: no such route")
            return replace(state, routes=state.routes - {route})
        case SetDns(servers):
            return replace(state, dns=servers)
    raise AssertionError(step)


def satisfies(state: NetState, target: Target) -> list[str]:
    """What in `state` differs from `target` (empty: the target is reached)."""
    problems = []
    names = target.names()
    wanted = {t.name for t in target.links}
    for link in state.links:
        if link.parent in names and link.vlan_id is not None and link.name not in wanted:
            problems.append(f"{link.name}: should be deleted")
    for t in target.links:
        found = state.link(t.name)
        if found is None:
            if t.vlan is not None:
                problems.append(f"{t.name}: missing")
            continue
        problems += _link_problems(state, found, t)
    if target.dns is not None and state.dns != target.dns:
        problems.append(f"dns {state.dns} != {target.dns}")
    return problems


def _link_problems(state: NetState, link: Link, t: LinkTarget) -> list[str]:
    problems = []
    if link.up != t.up:
        problems.append(f"{t.name}: up={link.up}")
    if t.mtu is not None and link.mtu != t.mtu:
        problems.append(f"{t.name}: mtu {link.mtu}")
    if link.dhcp != t.dhcp:
        problems.append(f"{t.name}: dhcp={link.dhcp}")
    if not t.dhcp:
        if link.managed_addresses != t.addresses:
            problems.append(f"{t.name}: addresses {sorted(map(str, link.managed_addresses))}")
        routes = {r for r in state.routes if r.iface == t.name}
        if routes != t.routes:
            problems.append(f"{t.name}: routes {sorted(map(str, routes))}")
    return problems
