"""Fixtures of the sync tests: the S3 peer (moto on loopback)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.s3 import S3Peer
from support.tmpfs import volatile_dir  # noqa: F401 (a fixture for the recorded-call test)


@pytest.fixture
def s3() -> Iterator[S3Peer]:
    peer = S3Peer()
    yield peer
    peer.close()
