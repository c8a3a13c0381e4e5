"""Values describing the network as it is: links, addresses, routes and DNS servers.

These are plain frozen values so that the planner and its tests never touch netlink; the
pyroute2 backend (`netlink.py`) reads the kernel into them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from pathlib import Path

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, order=True)
class Route:
    """A route the box manages: a destination reached through a gateway on one link."""

    dst: IPNetwork
    gateway: IPAddress
    iface: str

    def __str__(self) -> str:
        return f"{self.dst} via {self.gateway} dev {self.iface}"


@dataclass(frozen=True)
class Link:
    name: str
    mac: str = "00:00:00:00:00:00"
    up: bool = False  # administrative state (IFF_UP)
    carrier: bool = False  # operational state: a cable or a peer is there
    mtu: int = 1500
    kind: str | None = None  # "veth", "vlan", ... None for plain hardware
    parent: str | None = None  # for a VLAN link: the link it rides on
    vlan_id: int | None = None
    addresses: frozenset[IPInterface] = frozenset()
    dhcp: bool = False  # a DHCP client manages this link's addresses

    @property
    def managed_addresses(self) -> frozenset[IPInterface]:
        """Addresses the planner may add or remove (IPv6 link-local ones are the kernel's)."""
        return frozenset(a for a in self.addresses if not a.ip.is_link_local)


@dataclass(frozen=True)
class NetState:
    links: tuple[Link, ...] = ()
    routes: frozenset[Route] = frozenset()
    dns: tuple[IPAddress, ...] = ()

    def link(self, name: str) -> Link | None:
        for link in self.links:
            if link.name == name:
                return link
        return None

    def with_link(self, link: Link) -> NetState:
        others = tuple(x for x in self.links if x.name != link.name)
        return replace(self, links=tuple(sorted((*others, link), key=lambda x: x.name)))

    def without_link(self, name: str) -> NetState:
        return replace(
            self,
            links=tuple(x for x in self.links if x.name != name),
            routes=frozenset(r for r in self.routes if r.iface != name),
        )


@dataclass(frozen=True)
class LinkTarget:
    """What one link should look like; the planner's normalized view of the desired state."""

    name: str
    up: bool = True
    vlan: tuple[str, int] | None = None  # (parent, VLAN id) for a link to create
    mtu: int | None = None  # None: leave as it is
    dhcp: bool = False
    addresses: frozenset[IPInterface] = frozenset()  # ignored when dhcp
    routes: frozenset[Route] = frozenset()  # ignored when dhcp


@dataclass(frozen=True)
class Target:
    links: tuple[LinkTarget, ...] = ()
    dns: tuple[IPAddress, ...] | None = None  # None: leave resolv.conf alone
    # Links the target speaks for: their VLAN children not in `links` are deleted.
    managed: frozenset[str] = field(default=frozenset())

    def names(self) -> frozenset[str]:
        return frozenset(t.name for t in self.links) | self.managed


def snapshot_target(state: NetState, names: frozenset[str]) -> Target:
    """The target that brings the links `names` back to how they are in `state` (rollback)."""
    targets = []
    children = {x.name for x in state.links if x.parent in names and x.vlan_id is not None}
    for name in sorted(names | children):
        link = state.link(name)
        if link is None:
            continue
        vlan = (link.parent, link.vlan_id) if link.parent and link.vlan_id else None
        targets.append(
            LinkTarget(
                name=name,
                up=link.up,
                vlan=vlan,
                mtu=link.mtu,
                dhcp=link.dhcp,
                addresses=link.managed_addresses,
                routes=frozenset(r for r in state.routes if r.iface == name),
            )
        )
    return Target(links=tuple(targets), dns=state.dns, managed=names)


def parse_resolv_conf(text: str) -> tuple[IPAddress, ...]:
    servers: list[IPAddress] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                servers.append(ipaddress.ip_address(parts[1].split("%")[0]))
            except ValueError:
                continue  # a broken line in a file we do not own is not our error
    return tuple(servers)


def read_resolv_conf(path: Path) -> tuple[IPAddress, ...]:
    try:
        return parse_resolv_conf(path.read_text())
    except FileNotFoundError:
        return ()


def render_resolv_conf(servers: tuple[IPAddress, ...]) -> str:
    lines = ["# written by edgepbx (network settings); edit them in the setup console"]
    lines += [f"nameserver {s}" for s in servers]
    return "\n".join(lines) + "\n"
