"""Private files of the box (keys, passwords, its state): mode 0600 from the first byte.

``write_private`` replaces a file atomically (a reader sees the old or the new content,
never a part); ``create_private`` writes a new file only, refusing to replace one;
``secret_file`` reads a secret, creating it the first time.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["create_private", "secret_file", "write_private"]


def _bytes(data: bytes | str) -> bytes:
    return data.encode() if isinstance(data, str) else data


def write_private(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file renamed over it)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_bytes(data))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def create_private(path: Path, data: bytes | str) -> None:
    """Create ``path`` with ``data``; FileExistsError if it exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(_bytes(data))


def secret_file(path: Path, make: bytes) -> bytes:
    """Read a private file, creating it with ``make`` the first time."""
    if not path.exists():
        create_private(path, make)
    return path.read_bytes()
