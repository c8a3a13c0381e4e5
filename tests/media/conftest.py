"""Media tests run on both event loops, on 127.0.0.1, with ports found free at the time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest
import uvloop
from support.ports import free_port


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


def free_port_block(size: int, host: str = "127.0.0.1") -> tuple[int, int]:
    """An even-aligned block of ``size`` ports free just now (see support.ports)."""
    first = free_port(host, span=size, even=True)
    return first, first + size - 1


PortBlock = Callable[..., tuple[int, int]]


@pytest.fixture
def port_block() -> PortBlock:
    """``port_block(size, host="127.0.0.1") -> (first, last)``."""
    return free_port_block


@pytest.fixture
def port_range() -> tuple[int, int]:
    return free_port_block(40)
