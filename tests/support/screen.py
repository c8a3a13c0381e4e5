"""Read what a Textual app shows as plain text (for screen checks and snapshot files)."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

from rich.console import Console
from textual.app import App

SNAPSHOTS = Path(__file__).parent.parent / "tui" / "snapshots"


def screen_text(app: App[object]) -> str:
    """The current screen as text, the way export_screenshot renders it, without styles."""
    width, height = app.size
    console = Console(
        width=width, height=height, file=io.StringIO(), record=True, color_system=None
    )
    update = app.screen._compositor.render_update(full=True)
    console.print(update)
    text = console.export_text(styles=False)
    return "\n".join(line.rstrip() for line in text.splitlines()).rstrip() + "\n"


def check_snapshot(name: str, text: str, masks: dict[str, str] | None = None) -> None:
    """Compare with tests/tui/snapshots/NAME.txt; EDGEPBX_UPDATE_SNAPSHOTS=1 rewrites it."""
    for pattern, replacement in (masks or {}).items():
        text = re.sub(pattern, replacement, text)
    path = SNAPSHOTS / f"{name}.txt"
    if os.environ.get("EDGEPBX_UPDATE_SNAPSHOTS") or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"screen differs from {path}:\n{text}"
