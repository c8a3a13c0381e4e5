"""The pyroute2 applier and the try/confirm/rollback service in real network namespaces."""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyroute2 import IPRoute
from support.netns import Pair

from appliance.network.config import NetworkConfigError
from appliance.network.netlink import NetlinkBackend, NetworkApplyError, Pyroute2DhcpClient
from appliance.network.plan import AddAddress, AddRoute
from appliance.network.service import NetworkService
from appliance.network.state import Route

pytestmark = pytest.mark.timeout(60)


def _service(pair: Pair, tmp_path: Path) -> NetworkService:
    backend = NetlinkBackend(netns=pair.box_ns, resolv_conf=tmp_path / "resolv.conf")
    return NetworkService(backend, tmp_path, check_timeout=1.5)


def _kernel_view_sync(pair: Pair) -> tuple[set[str], set[tuple[str, str]]]:
    """Addresses and gateway routes of the box's link, read straight from pyroute2."""
    with IPRoute(netns=pair.box_ns) as ip:
        idx = ip.link_lookup(ifname=pair.box_if)[0]
        addrs = {f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}" for a in ip.get_addr(index=idx)}
        routes = {
            (f"{r.get('RTA_DST') or '0.0.0.0'}/{r['dst_len']}", r.get("RTA_GATEWAY"))
            for r in ip.get_routes(table=254, oif=idx)
            if r.get("RTA_GATEWAY")
        }
    return {a for a in addrs if not a.startswith("fe80")}, routes


async def _kernel_view(pair: Pair) -> tuple[set[str], set[tuple[str, str]]]:
    # pyroute2's synchronous IPRoute runs its own event loop: keep it off the test's loop
    return await asyncio.to_thread(_kernel_view_sync, pair)


def _flush(pair: Pair) -> None:
    with IPRoute(netns=pair.box_ns) as ip:
        ip.flush_addr(index=ip.link_lookup(ifname=pair.box_if)[0])


def _static(pair: Pair, address: str, gateway: str, **extra: object) -> dict[str, object]:
    return {
        "interfaces": [
            {
                "name": pair.box_if,
                "addresses": [address],
                "gateway": gateway,
                "routes": [{"to": "192.0.2.0/24", "via": gateway}],
                "dns": ["10.77.0.1"],
                **extra,
            }
        ]
    }


async def test_reads_links_with_mac_state_and_mtu(pair: Pair, tmp_path: Path) -> None:
    state = await _service(pair, tmp_path).read_state()
    link = state.link(pair.box_if)
    assert link is not None
    assert link.kind == "veth" and link.mtu == 1500 and not link.up
    assert len(link.mac.split(":")) == 6 and link.mac != "00:00:00:00:00:00"
    assert state.link("lo") is not None


async def test_static_address_and_route_applied_pinged_and_confirmed(
    pair: Pair, tmp_path: Path
) -> None:
    service = _service(pair, tmp_path)
    config = await service.validate(_static(pair, "10.77.0.2/24", "10.77.0.1"))
    status = await service.try_apply(config, confirm_within=30)
    assert status.outcome == "pending", status.message
    addrs, routes = await _kernel_view(pair)
    assert addrs == {"10.77.0.2/24"}
    assert routes == {("0.0.0.0/0", "10.77.0.1"), ("192.0.2.0/24", "10.77.0.1")}
    assert await asyncio.to_thread(pair.peer_ping, "10.77.0.2")
    assert (tmp_path / "resolv.conf").read_text().endswith("nameserver 10.77.0.1\n")
    assert (await service.confirm()).outcome == "confirmed"
    assert service.saved() == config
    assert await service.preview(config) == []  # idempotent against the real kernel

    # "reboot": the namespace loses its addresses; the saved configuration brings them back
    await asyncio.to_thread(_flush, pair)
    assert await _kernel_view(pair) == (set(), set())
    fresh = _service(pair, tmp_path)
    assert await fresh.apply_saved()
    assert await _kernel_view(pair) == (addrs, routes)
    assert await asyncio.to_thread(pair.peer_ping, "10.77.0.2")


async def test_unreachable_gateway_is_rolled_back(pair: Pair, tmp_path: Path) -> None:
    service = _service(pair, tmp_path)
    first = await service.validate(_static(pair, "10.77.0.2/24", "10.77.0.1"))
    assert (await service.try_apply(first)).outcome == "pending"
    assert (await service.confirm()).outcome == "confirmed"
    before = await _kernel_view(pair)

    nobody = await service.validate(_static(pair, "10.77.0.3/24", "10.77.0.99"))
    status = await service.try_apply(nobody)
    assert status.outcome == "rolled_back"
    assert "10.77.0.99 did not answer" in status.message
    assert await _kernel_view(pair) == before
    assert await asyncio.to_thread(pair.peer_ping, "10.77.0.2")
    assert service.saved() == first


async def test_not_confirmed_in_time_is_rolled_back(pair: Pair, tmp_path: Path) -> None:
    service = _service(pair, tmp_path)
    config = await service.validate(_static(pair, "10.77.0.2/24", "10.77.0.1"))
    assert (await service.try_apply(config, confirm_within=0.2)).outcome == "pending"
    for _ in range(200):
        if service.status.outcome != "pending":
            break
        await asyncio.sleep(0.05)
    assert service.status.outcome == "rolled_back"
    assert await _kernel_view(pair) == (set(), set())
    assert service.saved() is None


async def test_voice_vlan_is_refused_by_this_kernel_with_a_clear_error(
    pair: Pair, tmp_path: Path
) -> None:
    service = _service(pair, tmp_path)
    config = await service.validate(
        _static(
            pair, "10.77.0.2/24", "10.77.0.1", voice_vlan={"id": 40, "addresses": ["10.40.0.1/24"]}
        )
    )
    status = await service.try_apply(config)
    assert status.outcome == "failed"
    assert f"{pair.box_if}.40: VLAN links (802.1q) are not supported by this kernel" in (
        status.message
    )
    assert "Operation not supported, error 95" in status.message
    assert await _kernel_view(pair) == (set(), set())  # nothing half-applied is left


def test_netlink_errors_name_the_interface(pair: Pair, tmp_path: Path) -> None:
    backend = NetlinkBackend(netns=pair.box_ns, resolv_conf=tmp_path / "resolv.conf")
    route = Route(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_address("10.99.0.1"), pair.box_if)
    with pytest.raises(NetworkApplyError, match=rf"^{pair.box_if}: cannot add route .*ENETUNREACH"):
        backend.execute(AddRoute(route))
    with pytest.raises(NetworkApplyError, match=r"^nosuch0: no such interface"):
        backend.execute(AddAddress("nosuch0", ipaddress.ip_interface("10.1.0.1/24")))


async def test_invalid_input_refused_with_the_field_named(pair: Pair, tmp_path: Path) -> None:
    service = _service(pair, tmp_path)
    with pytest.raises(NetworkConfigError) as err:
        await service.validate({"interfaces": [{"name": "eth9", "addresses": ["10.1.0.2/24"]}]})
    assert err.value.errors[0].field == "interfaces.0.name"
    assert "no interface eth9" in err.value.errors[0].message
    assert pair.box_if in err.value.errors[0].message
    with pytest.raises(NetworkConfigError) as err:
        await service.validate(
            _static(
                pair,
                "10.77.0.2/24",
                "10.77.0.1",
                voice_vlan={"id": 40, "addresses": ["10.77.0.200/25"]},
            )
        )
    assert [e.field for e in err.value.errors] == ["interfaces.0.voice_vlan.addresses.0"]
    assert "overlaps 10.77.0.2/24" in str(err.value)
    assert await _kernel_view(pair) == (set(), set())


async def test_cli_shows_and_reapplies_the_saved_settings(pair: Pair, tmp_path: Path) -> None:
    """`edgepbx network show` and `apply-saved` (what the box runs at boot)."""
    service = _service(pair, tmp_path)
    config = await service.validate(_static(pair, "10.77.0.2/24", "10.77.0.1"))
    assert (await service.try_apply(config)).outcome == "pending"
    await service.confirm()
    await asyncio.to_thread(_flush, pair)
    edgepbx = str(Path(sys.executable).with_name("edgepbx"))
    resolv = ["--resolv-conf", str(tmp_path / "resolv.conf")]  # never the host's file
    common = ["--data", str(tmp_path), "--netns", pair.box_ns, *resolv]
    shown = subprocess.run(
        [edgepbx, "network", "show", *common], capture_output=True, text=True, check=True
    ).stdout
    assert f"{pair.box_if}: add address 10.77.0.2/24" in shown
    assert "saved settings: 3 steps away" in shown  # address and two routes
    applied = subprocess.run(
        [edgepbx, "network", "apply-saved", *common], capture_output=True, text=True, check=True
    ).stdout
    assert f"{pair.box_if}: add route 0.0.0.0/0 via 10.77.0.1 dev {pair.box_if}" in applied
    assert await asyncio.to_thread(pair.peer_ping, "10.77.0.2")
    shown = subprocess.run(
        [edgepbx, "network", "show", *common], capture_output=True, text=True, check=True
    ).stdout
    assert "saved settings: in place" in shown and "10.77.0.2/24" in shown


@pytest.fixture
def dhcp_server(pair: Pair, tmp_path: Path) -> Iterator[None]:
    """dnsmasq in the peer namespace: leases 10.77.0.50-60 with 10.77.0.1 as the router."""
    if shutil.which("dnsmasq") is None:
        pytest.skip("dnsmasq is not installed (make deb)")
    server = subprocess.Popen(
        [
            *("ip", "netns", "exec", pair.peer_ns, "dnsmasq", "--no-daemon", "--port=0"),
            f"--interface={pair.peer_if}",
            "--bind-interfaces",
            "--dhcp-range=10.77.0.50,10.77.0.60,255.255.255.0,1h",
            "--dhcp-option=3,10.77.0.1",
            f"--dhcp-leasefile={tmp_path / 'leases'}",
            f"--pid-file={tmp_path / 'dnsmasq.pid'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    yield
    server.terminate()
    server.wait(timeout=10)


async def test_dhcp_lease_from_a_real_server_then_back_to_static(
    pair: Pair, tmp_path: Path, dhcp_server: None
) -> None:
    dhcp = Pyroute2DhcpClient(pair.box_ns, workdir=tmp_path / "dhcp")
    backend = NetlinkBackend(pair.box_ns, resolv_conf=tmp_path / "resolv.conf", dhcp=dhcp)
    service = NetworkService(backend, tmp_path, check_timeout=1.5)
    try:
        config = await service.validate({"interfaces": [{"name": pair.box_if, "dhcp": True}]})
        assert (await service.try_apply(config)).outcome == "pending"
        for _ in range(300):  # the client waits a few seconds before its DISCOVER
            addrs, routes = await _kernel_view(pair)
            if addrs and routes:
                break
            await asyncio.sleep(0.1)
        (leased,) = addrs
        assert ipaddress.ip_interface(leased) in ipaddress.ip_network("10.77.0.48/28")
        assert routes == {("0.0.0.0/0", "10.77.0.1")}  # the router option became the route
        assert (await service.read_state()).link(pair.box_if).dhcp  # type: ignore[union-attr]
        # a few tries: on a loaded machine the first echo can outlast ping's 2 s
        answered = [await asyncio.to_thread(pair.peer_ping, leased.split("/")[0]) for _ in range(3)]
        assert any(answered)
        await service.confirm()
        assert await service.preview(config) == []  # DHCP owns the addresses now

        static = await service.validate(_static(pair, "10.77.0.2/24", "10.77.0.1"))
        assert (await service.try_apply(static)).outcome == "pending"
        assert await _kernel_view(pair) == (
            {"10.77.0.2/24"},
            {("0.0.0.0/0", "10.77.0.1"), ("192.0.2.0/24", "10.77.0.1")},
        )
        assert dhcp.running() == frozenset()
    finally:
        for iface in dhcp.running():
            dhcp.stop(iface)
