"""pbx/runtime.py: the collector kept to young objects by SurvivorFreezer, and still able to
free a cycle within its full-collection period."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from pbx.runtime import SurvivorFreezer


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    yield
    gc.unfreeze()  # the rest of the test session runs with a normal collector


def test_ticks_freeze_survivors_and_a_full_tick_frees_a_frozen_cycle() -> None:
    freezer = SurvivorFreezer(full_every=600)
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the collector can free it
    watched = weakref.ref(a)
    freezer.tick(0.0)
    assert gc.get_freeze_count() > 0
    del a, b
    gc.collect()
    assert watched() is not None  # frozen: out of the collector's reach
    freezer.tick(300.0)
    gc.collect()
    assert watched() is not None
    freezer.tick(600.0)  # the full tick: unfreeze, collect, freeze again
    assert watched() is None


def test_objects_without_cycles_are_freed_while_frozen() -> None:
    freezer = SurvivorFreezer()
    plain = Node()
    watched = weakref.ref(plain)
    freezer.tick(0.0)
    del plain  # reference counting needs no collector
    assert watched() is None
