from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.console import ConsoleEnv, make_env


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[ConsoleEnv]:
    e = make_env(tmp_path / "data")
    yield e
    await e.close()
