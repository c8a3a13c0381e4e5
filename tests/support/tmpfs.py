"""A fresh folder on tmpfs (/dev/shm), as the recorder's key journal requires."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pbx.recording.journal import filesystem_type


@pytest.fixture
def volatile_dir() -> Iterator[Path]:
    """A fresh folder on tmpfs (/dev/shm); skips where /dev/shm is not one."""
    shm = Path("/dev/shm")
    if filesystem_type(shm) not in ("tmpfs", "ramfs"):
        pytest.skip("/dev/shm is not a tmpfs here")
    path = Path(tempfile.mkdtemp(prefix="edgepbx-test-", dir=shm))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
