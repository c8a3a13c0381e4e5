"""The link's protocol core is sans-IO: importing it loads no asyncio, sockets or websockets."""

from __future__ import annotations

import subprocess
import sys


def test_sans_io_modules_load_no_io() -> None:
    code = (
        "import sys\n"
        "import appliance.link.frames, appliance.link.connection\n"
        "bad = sorted(m for m in ('asyncio', 'socket', 'ssl', 'websockets') if m in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
