"""Network namespaces made by a test: a "box" namespace and a "peer" namespace joined by
a veth pair. Names carry a random suffix so parallel runs never collide; all is removed after."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import pytest
from pyroute2 import IPRoute, netns


@dataclass(frozen=True)
class Pair:
    box_ns: str
    peer_ns: str
    box_if: str
    peer_if: str

    def peer_ping(self, address: str) -> bool:
        done = subprocess.run(
            ["ip", "netns", "exec", self.peer_ns, "ping", "-n", "-c", "1", "-W", "2", address],
            capture_output=True,
            check=False,
        )
        return done.returncode == 0


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("network namespace tests need root")


@contextmanager
def veth_pair() -> Iterator[Pair]:
    _need_root()
    sfx = secrets.token_hex(3)
    p = Pair(f"epxbox{sfx}", f"epxpeer{sfx}", f"lan{sfx}", f"gw{sfx}")
    netns.create(p.box_ns)
    netns.create(p.peer_ns)
    try:
        with IPRoute() as ip:
            ip.link("add", ifname=p.box_if, kind="veth", peer=p.peer_if)
            ip.link("set", index=ip.link_lookup(ifname=p.box_if)[0], net_ns_fd=p.box_ns)
            ip.link("set", index=ip.link_lookup(ifname=p.peer_if)[0], net_ns_fd=p.peer_ns)
        with IPRoute(netns=p.peer_ns) as ip:
            idx = ip.link_lookup(ifname=p.peer_if)[0]
            ip.addr("add", index=idx, address="10.77.0.1", prefixlen=24)
            ip.link("set", index=idx, state="up")
            lo = ip.link_lookup(ifname="lo")[0]
            ip.link("set", index=lo, state="up")
        yield p
    finally:
        for name in (p.box_ns, p.peer_ns):
            with suppress(OSError):
                netns.remove(name)  # removing the namespace also removes the veth pair
