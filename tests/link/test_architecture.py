"""The link's protocol core is sans-IO: importing it loads no asyncio, sockets or websockets."""

from __future__ import annotations

from support.imports import loaded


def test_sans_io_modules_load_no_io() -> None:
    code = "import appliance.link.frames, appliance.link.connection"
    assert loaded(code, ("asyncio", "socket", "ssl", "websockets")) == []
