"""uvicorn as a part of a bigger process: it serves, and leaves signals alone."""

from __future__ import annotations

import contextlib
from collections.abc import Generator

import uvicorn

__all__ = ["EmbeddedServer"]


class EmbeddedServer(uvicorn.Server):
    """``uvicorn.Server`` without its signal capture. Left alone, uvicorn replaces the
    process's SIGTERM/SIGINT handlers while it serves and raises the signal again when it
    stops; here the composition root owns signals and stops the server in its own order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield
