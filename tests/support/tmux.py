"""A terminal program in tmux, driven with send-keys and read with capture-pane.

Each instance uses its own tmux server (-L) so parallel runs never see each other's panes."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import time
from pathlib import Path


class Tmux:
    def __init__(self, command: str, width: int = 100, height: int = 34) -> None:
        self.server = f"epx{secrets.token_hex(4)}"
        # COLUMNS/LINES from the test runner would override the pane's size for the program
        command = f"env -u COLUMNS -u LINES {command}"
        self._tmux("new-session", "-d", "-s", "main", "-x", str(width), "-y", str(height), command)

    def _tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.server, *args], capture_output=True, text=True, check=True
        )
        return done.stdout

    def keys(self, *keys: str, pace: float = 0.3) -> None:
        """Press keys one at a time at a person's pace. Sent in one burst, keys race
        Textual's focus changes: a Tab bubbles up to the app while the keys after it are
        already on their way to the old focused widget."""
        for key in keys:
            self._tmux("send-keys", "-t", "main", key)
            time.sleep(pace)

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-t", "main", "-l", text)

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "main")

    def wait_for(self, text: str, timeout: float = 20.0, regex: bool = False) -> str:
        """Poll the pane until `text` (or the pattern) shows: a bounded wait for a real
        terminal, as a person looks before typing on, not a test of speed."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if re.search(text, screen) if regex else text in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never showed; the screen was:\n{screen}")
            time.sleep(0.1)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.server, "kill-server"], capture_output=True, check=False)
        socket_dir = Path(os.environ.get("TMUX_TMPDIR", "/tmp")) / f"tmux-{os.getuid()}"
        (socket_dir / self.server).unlink(missing_ok=True)  # tmux leaves its socket file
