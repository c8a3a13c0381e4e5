"""Waiting for an outcome in tests: poll a condition, bounded by a generous deadline.

A test waits for the condition it needs, never for a time: the deadline only bounds a wait
that would otherwise hang, so it is generous (a loaded 2-core machine is many times slower
than a quiet one) and the failure names what did not happen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["wait_for"]


async def wait_for(
    predicate: Callable[[], bool],
    what: str = "the condition",
    timeout: float = 30.0,
    step: float = 0.02,
) -> None:
    """Poll until ``predicate()`` holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(step)
