"""The pooled random source: os.urandom bytes, each handed out once, never shared with a
forked child."""

from __future__ import annotations

import os

import pytest

from pbx.sip.randomness import RandomPool


def test_lengths_and_no_repeats_across_blocks() -> None:
    pool = RandomPool(block=64)
    values = [pool(n) for n in (8, 10, 16, 0, 30, 64, 100, 4) * 50]
    assert [len(v) for v in values] == [n for n in (8, 10, 16, 0, 30, 64, 100, 4) * 50]
    tags = [v for v in values if len(v) >= 8]
    assert len(set(tags)) == len(tags)  # 64+ random bits: a repeat means a reused slice


def test_negative_count_and_bad_block_are_refused() -> None:
    with pytest.raises(ValueError):
        RandomPool()(-1)
    with pytest.raises(ValueError):
        RandomPool(block=0)


def test_a_forked_child_does_not_repeat_its_parents_bytes() -> None:
    pool = RandomPool()
    pool(8)  # a block is loaded; the parent's next bytes are in it
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.write(write, pool(16))
        os._exit(0)
    os.close(write)
    child = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 16 and child != pool(16)
