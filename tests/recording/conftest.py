from __future__ import annotations

import pytest
from support.tmpfs import volatile_dir  # noqa: F401 (a fixture)

from pbx.recording.age import X25519Identity


@pytest.fixture(scope="session")
def identity() -> X25519Identity:
    return X25519Identity.generate()


@pytest.fixture(scope="session")
def other_identity() -> X25519Identity:
    return X25519Identity.generate()
