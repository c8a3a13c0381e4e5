"""Ports and addresses for the peers tests start (SIPp, Kamailio, baresip, moto, the box).

A port handed to another program is picked at random below Linux's ephemeral range (32768+)
and checked bindable: a port from ``bind(("127.0.0.1", 0))`` comes from the ephemeral range,
where the outgoing connections of every other process on the machine take their source
ports, so between our check and the program's bind one of them may take it.
"""

from __future__ import annotations

import ipaddress
import random
import socket

__all__ = ["bindable", "check_loopback", "free_port"]


def check_loopback(host: str) -> str:
    """Return ``host`` (brackets removed) if it is a loopback address, else raise ValueError."""
    bare = host.strip("[]")
    try:
        loopback = ipaddress.ip_address(bare).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"only loopback addresses are allowed, got {host!r}")
    return bare


def bindable(host: str, port: int, kind: socket.SocketKind = socket.SOCK_DGRAM) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1", *, span: int = 1, even: bool = False) -> int:
    """A port P such that P .. P+span-1 are free for both UDP and TCP on ``host`` (P even
    with ``even``: RTP/RTCP pairs), from 20000-31999."""
    host = check_loopback(host)
    for _ in range(500):
        base = random.randrange(20000, 32000 - span)
        if even:
            base &= ~1
        ports = range(base, base + span)
        if all(
            bindable(host, p, socket.SOCK_DGRAM) and bindable(host, p, socket.SOCK_STREAM)
            for p in ports
        ):
            return base
    raise RuntimeError(f"no free port range of {span} on {host}")
