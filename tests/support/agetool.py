"""Drive the stock ``age`` tool (Debian ``age``), including its passphrase prompts.

``age`` reads passphrases from the terminal, never from stdin, so the passphrase runs go through
a pseudo-terminal that answers each prompt, the way a person would type.
"""

from __future__ import annotations

import os
import pty
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

AGE = shutil.which("age")
AGE_KEYGEN = shutil.which("age-keygen")

needs_age = pytest.mark.skipif(
    AGE is None or AGE_KEYGEN is None, reason="Debian package age missing (make deb)"
)


def age(*args: str | Path, input: bytes | None = None) -> bytes:
    """Run ``age`` without a terminal; returns stdout, raises with stderr on failure."""
    result = subprocess.run(
        [AGE or "age", *map(str, args)], check=False, input=input, capture_output=True, timeout=60
    )
    if result.returncode != 0:
        raise AssertionError(f"age {args} failed: {result.stderr.decode(errors='replace')}")
    return result.stdout


def keygen(path: Path) -> str:
    """Create an identity file with ``age-keygen``; returns its public key."""
    subprocess.run([AGE_KEYGEN or "age-keygen", "-o", str(path)], check=True, capture_output=True)
    for line in path.read_text().splitlines():
        if line.startswith("# public key: "):
            return line.removeprefix("# public key: ")
    raise AssertionError("age-keygen wrote no public key")


def age_with_passphrase(*args: str | Path, passphrase: str, timeout: float = 60) -> tuple[int, str]:
    """Run ``age`` on a pty, typing ``passphrase`` at every prompt; returns (exit code, output).

    Use ``-o`` for the output file: stdout is the terminal.
    """
    pid, fd = pty.fork()
    if pid == 0:  # child: age with the pty as its controlling terminal
        try:
            os.execv(AGE or "/usr/bin/age", ["age", *map(str, args)])
        finally:
            os._exit(127)
    transcript = b""
    answered = 0
    status: int | None = None
    deadline = time.monotonic() + timeout
    try:
        while status is None and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:  # EIO: the child closed the terminal
                    data = b""
                transcript += data
                if transcript.lower().count(b"passphrase") > answered:
                    answered = transcript.lower().count(b"passphrase")
                    os.write(fd, passphrase.encode() + b"\n")
                if data:
                    continue
            done, code = os.waitpid(pid, os.WNOHANG)
            if done:
                status = code
    finally:
        if status is None:
            os.kill(pid, 9)
            _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), transcript.decode(errors="replace")
