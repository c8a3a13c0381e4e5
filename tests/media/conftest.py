"""Media tests run on both event loops, on 127.0.0.1, with ports found free at the time."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Callable, Mapping

import pytest
import uvloop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


def free_port_block(size: int, host: str = "127.0.0.1") -> tuple[int, int]:
    """An even-aligned block of ``size`` ports that could all be bound just now, below the
    kernel's ephemeral range so outgoing sockets of other tests rarely land in it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(200):
        first = random.randrange(20000, 30000 - size) & ~1
        sockets = []
        try:
            for port in range(first, first + size):
                sock = socket.socket(family, socket.SOCK_DGRAM)
                sockets.append(sock)
                sock.bind((host, port))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return first, first + size - 1
    raise RuntimeError("no free port block found")


PortBlock = Callable[..., tuple[int, int]]


@pytest.fixture
def port_block() -> PortBlock:
    """``port_block(size, host="127.0.0.1") -> (first, last)``."""
    return free_port_block


@pytest.fixture
def port_range() -> tuple[int, int]:
    return free_port_block(40)
