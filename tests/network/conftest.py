from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.netns import Pair, veth_pair


@pytest.fixture
def pair() -> Iterator[Pair]:
    with veth_pair() as p:
        yield p
