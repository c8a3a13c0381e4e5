"""Event loop choice. uvloop moves UDP about 3x faster than the stock loop on the target
machines (MACHINE-NOTES: about 120k vs 37k packets/s on one core), so the composition root
calls :func:`install_best_loop` once, before it starts the loop:

    install_best_loop()
    asyncio.run(main())

or passes :func:`best_loop_factory()` to ``asyncio.Runner(loop_factory=...)``. Everything in
:mod:`pbx.transport` works on both loops; the contract tests run the real sockets on both.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable
from types import ModuleType


def _uvloop() -> ModuleType | None:
    try:
        return importlib.import_module("uvloop")
    except ImportError:  # optional: uvloop is a Linux-only dependency
        return None


def best_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """``uvloop.new_event_loop`` when uvloop is importable, else the stock loop's factory."""
    uvloop = _uvloop()
    if uvloop is None:
        return asyncio.new_event_loop
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def install_best_loop() -> str:
    """Make new event loops uvloop loops when uvloop is available; returns "uvloop" or
    "asyncio" for the start-up log."""
    uvloop = _uvloop()
    if uvloop is None:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"
