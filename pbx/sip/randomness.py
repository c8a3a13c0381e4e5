"""Random bytes for tags, branches, Call-IDs and nonces: the kernel's CSPRNG, drawn in blocks.

Every response the box sends needs a fresh To tag, every request a branch, every challenge a
nonce. One ``getrandom`` system call per value cost about 5 % of the box's CPU under REGISTER
load (profiled with py-spy); reading 4 KiB at a time and handing out slices costs a slice.
The bytes are the same ``os.urandom`` bytes, each handed out once. A forked child starts
with an empty block (it must not repeat its parent's bytes), and a lock keeps threads from
taking the same slice.
"""

from __future__ import annotations

import os
import threading

__all__ = ["RandomPool", "random_bytes"]


class RandomPool:
    """A callable ``random_bytes(n)`` over ``os.urandom`` blocks of ``block`` bytes."""

    def __init__(self, block: int = 4096) -> None:
        if block < 1:
            raise ValueError("block must be positive")
        self._block = block
        self._buffer = b""
        self._pos = 0
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._buffer, self._pos = b"", 0
        self._lock = threading.Lock()  # a lock held by another thread at fork stays held

    def __call__(self, n: int) -> bytes:
        if n < 0:
            raise ValueError("negative byte count")
        with self._lock:
            pos = self._pos
            end = pos + n
            if end > len(self._buffer):
                self._buffer = os.urandom(max(self._block, n))
                pos, end = 0, n
            self._pos = end
            return self._buffer[pos:end]


random_bytes = RandomPool()
