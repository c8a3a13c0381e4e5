"""Small helpers for driving the console with Textual's Pilot as an installer would."""

from __future__ import annotations

from collections.abc import Callable

from textual.pilot import Pilot
from textual.widgets import Button, Input, Static


async def until(pilot: Pilot[None], predicate: Callable[[], bool], what: str = "") -> None:
    """Let the app run until `predicate` holds (bounded by a count of pauses, not a clock)."""
    for _ in range(500):
        try:
            if predicate():
                return
        except Exception:  # the screen may be between compositions
            pass
        await pilot.pause(0.01)
    raise AssertionError(f"never happened: {what}")


async def type_into(pilot: Pilot[None], selector: str, text: str) -> None:
    field = pilot.app.screen.query_one(selector, Input)
    field.focus()
    field.value = ""
    await pilot.pause()
    await pilot.press(*[c if c != " " else "space" for c in text])


async def press(pilot: Pilot[None], button_id: str) -> None:
    pilot.app.screen.query_one(f"#{button_id}", Button).press()
    await pilot.pause()


def static_text(pilot: Pilot[None], selector: str) -> str:
    return str(pilot.app.screen.query_one(selector, Static).render())
