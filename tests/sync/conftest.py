"""Fixtures of the sync tests: the S3 peer (moto on loopback)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.s3 import S3Peer


@pytest.fixture
def s3() -> Iterator[S3Peer]:
    peer = S3Peer()
    yield peer
    peer.close()
