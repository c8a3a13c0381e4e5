"""The pyroute2 adapter: read the kernel's links, addresses and routes; execute plan steps.

Synchronous on purpose (pyroute2's IPRoute); the service calls it from a worker thread.
Every netlink error becomes a `NetworkApplyError` that names the interface and says what
was being done. Adding what is already there and deleting what is already gone are success,
so a half-applied plan can simply be planned and applied again.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Protocol

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from appliance.network.plan import (
    AddAddress,
    AddRoute,
    CreateVlan,
    DeleteLink,
    RemoveAddress,
    RemoveRoute,
    SetDns,
    SetLinkState,
    SetMtu,
    StartDhcp,
    Step,
    StopDhcp,
    describe,
)
from appliance.network.state import (
    IPAddress,
    Link,
    NetState,
    Route,
    read_resolv_conf,
    render_resolv_conf,
)

IFF_UP = 0x1
RT_TABLE_MAIN = 254
RTN_UNICAST = 1
RTPROT_KERNEL = 2
# neighbour states that prove the gateway answered ARP/NDP recently
NUD_ALIVE = 0x02 | 0x04 | 0x08 | 0x10 | 0x80  # REACHABLE, STALE, DELAY, PROBE, PERMANENT


class NetworkApplyError(RuntimeError):
    """A step failed; the message names the interface and the cause."""

    def __init__(self, iface: str, message: str, code: int | None = None) -> None:
        self.iface = iface
        self.code = code
        super().__init__(f"{iface}: {message}")


class DhcpClient(Protocol):
    def start(self, iface: str) -> None: ...
    def stop(self, iface: str) -> None: ...
    def running(self) -> frozenset[str]: ...


class Pyroute2DhcpClient:
    """Runs pyroute2's DHCP client (one process per interface), inside the namespace if any."""

    def __init__(self, netns: str | None = None, workdir: Path = Path("/run/edgepbx/dhcp")) -> None:
        self.netns = netns
        self.workdir = workdir  # where the client keeps its lease files
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, iface: str) -> None:
        exe = shutil.which("pyroute2-dhcp-client") or str(
            Path(sys.executable).with_name("pyroute2-dhcp-client")
        )
        cmd = [exe, iface]
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        self._procs[iface] = subprocess.Popen(
            cmd, cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def stop(self, iface: str) -> None:
        proc = self._procs.pop(iface, None)
        if proc is not None and proc.poll() is None:
            # the plan removes the leased address and route itself when it leaves DHCP
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def running(self) -> frozenset[str]:
        return frozenset(i for i, p in self._procs.items() if p.poll() is None)


def resolv_conf_for(netns: str | None) -> Path:
    """Where DNS servers go: a named namespace's own file (``ip netns exec`` mounts it)."""
    return Path(f"/etc/netns/{netns}/resolv.conf") if netns else Path("/etc/resolv.conf")


def step_iface(step: Step) -> str:
    """The interface a step is about (for messages)."""
    if isinstance(step, AddRoute | RemoveRoute):
        return step.route.iface
    if isinstance(step, SetDns):
        return "resolv.conf"
    return step.name


def _error_text(exc: NetlinkError) -> str:
    name = errno.errorcode.get(exc.code, "?")
    return f"{os.strerror(exc.code)}, error {exc.code} {name}"


class NetlinkBackend:
    """Reads and changes the network of the host, or of one named network namespace."""

    def __init__(
        self,
        netns: str | None = None,
        resolv_conf: Path = Path("/etc/resolv.conf"),
        dhcp: DhcpClient | None = None,
    ) -> None:
        self.netns = netns
        self.resolv_conf = resolv_conf
        self.dhcp = dhcp if dhcp is not None else Pyroute2DhcpClient(netns)

    def _ipr(self) -> IPRoute:
        return IPRoute(netns=self.netns) if self.netns else IPRoute()

    # -- reading -------------------------------------------------------------------------

    def read_state(self) -> NetState:
        with self._ipr() as ip:
            raw_links = list(ip.get_links())
            names = {int(x["index"]): str(x.get("IFLA_IFNAME")) for x in raw_links}
            addresses: dict[int, set[Any]] = {i: set() for i in names}
            for a in ip.get_addr():
                iface = ipaddress.ip_interface(f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}")
                addresses.setdefault(int(a["index"]), set()).add(iface)
            routes = set()
            for r in ip.get_routes(table=RT_TABLE_MAIN):
                gateway = r.get("RTA_GATEWAY")
                if r["type"] != RTN_UNICAST or r["proto"] == RTPROT_KERNEL or not gateway:
                    continue
                family_zero = "0.0.0.0" if r["family"] == 2 else "::"
                dst = ipaddress.ip_network(f"{r.get('RTA_DST') or family_zero}/{r['dst_len']}")
                oif = r.get("RTA_OIF")
                if oif in names:
                    routes.add(Route(dst, ipaddress.ip_address(gateway), names[oif]))
        running = self.dhcp.running()
        links = []
        for x in raw_links:
            index = int(x["index"])
            info = x.get(("IFLA_LINKINFO", "IFLA_INFO_KIND"))
            parent = x.get("IFLA_LINK")
            vlan_id = x.get(("IFLA_LINKINFO", "IFLA_INFO_DATA", "IFLA_VLAN_ID"))
            links.append(
                Link(
                    name=names[index],
                    mac=str(x.get("IFLA_ADDRESS") or "00:00:00:00:00:00"),
                    up=bool(x["flags"] & IFF_UP),
                    carrier=x.get("IFLA_OPERSTATE") in ("UP", "UNKNOWN") and bool(x["flags"] & 1),
                    mtu=int(x.get("IFLA_MTU") or 0),
                    kind=str(info) if info else None,
                    parent=names.get(int(parent)) if info == "vlan" and parent else None,
                    vlan_id=int(vlan_id) if info == "vlan" and vlan_id else None,
                    addresses=frozenset(addresses.get(index, ())),
                    dhcp=names[index] in running,
                )
            )
        return NetState(
            links=tuple(sorted(links, key=lambda x: x.name)),
            routes=frozenset(routes),
            dns=read_resolv_conf(self.resolv_conf),
        )

    # -- changing ------------------------------------------------------------------------

    def execute(self, step: Step) -> None:
        if isinstance(step, SetDns):
            self._write_resolv_conf(step.servers)
            return
        if isinstance(step, StartDhcp):
            self.dhcp.start(step.name)
            return
        if isinstance(step, StopDhcp):
            self.dhcp.stop(step.name)
            return
        with self._ipr() as ip:
            try:
                self._netlink(ip, step)
            except NetlinkError as exc:
                raise self._explain(step, exc) from None

    def _index(self, ip: IPRoute, name: str) -> int:
        found = ip.link_lookup(ifname=name)
        if not found:
            raise NetworkApplyError(name, "no such interface on this box", errno.ENODEV)
        return int(found[0])

    def _netlink(self, ip: IPRoute, step: Step) -> None:
        match step:
            case CreateVlan(name, parent, vid):
                ip.link("add", ifname=name, kind="vlan", link=self._index(ip, parent), vlan_id=vid)
            case DeleteLink(name):
                found = ip.link_lookup(ifname=name)
                if found:  # already gone is success
                    ip.link("del", index=found[0])
            case SetMtu(name, mtu):
                ip.link("set", index=self._index(ip, name), mtu=mtu)
            case SetLinkState(name, up):
                ip.link("set", index=self._index(ip, name), state="up" if up else "down")
            case AddAddress(name, address):
                try:
                    ip.addr(
                        "add",
                        index=self._index(ip, name),
                        address=str(address.ip),
                        prefixlen=address.network.prefixlen,
                    )
                except NetlinkError as exc:
                    if exc.code != errno.EEXIST:
                        raise
            case RemoveAddress(name, address):
                try:
                    ip.addr(
                        "del",
                        index=self._index(ip, name),
                        address=str(address.ip),
                        prefixlen=address.network.prefixlen,
                    )
                except NetlinkError as exc:
                    if exc.code != errno.EADDRNOTAVAIL:
                        raise
            case AddRoute(route):
                try:
                    ip.route("add", **self._route_args(ip, route))
                except NetlinkError as exc:
                    if exc.code != errno.EEXIST:
                        raise
            case RemoveRoute(route):
                try:
                    ip.route("del", **self._route_args(ip, route))
                except NetlinkError as exc:
                    if exc.code != errno.ESRCH:
                        raise
            case _:
                raise AssertionError(step)

    def _route_args(self, ip: IPRoute, route: Route) -> dict[str, Any]:
        return {
            "dst": str(route.dst),
            "gateway": str(route.gateway),
            "oif": self._index(ip, route.iface),
            "table": RT_TABLE_MAIN,
        }

    def _explain(self, step: Step, exc: NetlinkError) -> NetworkApplyError:
        iface = step_iface(step)
        if isinstance(step, CreateVlan) and exc.code == errno.EOPNOTSUPP:
            return NetworkApplyError(
                iface,
                f"VLAN links (802.1q) are not supported by this kernel ({_error_text(exc)}); "
                f"{step.parent} cannot carry voice VLAN {step.vlan_id}",
                exc.code,
            )
        if isinstance(step, AddRoute) and exc.code == errno.ENETUNREACH:
            return NetworkApplyError(
                iface,
                f"cannot add route {step.route}: the gateway is not in a subnet of this link "
                f"({_error_text(exc)})",
                exc.code,
            )
        what = describe(step).removeprefix(f"{iface}: ")
        return NetworkApplyError(iface, f"cannot {what}: {_error_text(exc)}", exc.code)

    def _write_resolv_conf(self, servers: tuple[IPAddress, ...]) -> None:
        # write beside and rename, so a crash never leaves a half-written resolv.conf
        self.resolv_conf.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.resolv_conf.with_name(self.resolv_conf.name + ".edgepbx-new")
        tmp.write_text(render_resolv_conf(servers))
        os.replace(tmp, self.resolv_conf)

    # -- checking ------------------------------------------------------------------------

    def gateway_reachable(self, gateway: IPAddress, timeout: float) -> bool:
        """Ping the gateway; a gateway that drops pings but answers ARP/NDP also counts."""
        deadline = time.monotonic() + timeout
        ping = ["ping", "-n", "-c", "1", "-W", "1", str(gateway)]
        if self.netns:
            ping = ["ip", "netns", "exec", self.netns, *ping]
        while True:
            done = subprocess.run(ping, capture_output=True, check=False)
            if done.returncode == 0 or self._neighbour_alive(gateway):
                return True
            if time.monotonic() >= deadline:
                return False

    def _neighbour_alive(self, gateway: IPAddress) -> bool:
        with self._ipr() as ip:
            for n in ip.get_neighbours(dst=str(gateway)):
                if n["state"] & NUD_ALIVE:
                    return True
        return False
