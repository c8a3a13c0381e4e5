"""Import hygiene, checked in a fresh interpreter: which of some modules a piece of code
loads (e.g. that a sans-IO package loads no asyncio, or the SIP core no FastAPI)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable

__all__ = ["loaded"]


def loaded(code: str, watched: Iterable[str]) -> list[str]:
    """The modules of ``watched`` in ``sys.modules`` after a new Python ran ``code`` (import
    statements, say), sorted."""
    probe = (
        f"{code}\n"
        "import json, sys\n"
        f"print(json.dumps(sorted(set({sorted(watched)!r}) & set(sys.modules))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    found: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return found
