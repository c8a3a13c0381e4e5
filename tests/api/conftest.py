"""Fixtures for the management API tests (helpers in tests/support/api.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.api import Box, make_box

from appliance.api.accounts import Role


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Box]:
    b = make_box(tmp_path)
    b.account("admin", Role.ADMIN)
    b.account("super", Role.SUPERVISOR)
    b.account("viewer", Role.VIEWER)
    yield b
    b.store.close()
