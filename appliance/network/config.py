"""The desired network state as the installer or the cloud cabinet writes it.

`parse_network_config` validates a document and refuses it with every problem named by its
field path (``interfaces.1.gateway``), so the console and the API can point at the bad input.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.networks import IPvAnyAddress, IPvAnyInterface, IPvAnyNetwork

from appliance.network.state import IPAddress, IPInterface, LinkTarget, Route, Target

IFNAMSIZ = 15  # the kernel's limit on interface names (without the trailing NUL)


class VoiceVlan(BaseModel):
    """A tagged VLAN for the phones on top of an interface (linux name ``<iface>.<id>``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: int = Field(ge=1, le=4094)
    dhcp: bool = False
    addresses: list[IPvAnyInterface] = []


class StaticRoute(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    to: IPvAnyNetwork
    via: IPvAnyAddress


class InterfaceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1, max_length=IFNAMSIZ, pattern=r"^[A-Za-z0-9_.@-]+$")
    dhcp: bool = False
    addresses: list[IPvAnyInterface] = []
    gateway: IPvAnyAddress | None = None
    routes: list[StaticRoute] = []
    dns: list[IPvAnyAddress] = []
    mtu: int | None = Field(default=None, ge=576, le=9216)
    voice_vlan: VoiceVlan | None = None

    @property
    def vlan_name(self) -> str | None:
        return f"{self.name}.{self.voice_vlan.id}" if self.voice_vlan else None


class NetworkConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: int = 1
    interfaces: list[InterfaceConfig] = []

    def to_target(self) -> Target:
        links: list[LinkTarget] = []
        dns: list[IPAddress] = []
        for iface in self.interfaces:
            routes = {Route(r.to, r.via, iface.name) for r in iface.routes}
            if iface.gateway is not None:
                default = ipaddress.ip_network(
                    "::/0" if iface.gateway.version == 6 else "0.0.0.0/0"
                )
                routes.add(Route(default, iface.gateway, iface.name))
            links.append(
                LinkTarget(
                    name=iface.name,
                    mtu=iface.mtu,
                    dhcp=iface.dhcp,
                    addresses=frozenset(iface.addresses),
                    routes=frozenset(routes),
                )
            )
            vlan = iface.voice_vlan
            if vlan is not None and iface.vlan_name is not None:
                links.append(
                    LinkTarget(
                        name=iface.vlan_name,
                        vlan=(iface.name, vlan.id),
                        dhcp=vlan.dhcp,
                        addresses=frozenset(vlan.addresses),
                    )
                )
            dns += [s for s in iface.dns if s not in dns]
        managed = frozenset(i.name for i in self.interfaces)
        return Target(links=tuple(links), dns=tuple(dns) or None, managed=managed)


@dataclass(frozen=True)
class FieldError:
    field: str  # dotted path, e.g. "interfaces.0.gateway"
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class NetworkConfigError(ValueError):
    """The desired network state was refused; `errors` names every bad field."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors))


def parse_network_config(
    data: dict[str, Any] | NetworkConfig, known_links: frozenset[str] | None = None
) -> NetworkConfig:
    """Validate a network document; `known_links` are the box's interfaces (None: skip)."""
    if isinstance(data, NetworkConfig):
        config = data
    else:
        try:
            config = NetworkConfig.model_validate(data)
        except ValidationError as exc:
            raise NetworkConfigError(
                [
                    FieldError(".".join(str(p) for p in err["loc"]), err["msg"])
                    for err in exc.errors()
                ]
            ) from None
    errors = check_network_config(config, known_links)
    if errors:
        raise NetworkConfigError(errors)
    return config


def _check_addresses(path: str, addresses: list[IPInterface]) -> list[FieldError]:
    errors = []
    for j, addr in enumerate(addresses):
        net = addr.network
        host_bits = net.max_prefixlen - net.prefixlen
        if host_bits >= 2 and addr.ip == net.network_address:
            errors.append(FieldError(f"{path}.{j}", f"{addr} is the network address of {net}"))
        elif host_bits >= 2 and addr.version == 4 and addr.ip == net.broadcast_address:
            errors.append(FieldError(f"{path}.{j}", f"{addr} is the broadcast address of {net}"))
        elif addr.ip.is_loopback or addr.ip.is_multicast or addr.ip.is_unspecified:
            errors.append(FieldError(f"{path}.{j}", f"{addr.ip} cannot be a host address"))
    return errors


def _check_via(path: str, via: IPAddress, addresses: list[IPInterface]) -> FieldError | None:
    if any(via == a.ip for a in addresses):
        return FieldError(path, f"{via} is this interface's own address")
    if not any(via in a.network for a in addresses):
        nets = ", ".join(str(a.network) for a in addresses) or "none"
        return FieldError(path, f"{via} is outside the interface's subnets ({nets})")
    return None


def check_network_config(
    config: NetworkConfig, known_links: frozenset[str] | None = None
) -> list[FieldError]:
    errors: list[FieldError] = []
    seen: dict[str, int] = {}
    gateway_on: str | None = None
    # (path, address, link name) of every static address, to find overlaps between links
    placed: list[tuple[str, IPInterface, str]] = []
    for i, iface in enumerate(config.interfaces):
        p = f"interfaces.{i}"
        if iface.name in seen:
            errors.append(FieldError(f"{p}.name", f"{iface.name} is already configured above"))
        seen[iface.name] = i
        if known_links is not None and iface.name not in known_links:
            known = ", ".join(sorted(known_links)) or "none"
            errors.append(
                FieldError(f"{p}.name", f"no interface {iface.name} on this box (known: {known})")
            )
        if iface.dhcp:
            for name in ("addresses", "gateway", "routes"):
                if getattr(iface, name):
                    errors.append(FieldError(f"{p}.{name}", "not allowed with dhcp: true"))
        elif not iface.addresses:
            errors.append(
                FieldError(f"{p}.addresses", "a static interface needs an address (or dhcp: true)")
            )
        errors += _check_addresses(f"{p}.addresses", iface.addresses)
        placed += [(f"{p}.addresses.{j}", a, iface.name) for j, a in enumerate(iface.addresses)]
        if iface.gateway is not None and not iface.dhcp:
            bad = _check_via(f"{p}.gateway", iface.gateway, iface.addresses)
            if bad:
                errors.append(bad)
            if gateway_on is not None:
                errors.append(
                    FieldError(f"{p}.gateway", f"only one default gateway (on {gateway_on})")
                )
            gateway_on = iface.name
        for j, route in enumerate(iface.routes):
            bad = _check_via(f"{p}.routes.{j}.via", route.via, iface.addresses)
            if bad and not iface.dhcp:
                errors.append(bad)
        vlan = iface.voice_vlan
        if vlan is not None and iface.vlan_name is not None:
            vp = f"{p}.voice_vlan"
            if len(iface.vlan_name) > IFNAMSIZ:
                errors.append(
                    FieldError(f"{vp}.id", f"VLAN interface name {iface.vlan_name} is too long")
                )
            if vlan.dhcp and vlan.addresses:
                errors.append(FieldError(f"{vp}.addresses", "not allowed with dhcp: true"))
            elif not vlan.dhcp and not vlan.addresses:
                errors.append(
                    FieldError(f"{vp}.addresses", "a static VLAN needs an address (or dhcp: true)")
                )
            errors += _check_addresses(f"{vp}.addresses", vlan.addresses)
            placed += [
                (f"{vp}.addresses.{j}", a, iface.vlan_name) for j, a in enumerate(vlan.addresses)
            ]
    for k, (path, addr, link) in enumerate(placed):
        for other_path, other, other_link in placed[:k]:
            if addr.version == other.version and addr.network.overlaps(other.network):
                where = "another address here" if link == other_link else other_link
                if link != other_link or addr.ip == other.ip:
                    errors.append(
                        FieldError(path, f"{addr} overlaps {other} on {where} (see {other_path})")
                    )
                break
    return errors
